"""SR-INR on CelebA-HQ as in the paper: HR resized to 512x512, trained at x32 (protocol `fit`).

Paper model (L=12, F=2, T=2^24, N 16..128), Adam 1e-4 halved every 100 epochs, 300 epochs, batch 32.

  python -m experiments.train --config=srinr_celeba --workdir=workdirs/celeba
  python -m experiments.evaluate --workdir=workdirs/celeba
Data: $INRSR_DATA_DIR/CelebA-HQ (default ../shared/data/CelebA-HQ) or --config.data.root=DIR.
"""

from experiments.configs import common


def get_config(arg=None):
  c = common.base()
  c.model.bicubic_residual = True  # off scale and off the fitted rows degrade to bicubic (issue 9, srinr_demo)
  c.data.update(source="folder", root="$INRSR_DATA_DIR/CelebA-HQ", hr_size=512, scale=32.0)
  c.eval.update(scales=(2.0, 2.5, 4.0, 8.0, 16.0, 32.0), metrics=("full", "benchmark"))
  return common.finish(c, arg, "srinr_celeba")[0]
