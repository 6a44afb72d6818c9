r"""3x3 convolutions on CPU: Winograd F(2x2, 3x3) (`kernels.winograd`) against XLA's direct one, side by side.

  JAX_PLATFORMS=cpu python -m experiments.benchmark_conv
  JAX_PLATFORMS=cpu python -m experiments.benchmark_conv --layers=4x48x48x64:64 --encoders=4x48,16x48 --reps=7

One EDSR layer's forward and forward-with-gradients, and the whole EDSR-baseline encoder's, interleaved after
one warm-up call each (medians in ms), with each layer's error from float64 sums. Prints a Markdown table.
"""

from absl import flags

from experiments import configs
from tools import benchmarking
from tools import conv_bench

_LAYERS = flags.DEFINE_list("layers", ["4x48x48x64:64", "1x128x128x64:64", "4x48x48x64:256"],
                            "Layer cases BxHxWxC:K.")
_ENCODERS = flags.DEFINE_list("encoders", ["4x48", "1x128"], "Encoder cases BATCHxSIZE.")
_REPS = flags.DEFINE_integer("reps", 5, "Timed rounds (median reported).")


def main(argv):
  del argv
  header = (f"{benchmarking.device_description()}; load {benchmarking.load_average()} at start")
  rows = []
  for spec in _LAYERS.value:
    shape, features = spec.split(":")
    rows.append(conv_bench.layer_case(tuple(int(s) for s in shape.split("x")), int(features), _REPS.value))
  for spec in _ENCODERS.value:
    batch, size = (int(s) for s in spec.split("x"))
    rows.append(conv_bench.encoder_case(batch, size, _REPS.value))
  print(f"{header}, {benchmarking.load_average()} at end\n")
  print(conv_bench.markdown(rows))


if __name__ == "__main__":
  configs.run(main, names=())
