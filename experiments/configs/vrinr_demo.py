"""VR-INR on a clip made from a bundled photograph (the embedded video default; a few minutes on a CPU).

The clip is 8 frames of 128x128 sliding 4 pixels per frame diagonally across scikit-image's `astronaut`
photograph (real content, pure translation: see `inrsr.data.video.bundled_clip`). Protocol `fit` at x4,
evaluated at x2 .. x32, with the temporal error and zero-shot denoising (Gaussian 30/50, Poisson).

  python -m experiments.train --config=vrinr_demo --workdir=workdirs/vrinr_demo
  python -m experiments.evaluate --workdir=workdirs/vrinr_demo
Quick check: --config=vrinr_demo:small
"""

from experiments.configs import common


def get_config(arg=None):
  c = common.cpu_model(common.base())
  c.model.log2_table_size = 16
  c.data.update(source="bundled_clip", names=("astronaut",), limit=8, scale=4.0, pixels_per_frame=1024,
                batch_size=4)
  c.train.update(steps=1500, log_every=50, checkpoint_every=250)
  c.eval.update(scales=(2.0, 2.5, 4.0, 8.0, 16.0, 32.0), metrics=("benchmark", "full"), temporal=True,
                noise=(("gaussian", 30.0), ("gaussian", 50.0), ("poisson", 0.0)), noise_scales=(4.0, 8.0))
  flags, _ = common.parse_arg(arg, "vrinr_demo", flags=("small",))
  if "small" in flags:
    common.shrink(c)
    c.data.limit = 3
  return c
