"""SR-INR on CelebA-HQ as in the paper: HR resized to 512x512, trained at x32 (protocol `fit`).

The papers' literal settings: model L=12, F=2, T=2^24, N 16..128 (`common.base`), the MLP's output alone (no
bicubic residual), one scale (x32), Adam 1e-4 halved every 100 epochs, 300 epochs, batch 32 x 4096 pixels.
`:robust` adds the scale-robust settings measured on srinr_demo (`srinr_demo.scale_robust`: a bicubic residual,
1 lattice cell on the code axes, scales log-uniform in [1.5, 32]; not in the papers, not measured on CelebA-HQ);
the default before 2026-12-06 (x32 only with the bicubic residual) is `--config.model.bicubic_residual=True`.

  python -m experiments.train --config=srinr_celeba --workdir=workdirs/celeba
  python -m experiments.evaluate --workdir=workdirs/celeba
Arguments (comma-separated): `robust`, `cpu`, `small`.
Data: $INRSR_DATA_DIR/CelebA-HQ (default ../shared/data/CelebA-HQ) or --config.data.root=DIR.
"""

from experiments.configs import common
from experiments.configs import srinr_demo

FLAGS = ("small", "cpu", "robust")  # the arguments of the papers' image configs (srinr_celeba, _div2k, _set5/14)


def finish(c, arg, name: str):
  """Apply a papers' image config's arguments: `small` / `cpu` (`common.finish`) and `robust`; returns c."""
  flags, _ = common.parse_arg(arg, name, flags=FLAGS)
  common.finish(c, ",".join(sorted(flags - {"robust"})), name)
  if "robust" in flags:
    srinr_demo.scale_robust(c, scale_max=c.data.scale)  # the config's own scale stays inside the trained range
  return c


def get_config(arg=None):
  c = common.base()
  c.data.update(source="folder", root="$INRSR_DATA_DIR/CelebA-HQ", hr_size=512, scale=32.0)
  c.eval.update(scales=(2.0, 2.5, 4.0, 8.0, 16.0, 32.0), metrics=("full", "benchmark"))
  return finish(c, arg, "srinr_celeba")
