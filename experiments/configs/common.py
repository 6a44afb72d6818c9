"""Defaults shared by every SR-INR config; each config file edits a copy of `base()`."""

import ml_collections


def base() -> ml_collections.ConfigDict:
  """The papers' model and optimiser (SR-INR Sec. 4, VR-INR Sec. 4.1) with small-data defaults elsewhere."""
  c = ml_collections.ConfigDict()
  c.model = ml_collections.ConfigDict(dict(
      num_levels=12, features=2, log2_table_size=24, n_min=16, n_max=128, patch_size=5, code_dim=3, hidden=64,
      weight_norm="none", top_down_attention=True, output_activation="none", kernel_impl="auto",
      bicubic_residual=False,  # True: predict bicubic(LR) + the MLP's output (not in the papers).
      code_resolution=0,  # > 0: min(code_resolution, N_l) lattice cells on the code axes (0: N_l, the papers').
      texture_prefilter="none",  # "gaussian": texture patches of the LR blurred to each level's rate.
      texture_spacing="level",  # "lr_pixels": patch samples N_max / N_l LR pixels apart (2 / N_l: the papers').
      position_resolution=0))  # > 0: min(position_resolution, N_l) lattice cells on the (x, y, t) axes.
  c.data = ml_collections.ConfigDict(dict(
      source="folder",  # "bundled", "folder", or a clip: "frames", "video", "bundled_clip".
      names=(),  # bundled photograph names.
      root="",  # image folder; $INRSR_DATA_DIR expands (default ../shared/data).
      limit=0,  # first N images or frames (0 = all).
      start_frame=0,  # clips: first frame.
      center_crop=0,  # central crop before resizing (0 = none).
      hr_size=0,  # resize HR to hr_size x hr_size (0 = native size).
      image_time="index",  # t of training image k of K: "index" (-1 + (2k + 1) / K) or "zero".
      protocol="fit",  # "fit" (train on the evaluated frames' LR/HR) or "internal" (LR-only training).
      internal_scale=4.0,  # internal protocol: the LR scale of the real data.
      scale=32.0,  # SR scale of training pairs (lower bound when scale_max is set).
      scale_max=0.0,  # > scale: sample scales in [scale, scale_max], one per example.
      scale_sampling="uniform",  # how (fit/internal protocols): "uniform", or "log" (each octave an equal share).
      modcrop=False,  # evaluation's LR: False downsamples the whole frame (HR coordinates independent of the
      # scale, as training makes its pairs); True mod-crops the HR first (runs from before the field).
      crop=0,  # HR random crop (0 = whole frames, which `fit` needs for absolute coordinates).
      augment=False,  # flips and transposes of crops.
      pixels_per_frame=4096,  # P.
      batch_size=32,  # B.
      num_workers=0,  # Grain worker processes.
  ))
  c.train = ml_collections.ConfigDict(dict(
      epochs=300, steps=0,  # steps > 0 overrides epochs.
      learning_rate=1e-4, decay_epochs=100, decay_rate=0.5, schedule="step",  # or "cosine" (to 0 over the run)
      warmup_steps=0, warmup_init=0.005,  # linear ramp from learning_rate * warmup_init over warmup_steps first
      clip_grad_norm=0.0,  # > 0: clip the global gradient norm before Adam
      loss="pea", seed=0, log_every=50, checkpoint_every=500, keep_checkpoints=3,
      model_axis=1,  # devices on the `model` mesh axis (the rest form the `data` axis).
      table_sharding="replicated",  # or "levels" / "rows": hash tables sharded over the model axis (inrsr.train.sharding).
      init_from="",  # a run folder whose newest parameters start a new run where paths and shapes match.
      budget_s=0.0))  # > 0: stop (with a checkpoint) after this many seconds of training in this process.
  c.eval = ml_collections.ConfigDict(dict(
      scales=(2.0, 2.5, 4.0, 8.0, 16.0, 32.0),
      metrics=("full",),  # any of "div2k", "benchmark", "full".
      chunk=65536,  # query points per inference call.
      noise=(),  # zero-shot denoising cells, e.g. (("gaussian", 30.0), ("poisson", 0.0)) (see video.add_noise).
      noise_scales=(4.0, 8.0),  # scales at which the noise cells are evaluated.
      temporal=False,  # clips: temporal-consistency error of frame-to-frame differences.
      heldout_time="zero",  # t of frames never trained on: "zero" or "trained" (the trained t nearest 0).
      heldout=ml_collections.ConfigDict(dict(source="", names=(), root="", limit=0, start_frame=0, center_crop=0,
                                             hr_size=0)),
  ))
  return c


def shrink(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The `:small` variant: a small model and a few steps, for a quick local run or a smoke test."""
  c.model.update(num_levels=4, log2_table_size=14, n_min=8, n_max=64)
  c.data.update(batch_size=2, pixels_per_frame=512, limit=2)
  c.train.update(steps=20, log_every=5, checkpoint_every=10)
  c.eval.scales = (2.0, 4.0)
  return c


def parse_arg(arg, name: str, choices=(), flags=("small", "cpu")) -> tuple[set[str], str | None]:
  """Split a config argument `a,b,...` into the flags this config accepts and at most one choice.

  Args:
    arg: the text after `NAME:` (or None).
    name: the config's name, for errors.
    choices: allowed choice tokens (e.g. clip names).
    flags: the flags the config acts on (a config that ignores `cpu` leaves it out, so `NAME:cpu` is an
      error rather than a silently ignored request).

  Returns:
    (flags, choice).

  Raises:
    ValueError: a token that is neither an accepted flag nor a choice, or two choices; names the config.
  """
  tokens = [t for t in (arg or "").split(",") if t]
  given = {t for t in tokens if t in flags}
  rest = [t for t in tokens if t not in given]
  if len(rest) > 1 or (rest and rest[0] not in choices):
    accepted = ", ".join(repr(f) for f in flags) or "no flags"
    raise ValueError(f"{name}: unknown argument {arg!r}; {name} accepts comma-separated {accepted}"
                     + (f" and one of {tuple(choices)}" if choices else ""))
  return given, (rest[0] if rest else None)


def cpu_model(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A model and schedule that train in minutes on a CPU (8 levels, T = 2^18, Adam 5e-3 halved every 40 epochs)."""
  c.model.update(num_levels=8, log2_table_size=18, n_min=16, n_max=128)
  c.train.update(learning_rate=5e-3, decay_epochs=40)
  return c


def finish(c: ml_collections.ConfigDict, arg, name: str, choices=()) -> tuple[ml_collections.ConfigDict, str | None]:
  """Apply the `small` / `cpu` flags of a config argument; returns the config and the choice token."""
  flags, choice = parse_arg(arg, name, choices)
  if "cpu" in flags:
    cpu_model(c)
  if "small" in flags:
    shrink(c)
  return c, choice


# The official configurations (EDSR-baseline encoder) of each generalising model.
GENERALISING_MODELS = {
    # param_init: the ported models default to PyTorch's init (the official code's). LIIF and LIT keep flax's,
    # with which their CPU runs in RESULTS.md were measured; with flax's, HIIF collapsed onto its skip (RESULTS.md).
    "liif": dict(name="liif", encoder="edsr-baseline", encoder_args={}, hidden_list=(256, 256, 256, 256),
                 local_ensemble=True, feat_unfold=True, cell_decode=True, skip="none", param_init="flax"),
    "hiif": dict(name="hiif", encoder="edsr-baseline", encoder_args={}, hidden_dim=256, heads=16, n_attn_blocks=2,
                 n_hi_layers=6, mlp_hidden=256, param_init="torch"),
    # LIT: CLIT's first stage (the released code's defaults; num_stages 1 serves scales up to x4 and is
    # applied stage by stage above).
    "clit": dict(name="clit", encoder="edsr-baseline", encoder_args={}, base_dim=256, head=8, r=3, num_stages=1,
                 hidden_list=(256, 256, 256, 256), param_init="flax"),
}


def generalising_base(name: str = "liif") -> ml_collections.ConfigDict:
  """LIIF's training and evaluation protocol (`../shared/baselines.md` §2-3) for a generalising model.

  Data: protocol `patches` (48x48 LR crops, one scale per sample from U(1, 4), 2304 HR queries with cells,
  flips and transposes, LR rounded to 8 bits); Adam 1e-4 halved every 200 epochs, 1000 epochs, batch 16; L1
  (the official loss is L1 on values normalised to [-1, 1], i.e. twice this one: Adam makes the factor moot).
  Evaluation: `heldout` on Set5 and Set14, metric `benchmark` (Y, shave = scale), LR by 8-bit bicubic.
  """
  c = base()
  c.model = ml_collections.ConfigDict(GENERALISING_MODELS[name])
  c.data.update(source="folder", root="", protocol="patches", scale=1.0, scale_max=4.0, augment=True,
                batch_size=16, num_workers=0)
  c.data.lr_size = 48
  c.data.queries = 2304
  c.data.quantize_lr = True
  c.data.repeat = 20  # Epoch = the image folder 20 times over, as the official DIV2K config.
  c.train.update(epochs=1000, learning_rate=1e-4, decay_epochs=200, decay_rate=0.5, loss="l1",
                 log_every=50, checkpoint_every=1000)
  c.eval.update(scales=(2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 18.0, 24.0, 30.0, 7.3), metrics=("benchmark",),
                chunk=30000)
  c.eval.quantize_lr = True
  section = lambda sub: ml_collections.ConfigDict(dict(source="folder", names=(), root=f"$INRSR_DATA_DIR/{sub}",
                                                       limit=0, start_frame=0, center_crop=0, hr_size=0))
  c.eval.heldout_sets = ml_collections.ConfigDict({"Set5": section("Set5"), "Set14": section("Set14")})
  return c


def shrink_generalising(c):
  """A tiny encoder and decoder, a few steps, one test set: a smoke test in seconds."""
  c.model.encoder_args = ({"n_resblocks": 1, "n_feats": 8} if c.model.encoder == "edsr-baseline"
                          else {"D": 2, "C": 2, "G": 8, "G0": 8})
  small = {"liif": dict(hidden_list=(16, 16)), "hiif": dict(hidden_dim=16, heads=2, mlp_hidden=16),
           "clit": dict(base_dim=16, head=2, hidden_list=(16, 16))}
  c.model.update(small[c.model.name])
  c.data.update(batch_size=2, lr_size=16, queries=64, limit=4)
  c.train.update(steps=6, log_every=2, checkpoint_every=3, budget_s=0.0)
  c.eval.update(scales=(2.0, 3.0))
  del c.eval.heldout_sets["Set14"]
  c.eval.heldout_sets.Set5.limit = 2
  return c
