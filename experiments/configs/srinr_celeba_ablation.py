"""The SR-INR ablation setting (Tables 4-8): 100 CelebA-HQ images at 128x128, x32, protocol `fit`.

The shared data holds 56 CelebA-HQ faces, so `limit=100` takes all 56 of them there.

  python -m experiments.train --config=srinr_celeba_ablation --workdir=workdirs/ablation
  python -m experiments.train --config=srinr_celeba_ablation --config.model.weight_norm=multilinear ...
"""

from experiments.configs import common


def get_config(arg=None):
  c = common.base()
  c.data.update(source="folder", root="$INRSR_DATA_DIR/CelebA-HQ", limit=100, hr_size=128, scale=32.0,
                pixels_per_frame=2048)
  c.eval.update(scales=(2.0, 2.5, 4.0, 8.0, 16.0, 32.0), metrics=("full",))
  return common.finish(c, arg, "srinr_celeba_ablation")[0]
