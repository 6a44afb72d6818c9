r"""LIIF fitted zero-shot on the user's own image (ZSSR's internal learning with an arbitrary-scale decoder).

No dataset and no HR: `inrsr.infer.zero_shot` fits this small LIIF on crops of the input itself, each crop downscaled
again by a scale drawn around the requested one (protocol `patches`, flips and transposes, LR rounded to 8 bits,
the LR crop side shrunk to what the input allows), then upscales the input with it. A residual over bilinear
upsampling (`skip="bilinear"`), a 4-block, 32-channel EDSR encoder and a 3 x 64 MLP: small enough for a few
hundred steps a minute on 2 CPU cores.

  python -m experiments.upscale --input=photo.png --scale=2 --output=big.png --config=liif_zeroshot
  python -m experiments.evaluate_zeroshot --config=liif_zeroshot --sets=Set5,Set14 --scales=2,4 --budget=120s \
      --workdir=workdirs/zs_liif
Quick check: --config=liif_zeroshot:small
"""

import ml_collections

from experiments.configs import common


def get_config(arg=None):
  c = common.generalising_base("liif")
  c.model.update(encoder_args={"n_resblocks": 4, "n_feats": 32}, hidden_list=(64, 64, 64), skip="bilinear")
  c.data.update(source="file", root="", batch_size=8, repeat=1)
  c.data.lr_size = 48  # the largest LR crop side; `prepare_config` lowers it for small inputs.
  c.data.queries = 1024
  # A constant rate: a step budget and a seconds budget train alike. (The RESULTS.md runs had a cosine over the
  # 100 000 steps of a seconds budget, within 2% of constant; a cosine over 300 steps scored 0.34 dB lower on
  # baby x2.)
  c.train.update(steps=600, epochs=0, learning_rate=1e-3, schedule="step", decay_epochs=0, log_every=50,
                 checkpoint_every=250, budget_s=0.0)
  c.eval.update(scales=(2.0, 4.0), metrics=("benchmark",))
  c.zero_shot = ml_collections.ConfigDict(dict(
      scale_spread=1.25,  # training scales ~ U(s / spread, s * spread), at least 1.
      min_lr_side=8,  # the input downscaled by the largest training scale keeps at least this many pixels a side.
      max_steps=100_000,  # the step count a time budget (`--budget=120s`) runs under.
      self_ensemble=True,  # upscale as the mean over the input's 8 flips and transposes.
  ))
  flags, _ = common.parse_arg(arg, "liif_zeroshot", flags=("small",))
  if "small" in flags:
    c.model.update(encoder_args={"n_resblocks": 1, "n_feats": 8}, hidden_list=(16, 16))
    c.data.update(batch_size=2, lr_size=16, queries=64)
    c.train.update(steps=6, log_every=2, checkpoint_every=3)
  return c
