r"""SR-INR (or VR-INR for a clip) fitted zero-shot on the user's own input: a clip's default in `experiments.upscale`.

An image gets `liif_zeroshot` unless --config=srinr_zeroshot is given: on Set5 and Set14 LIIF fitted on the input
scores above this model at x2 and x4 (RESULTS.md, "Zero-shot upscaling").

No dataset and no HR: the model is fitted on pairs (the input downscaled again, the input) at scales drawn
around the requested one, then applied to the input (`inrsr.infer.zero_shot`). The model, chosen by measurement on
Set5 `baby` x2 (RESULTS.md, "Zero-shot upscaling"): a bicubic residual, texture patches in LR pixels
(`texture_spacing="lr_pixels"`, so a code relates an LR to its HR alike at every resolution) and 1 lattice cell
on the (x, y, t) axes (`position_resolution=1`: a table that stored the input's detail at (x, y) would add it
again when the input is upscaled; the papers' positional tables score 2.6 dB below bicubic here).
`inrsr.infer.zero_shot.prepare_config` fills in `data.root`, `data.source`, the scale range and the budget.

  python -m experiments.upscale --input=frames/ --clip --scale=4 --output=out/   # VR-INR on a clip
  python -m experiments.upscale --input=photo.png --scale=4 --output=big.png --config=srinr_zeroshot
  python -m experiments.upscale --input=photo.png --scale=4 --output=big.png --budget=120s --workdir=workdirs/zs \
      --config=srinr_zeroshot
Quick check: --config=srinr_zeroshot:small
"""

import ml_collections

from experiments.configs import common


def get_config(arg=None):
  c = common.base()
  c.model.update(num_levels=8, log2_table_size=16, n_min=16, n_max=128, bicubic_residual=True,
                 texture_spacing="lr_pixels", position_resolution=1)
  c.data.update(source="file", root="", image_time="zero", pixels_per_frame=1024, batch_size=4)
  c.train.update(steps=300, epochs=0, learning_rate=5e-3, decay_epochs=40, log_every=50, checkpoint_every=250)
  c.eval.update(scales=(2.0, 4.0), metrics=("full",))
  c.zero_shot = ml_collections.ConfigDict(dict(
      scale_spread=1.25,  # training scales ~ U(s / spread, s * spread), at least 1.
      min_lr_side=8,  # the input downscaled by the largest training scale keeps at least this many pixels a side.
      max_steps=100_000,  # the step count a time budget (`--budget=120s`) runs under.
  ))
  flags, _ = common.parse_arg(arg, "srinr_zeroshot", flags=("small",))
  if "small" in flags:
    c.model.update(num_levels=4, log2_table_size=14, n_min=8, n_max=64)
    c.data.update(batch_size=2, pixels_per_frame=512)
    c.train.update(steps=20, log_every=5, checkpoint_every=10)
  return c
