"""SR-INR on DIV2K at x32 (protocol `fit`), metric `div2k` (RGB, shave scale + 6).

The papers' literal settings as srinr_celeba (no bicubic residual, x32 only); `:robust` adds the scale-robust
settings (srinr_celeba's docstring), and `--config.model.bicubic_residual=True` gives the default before 2026-12-06.

The paper centre-crops DIV2K to 1024x1024 and resizes to 512x512. The default root is the shared data's three
smoke-test images (already ~512 wide, unknown downscaling: not comparable with published numbers). For the
official data:
  python -m experiments.train --config=srinr_div2k --workdir=workdirs/div2k \
      --config.data.root=/data/DIV2K_valid_HR --config.data.center_crop=1024 --config.data.hr_size=512
"""

from experiments.configs import common
from experiments.configs import srinr_celeba


def get_config(arg=None):
  c = common.base()
  c.data.update(source="folder", root="$INRSR_DATA_DIR/DIV2K_valid_downscaled512", scale=32.0)
  c.eval.update(metrics=("div2k",))
  return srinr_celeba.finish(c, arg, "srinr_div2k")
