"""Tests for BVSR-IK training: the `clips` pseudo-video pipeline, the loss, the model hooks, a short resumable run."""

import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import PIL.Image
import pytest

from conftest import run_module_process
from experiments.configs import bvsr_ik_train291
from inrsr import models, resize
from inrsr.data import clips, degradations
from inrsr.models import bvsr_ik
from inrsr.train import checkpoints, training

H, W = 60, 70


def _image(seed=0):
  """Channels 0 and 1 encode the pixel's row and column (so a crop's position can be read back); channel 2 is
  random texture, which tells the blur kernels apart."""
  rows, cols = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
  texture = np.random.default_rng(seed).random((H, W))
  return np.stack([rows / 256.0, cols / 256.0, texture], -1).astype(np.float32)


def _position(frame):
  return int(round(frame[0, 0, 0] * 256)), int(round(frame[0, 0, 1] * 256))


SPEC = clips.ClipSpec(lr_size=8, frames=4, walk_step=3, augment=False)


def _match_sigma(hr, lr):
  """Errors of `lr` against the official blur+subsample of `hr` with each Gaussian sigma, computed here."""
  errs = []
  for sigma in degradations.GAUSSIAN_SIGMAS:
    size = int(np.ceil(sigma * 3) * 2 + 1)
    m = (size - 1) / 2
    y, x = np.mgrid[-m:m + 1, -m:m + 1]
    k = np.exp(-(x * x + y * y) / (2 * sigma * sigma))
    k[k < np.finfo(float).eps * k.max()] = 0
    k = (k / k.sum()).astype(np.float32).astype(np.float64)
    p = size // 2
    padded = np.pad((hr * 255.0).astype(np.float32).astype(np.float64), ((p, p), (p, p), (0, 0)), mode="edge")
    blurred = sum(k[i, j] * padded[i:i + hr.shape[0], j:j + hr.shape[1]] for i in range(size) for j in range(size))
    errs.append(np.abs(blurred[::4, ::4] / 255.0 - lr).max())
  return np.array(errs)


def test_clip_frames_are_walked_crops_each_blurred_by_its_own_kernel():
  image = _image()
  sigmas_seen = set()
  moved = 0
  for seed in range(6):
    ex = clips.make_clip_example(image, SPEC, np.random.default_rng(seed))
    assert ex["lrs"].shape == ex["lrs_clean"].shape == (4, 8, 8, 3)
    assert ex["rgb"].shape == (4, 32, 32, 3)
    positions = [_position(f) for f in ex["rgb"]]
    for (top, left), frame in zip(positions, ex["rgb"]):
      np.testing.assert_array_equal(frame, image[top:top + 32, left:left + 32])
    steps = np.abs(np.diff(np.array(positions), axis=0))
    assert steps.max() <= 3
    moved += int(steps.sum() > 0)
    clip_sigmas = set()
    for t in range(4):
      errs = _match_sigma(ex["rgb"][t], ex["lrs"][t])
      order = np.argsort(errs)
      assert errs[order[0]] < 1e-5 and errs[order[1]] > 1e-3, errs
      clip_sigmas.add(order[0])
    sigmas_seen |= clip_sigmas
    # The correction target: Pillow's antialiased bicubic (float mode, per channel), rounded to 8 bits.
    for t in range(4):
      pil = np.stack([np.asarray(PIL.Image.fromarray(ex["rgb"][t, ..., c]).resize((8, 8), PIL.Image.BICUBIC))
                      for c in range(3)], -1)
      np.testing.assert_allclose(ex["lrs_clean"][t], np.clip(pil, 0, 1), atol=0.5 / 255 + 1e-5)
      np.testing.assert_allclose(ex["lrs_clean"][t] * 255, np.round(ex["lrs_clean"][t] * 255), atol=1e-4)
  assert moved >= 5  # frames differ by the walk
  assert len(sigmas_seen) >= 6  # kernels drawn per frame


def test_flips_apply_to_the_whole_clip_after_the_degradation():
  image = _image(1)
  aug = clips.ClipSpec(lr_size=8, frames=4, walk_step=3, augment=True)
  combos = set()
  for seed in range(8):
    plain = clips.make_clip_example(image, SPEC, np.random.default_rng(seed))
    flipped = clips.make_clip_example(image, aug, np.random.default_rng(seed))
    found = [(fh, fv) for fh in (0, 1) for fv in (0, 1)
             if all(np.array_equal(flipped[k], plain[k][:, ::(-1 if fv else 1), ::(-1 if fh else 1)])
                    for k in ("lrs", "rgb", "lrs_clean"))]
    assert len(found) == 1
    combos.add(found[0])
  assert len(combos) >= 3


def test_flips_before_the_degradation_keep_the_test_sampling_phase():
  """With `flip_before_degradation`, every LR frame is the phase-0 blur+subsample of its own (flipped) HR frame:
  LR pixel j comes from HR pixel 4j, as in the test sets. The official order fails this for flipped clips (their
  LR pixel j comes from HR pixel 4j + 3)."""
  image = _image(2)
  spec = clips.ClipSpec(lr_size=8, frames=3, walk_step=3, augment=True, flip_before_degradation=True)
  official = clips.ClipSpec(lr_size=8, frames=3, walk_step=3, augment=True)
  seen, official_misses = set(), 0
  for seed in range(10):
    ex = clips.make_clip_example(image, spec, np.random.default_rng(seed))
    rgb = ex["rgb"][0]
    flips = (int(rgb[0, 1, 1] < rgb[0, 0, 1]), int(rgb[1, 0, 0] < rgb[0, 0, 0]))  # columns / rows decreasing
    seen.add(flips)
    for t in range(3):
      assert _match_sigma(ex["rgb"][t], ex["lrs"][t]).min() < 1e-5, (seed, flips, t)
    off = clips.make_clip_example(image, official, np.random.default_rng(seed))
    official_misses += int(min(_match_sigma(off["rgb"][t], off["lrs"][t]).min() for t in range(3)) > 1e-3)
  assert len(seen) >= 3  # flips do happen, on both axes
  assert official_misses >= 3  # and the official order does move the phase of flipped clips


def _ramp(size):
  y, x = np.mgrid[0:size, 0:size].astype(np.float64)
  return np.stack([0.1 + 0.01 * y, 0.2 + 0.012 * x, 0.05 + 0.004 * y + 0.006 * x], -1)


def test_grid_phase_correction_target_is_centred_on_the_kept_pixels():
  """The `grid` I^DN of a linear ramp is the ramp at HR pixel 4j (a symmetric filter keeps linear functions);
  the official (`centre`) one is the ramp at 4j + 1.5."""
  hr = _ramp(48).astype(np.float32)
  inner = slice(2, 10)  # LR pixels whose 16-tap filter lies inside the frame
  grid = clips.clean_lr(hr, 12, "grid")
  np.testing.assert_allclose(grid[inner, inner], hr[::4, ::4][inner, inner], atol=0.5 / 255 + 1e-6)
  centre = clips.clean_lr(hr, 12)
  np.testing.assert_allclose(centre[inner, inner], (hr[::4, ::4] + 1.5 * (hr[1, 1] - hr[0, 0]))[inner, inner],
                             atol=0.5 / 255 + 1e-6)
  np.testing.assert_allclose(resize.grid_matrix(48, 12, 4).sum(1), 1.0, atol=1e-12)
  with pytest.raises(ValueError, match="data.clean_phase='middle' must be"):
    clips.ClipSpec(clean_phase="middle")


def test_grid_skip_puts_lr_pixel_j_at_hr_pixel_4j():
  """With every parameter zero the network adds nothing and I^ is the input, so the output is the skip alone:
  on a ramp sampled [::4, ::4] the grid skip gives the HR ramp back; the official skip is 1.5 HR px off."""
  hr = _ramp(32)
  lrs = jnp.asarray(np.broadcast_to(hr[::4, ::4], (1, 3, 8, 8, 3)), jnp.float32)
  out = {}
  for phase in ("grid", "centre"):
    config = bvsr_ik_train291.get_config("small")
    config.model.skip_phase = phase
    model = models.from_config(config.model)
    zeros = jax.tree.map(jnp.zeros_like, bvsr_ik.init_params(model, jax.random.key(0)))
    forward = jax.jit(lambda p, x, model=model: model.apply({"params": p}, x)["outputs"])  # one compile, not op by op
    out[phase] = np.asarray(forward(zeros, lrs))[0, 1]
  np.testing.assert_allclose(out["grid"][:29, :29], hr[:29, :29], atol=1e-5)
  np.testing.assert_allclose((hr - out["centre"])[8:24, 8:24, 0], 1.5 * 0.01, atol=1e-5)
  with pytest.raises(ValueError, match="skip_phase='middle' must be"):
    bvsr_ik.KCANet(skip_phase="middle").init(jax.random.key(0), lrs)


def test_walk_stays_inside_small_images():
  rng = np.random.default_rng(0)
  spec = clips.ClipSpec(lr_size=8, frames=5, walk_step=20)
  for _ in range(50):
    pos = clips.walk_positions(rng, 33, 40, spec)
    assert pos.min() >= 0 and pos[:, 0].max() <= 1 and pos[:, 1].max() <= 8


def _take(it, n):
  return [next(it) for _ in range(n)]


def test_clips_dataset_is_deterministic_and_resumes_exactly():
  images = [_image(i) for i in range(3)]
  make = lambda seed: clips.clips_dataset(images, SPEC, batch_size=2, seed=seed)
  a, b = _take(iter(make(3)), 3), _take(iter(make(3)), 3)
  for x, y in zip(a, b):
    assert x.keys() == {"lrs", "rgb", "lrs_clean"} and x["lrs"].shape == (2, 4, 8, 8, 3)
    for k in x:
      np.testing.assert_array_equal(x[k], y[k])
  other = next(iter(make(4)))
  assert not np.array_equal(other["lrs"], a[0]["lrs"])
  it = iter(make(5))
  _take(it, 2)
  state = it.get_state()
  expected = _take(it, 2)
  resumed = iter(make(5))
  resumed.set_state(state)
  for x, y in zip(_take(resumed, 2), expected):
    for k in x:
      np.testing.assert_array_equal(x[k], y[k])
  with pytest.raises(ValueError, match="smaller than the HR crop"):
    clips.clips_dataset([np.zeros((20, 90, 3), np.float32)], SPEC, batch_size=1, seed=0)


def test_training_data_clips_leaves_out_small_images(tmp_path):
  for i, (h, w) in enumerate([(40, 50), (20, 60), (36, 36)]):
    PIL.Image.fromarray(np.random.default_rng(i).integers(0, 255, (h, w, 3), np.uint8)).save(tmp_path / f"{i}.png")
  c = bvsr_ik_train291.get_config("small")
  c.data.update(root=str(tmp_path), limit=0, batch_size=1, lr_size=8, frames=3)
  c.train.steps = 0
  c.train.epochs = 2
  ds, steps, per_epoch, pixels = training.training_data(c)
  assert (steps, per_epoch, pixels) == (4, 2, 3 * 32 * 32)
  batch = next(iter(ds))
  assert batch["rgb"].shape == (1, 3, 32, 32, 3) and batch["lrs"].shape == (1, 3, 8, 8, 3)
  c.data.lr_size = 16
  with pytest.raises(ValueError, match="data.lr_size"):
    training.training_data(c)
  c.data.scale = 3.5
  with pytest.raises(ValueError, match="data.scale"):
    training.training_data(c)


def test_training_loss_is_charbonnier_plus_weighted_correction():
  rng = np.random.default_rng(0)
  sr, hr = rng.random((2, 3, 8, 8, 3)), rng.random((2, 3, 8, 8, 3))
  corr, clean = rng.random((2, 3, 2, 2, 3)), rng.random((2, 3, 2, 2, 3))
  outputs = {"outputs": jnp.asarray(sr, jnp.float32), "lr_corrs": jnp.asarray(corr, jnp.float32)}
  batch = {"rgb": jnp.asarray(hr, jnp.float32), "lrs_clean": jnp.asarray(clean, jnp.float32)}
  charb = lambda a, b: np.mean(np.sqrt((a - b) ** 2 + 1e-4) + 1e-4)
  loss, pred = bvsr_ik.KCANet().training_loss(outputs, batch)
  np.testing.assert_allclose(float(loss), charb(sr, hr) + 0.2 * charb(corr, clean), rtol=1e-6)
  assert pred is outputs["outputs"]
  loss0, _ = bvsr_ik.KCANet(correction_weight=0.0).training_loss(outputs, batch)
  np.testing.assert_allclose(float(loss0), charb(sr, hr), rtol=1e-6)
  # Perfect predictions: sqrt(eps) + eps per term, 1.2 x (0.01 + 0.0001).
  perfect, _ = bvsr_ik.KCANet().training_loss({"outputs": batch["rgb"], "lr_corrs": batch["lrs_clean"]}, batch)
  np.testing.assert_allclose(float(perfect), 1.2 * 0.0101, rtol=1e-6)


def test_loss_choice_is_checked_against_the_model():
  mesh = training.make_mesh()
  tx = optax.adam(1e-3)
  with pytest.raises(ValueError, match="train.loss='model'"):
    training.make_train_step(bvsr_ik.KCANet(), tx, "l1", mesh)
  with pytest.raises(ValueError, match="has none"):
    training.make_train_step(models.from_config(ml_collections.ConfigDict({"name": "liif"})), tx, "model", mesh)


def test_zero_flow_skips_spynet():
  small = bvsr_ik.KCANet(**bvsr_ik_train291.SMALL_MODEL)
  zero = bvsr_ik.KCANet(**{**bvsr_ik_train291.SMALL_MODEL, "flow": "zero"})
  shapes = {m.flow: jax.eval_shape(m.init, jax.random.key(0), *m.example_inputs())["params"] for m in (small, zero)}
  count = lambda tree: sum(x.size for x in jax.tree.leaves(tree))
  assert count(shapes["spynet"]["spynet"]) > 0 and "spynet" not in shapes["zero"]
  assert count(shapes["zero"]) == count(shapes["spynet"]) - count(shapes["spynet"]["spynet"])
  with pytest.raises(ValueError, match="flow="):
    bvsr_ik.param_count(bvsr_ik.KCANet(flow="raft"))


def test_init_params_uses_the_module_hook_else_jitted_init():
  small = bvsr_ik.KCANet(**bvsr_ik_train291.SMALL_MODEL)
  key = jax.random.key(1)
  jax.tree.map(np.testing.assert_array_equal, models.init_params(small, key), bvsr_ik.init_params(small, key))
  liif = models.from_config(ml_collections.ConfigDict(
      {"name": "liif", "encoder": "edsr-baseline", "encoder_args": {"n_resblocks": 1, "n_feats": 8},
       "hidden_list": (16,), "param_init": "flax"}))  # flax's own init: the jitted init is model.init's
  eager = liif.init(key, *models.example_inputs(liif))["params"]
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
               models.init_params(liif, key), eager)


def _run(workdir, steps, cache, data, extra=()):
  env = {"INRSR_DATA_DIR": str(data), "JAX_COMPILATION_CACHE_DIR": str(cache),
         "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}
  run_module_process("experiments.train", "--config=bvsr_ik_train291:small", f"--workdir={workdir}",
                     f"--config.train.steps={steps}", "--config.train.schedule=step", "--config.train.decay_epochs=0",
                     "--config.train.checkpoint_every=100", "--config.train.log_every=1", "--progress=false", *extra,
                     env=env, timeout=1200, check=True)


def _metrics(workdir):
  return [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow  # one compile of the small train step: 2-4 minutes on 2 busy CPU cores
def test_small_training_lowers_the_loss_and_resumes_exactly(tmp_path, shared_data):
  cache = tmp_path / "jax_cache"
  n = 24
  whole, split = tmp_path / "whole", tmp_path / "split"
  _run(whole, n, cache, shared_data)  # train291 from `shared_data` (skips, or fails under CI, when absent)
  _run(split, n // 2, cache, shared_data)
  _run(split, n, cache, shared_data)
  losses = [m["loss"] for m in _metrics(whole)]
  assert len(losses) == n
  assert np.mean(losses[-6:]) < 0.8 * np.mean(losses[:6])
  a, step_a = checkpoints.restore_model(whole)[1:4:2]
  b, step_b = checkpoints.restore_model(split)[1:4:2]
  assert step_a == step_b == n
  jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, a), jax.tree.map(np.asarray, b))
  assert [m["loss"] for m in _metrics(split)] == losses
