"""The model's test-time cell rule (HIIF's official clipping) is applied alike by evaluate, upscale and the library."""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import imageio.v3 as iio
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import skimage.data

from inrsr import models
from inrsr.infer import inference
from inrsr.models import hiif

REPO = pathlib.Path(__file__).resolve().parents[2]
SMALL = dict(encoder_args=(("n_feats", 8), ("n_resblocks", 1)), hidden_dim=32, heads=4, n_hi_layers=3,
             mlp_hidden=16)
HR = skimage.data.astronaut()[60:108, 180:252]  # 48 x 72: LR 8 x 12 at x6, 6 x 9 at x8, both mod-crop exact


@pytest.mark.parametrize("lr_hw,out_hw,factor", [
    ((23, 31), (161, 217), 1.75),  # the fixture's `clip` case: x7
    ((8, 12), (48, 72), 1.5),  # x6
    ((6, 9), (48, 72), 2.0),  # x8
    ((10, 10), (30, 30), 1.0),  # x3: inside the trained range, no clipping
    ((10, 10), (40, 40), 1.0),  # x4 exactly
    ((10, 10), (90, 40), 1.5),  # x9 by x4: s = sqrt(3600 / 100) = 6
    ((10, 20), (80, 40), 1.0),  # x8 by x2: s = 4
])
def test_hiif_rule_is_the_official_clipping_of_the_size_scale(lr_hw, out_hw, factor):
  # Hand-worked: max(sqrt(H W / (h w)) / 4, 1).
  assert models.cell_scale(hiif.HIIF(**SMALL), lr_hw, out_hw) == factor


def test_other_models_keep_the_plain_cell():
  from experiments.configs import common
  for name in ("liif", "clit"):
    model = models.from_config(common.generalising_base(name).model)
    assert models.cell_scale(model, (10, 10), (80, 80)) == 1.0
  assert models.cell_scale(models.from_config(common.base().model), (10, 10), (80, 80)) == 1.0


@pytest.fixture(scope="module")
def small_hiif():
  model = hiif.HIIF(**SMALL)
  rng = np.random.default_rng(0)
  lr = jnp.zeros((1, 8, 8, 3))
  q = jnp.zeros((1, 4, 2))
  shapes = jax.eval_shape(model.init, jax.random.key(0), lr, q, q)
  variables = jax.tree.map(lambda s: jnp.asarray(rng.normal(0.0, 0.3, s.shape), jnp.float32), shapes)
  return model, variables["params"], rng.random((8, 12, 3)).astype(np.float32)


def test_library_paths_apply_the_rule_by_default(small_hiif):
  model, params, lr = small_hiif
  h, w = 48, 72  # x6: the cell is clipped by 1.5
  # Independent of inference's plumbing: one model call on the whole grid with the hand-clipped cell.
  cell = np.array([2 / w, 2 / h], np.float32) * np.float32(1.5)
  coords = hiif.make_coord_grid(h, w)[None]
  direct = np.clip(np.asarray(jax.jit(model.apply)({"params": params}, lr[None], coords,
                                          np.broadcast_to(cell, coords.shape)))[0].reshape(h, w, 3), 0, 1)
  default = inference.upscale(model, params, lr, h, w)
  np.testing.assert_allclose(default, direct, atol=2e-6)
  plain = inference.upscale(model, params, lr, h, w, cell_scale=1.0)
  assert np.abs(plain - direct).max() > 1e-3  # the rule changes the output: the comparison can tell
  np.testing.assert_array_equal(inference.upscale(model, params, lr, h, w, cell_scale=1.5), default)
  rows = np.concatenate([b for _, b in inference.upscale_rows(model, params, lr, h, w, rows=7)])
  np.testing.assert_array_equal(rows, default)
  ensemble = inference.upscale_self_ensemble(model, params, lr, h, w)
  np.testing.assert_array_equal(ensemble, inference.upscale_self_ensemble(model, params, lr, h, w, cell_scale=1.5))
  with pytest.raises(ValueError, match="cell_scale"):
    inference.upscale(model, params, lr, h, w, cell_scale=0.0)


def _cli(module, *args):
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  r = subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=REPO, env=env, capture_output=True,
                     text=True)
  assert r.returncode == 0, f"{module} {args}: {r.stderr[-3000:]}"


@pytest.fixture(scope="module")
def cli_outputs(tmp_path_factory, shared):
  """The shared HIIF checkpoint converted, evaluated and used to upscale, all through the CLIs."""
  fixture = shared / "fixtures" / "hiif"  # `shared` skips, or fails under CI, when ../shared is absent
  d = dict(np.load(fixture / "edsr_baseline_hiif.npz"))
  tmp = tmp_path_factory.mktemp("cell_rule")
  (tmp / "hr").mkdir()
  iio.imwrite(tmp / "hr" / "face.png", HR)
  run = tmp / "run"
  _cli("experiments.convert", f"--input={fixture / 'edsr_baseline_hiif.pth'}", f"--workdir={run}",
       "--config=hiif_train291:small", f"--config.eval.heldout_sets.Set5.root={tmp / 'hr'}")
  plain_run = tmp / "plain_run"
  shutil.copytree(run, plain_run)
  _cli("experiments.evaluate", f"--workdir={run}", "--scales=6,8", "--save_predictions", "--progress=false")
  _cli("experiments.evaluate", f"--workdir={plain_run}", "--scales=6", "--save_predictions", "--notest_cell_clip",
       "--progress=false")
  evaluated = {s: run / "predictions" / "heldout_Set5" / f"x{s}" for s in (6, 8)}
  (tmp / "lrs").mkdir()
  for s, folder in evaluated.items():
    shutil.copy(folder / "lr" / "face.png", tmp / "lrs" / f"x{s}.png")
  # Both LRs (8 x 12 and 6 x 9) give the 72 x 48 output: x6 and x8 in one call.
  _cli("experiments.upscale", f"--workdir={run}", f"--input={tmp / 'lrs'}", f"--output={tmp / 'up'}", "--size=72x48",
       "--progress=false")
  _cli("experiments.upscale", f"--workdir={run}", f"--input={tmp / 'lrs' / 'x6.png'}", f"--output={tmp / 'plain.png'}",
       "--scale=6", "--notest_cell_clip", "--progress=false")
  lr = np.round(d["lr"] * 255.0).astype(np.uint8)
  assert np.array_equal(lr.astype(np.float32) / 255.0, d["lr"])  # the fixture's LR is exactly 8-bit
  iio.imwrite(tmp / "official_lr.png", lr)
  h, w = (int(v) for v in d["hw_clip"])
  _cli("experiments.upscale", f"--workdir={run}", f"--input={tmp / 'official_lr.png'}",
       f"--output={tmp / 'official.png'}", f"--size={w}x{h}", "--progress=false")
  return tmp, run, plain_run, evaluated, d


@pytest.mark.parametrize("scale", [6, 8])
def test_upscale_gives_the_pixels_evaluate_scored(cli_outputs, scale):
  tmp, run, _, evaluated, _ = cli_outputs
  results = json.loads((run / "results.json").read_text())
  assert results["cell_rule"] == "model"
  scored = iio.imread(evaluated[scale] / "face.png")
  assert scored.shape == HR.shape
  np.testing.assert_array_equal(iio.imread(tmp / "up" / f"x{scale}.png"), scored)
  # evaluate's LR is the 8-bit bicubic downsampling it reports: its PSNR is not bicubic's.
  entry = results["protocols"]["heldout:Set5"][str(scale)]["benchmark"]["per_image"]["face.png"]
  assert entry["model"]["psnr"] != entry["bicubic"]["psnr"]


def test_notest_cell_clip_turns_the_rule_off_in_both_clis(cli_outputs):
  tmp, run, plain_run, evaluated, _ = cli_outputs
  assert json.loads((plain_run / "results.json").read_text())["cell_rule"] == "none"
  plain_scored = iio.imread(plain_run / "predictions" / "heldout_Set5" / "x6" / "face.png")
  np.testing.assert_array_equal(iio.imread(tmp / "plain.png"), plain_scored)
  clipped = iio.imread(evaluated[6] / "face.png").astype(int)
  assert np.abs(plain_scored.astype(int) - clipped).max() >= 2  # the rule matters at x6


def test_upscale_size_reproduces_the_official_clipped_output(cli_outputs):
  # The fixture's `clip` case: x7 (23 x 31 -> 161 x 217), cell x 1.75, the whole grid as one chunk.
  tmp, _, _, _, d = cli_outputs
  h, w = (int(v) for v in d["hw_clip"])
  want = np.clip(d["pred_clip"].reshape(h, w, 3), 0.0, 1.0) * 255.0
  got = iio.imread(tmp / "official.png").astype(np.float64)
  assert got.shape == want.shape
  err = np.abs(got - np.round(want))
  near_half = np.abs(want - np.floor(want) - 0.5) < 255 * 2e-6  # within the port's 1.1e-6 of a rounding tie
  print(f"clip case: max 8-bit error {err.max():g}, {int((err > 0).sum())} of {err.size} values differ, "
        f"{int(near_half.sum())} within 2e-6 of a rounding tie")
  assert err.max() <= 1
  assert np.all(err[~near_half] == 0)
