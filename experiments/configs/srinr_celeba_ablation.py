"""The SR-INR ablation setting (Tables 4-8): 100 CelebA-HQ images at 128x128, x32, protocol `fit`.

The shared data holds 56 CelebA-HQ faces, so `limit=100` takes all 56 of them there.

  python -m experiments.train --config=srinr_celeba_ablation --workdir=workdirs/ablation
  python -m experiments.train --config=srinr_celeba_ablation --config.model.weight_norm=multilinear ...
Every table of the papers' ablations, each run in its own folder (`tools.ablation`):
  python -m experiments.ablate_srinr --config=srinr_celeba_ablation:cpu --workdir=workdirs/ablation_cpu
`:cpu` is a 2-core CPU size (4-5 minutes a run, measured with other jobs on the cores): `common.cpu_model` (8
levels, T = 2^18, Adam 5e-3), the first 8 faces, 8 frames x 1024 pixels per step, 300 steps (the papers: 100 faces,
batch 32 x 4096 pixels, 300 epochs, T = 2^24, 12 levels). Quick check: `:small`.
"""

from experiments.configs import common


def get_config(arg=None):
  c = common.base()
  c.data.update(source="folder", root="$INRSR_DATA_DIR/CelebA-HQ", limit=100, hr_size=128, scale=32.0,
                pixels_per_frame=2048)
  c.eval.update(scales=(2.0, 2.5, 4.0, 8.0, 16.0, 32.0), metrics=("full",))
  flags, _ = common.parse_arg(arg, "srinr_celeba_ablation")
  if "cpu" in flags:
    common.cpu_model(c)
    c.data.update(limit=8, batch_size=8, pixels_per_frame=1024)
    c.train.update(steps=300, log_every=50, checkpoint_every=150)
  if "small" in flags:
    common.shrink(c)
  return c
