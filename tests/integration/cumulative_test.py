"""Tests for CLIT's cumulative training: the `cascade` batches, the stage schedule, exact resume after SIGKILL."""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import imageio.v3 as iio
import jax
import ml_collections
import numpy as np
import pytest

from experiments.configs import clit_train291, lit_train291
from inrsr import models, resize
from inrsr.data import cascade, images
from inrsr.train import checkpoints, cumulative, training

REPO = pathlib.Path(__file__).resolve().parents[2]
# Training images of the schedule tests: sides from 90 px, so that lr 8 x prod(s) (up to 128) often exceeds the
# smallest side of a batch and s_1 is rescaled.
TRAIN_IMAGES = {"astronaut": (96, 120), "coffee": (140, 100), "chelsea": (160, 160), "rocket": (200, 90)}
CLI_ARGS = ["--config.train.checkpoint_every=1", "--progress=false"]


def official_cycle(k: int, num_batches: int) -> list[int]:
  """Stages per batch of the official collate counter (`cascaded_wrappers.py`), written out independently."""
  out, counter = [], 0
  for _ in range(num_batches):
    if counter % k == 0:
      out.append(k)
      counter = 1
    else:
      out.append(counter)  # del scale_it[counter:]
      counter += 1
  return out


def coded_image(h, w, tag):
  """An image whose pixel (i, j) holds (i / 1024, j / 1024, tag / 8): every value names its position."""
  rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
  return np.stack([rows / 1024, cols / 1024, np.full((h, w), tag / 8)], -1).astype(np.float32)


def batches(spec, imgs, n, seed=0, shard=(0, 1), batch_size=2):
  it = iter(cascade.cascade_dataset(imgs, spec, batch_size=batch_size, seed=seed, shard=shard))
  return [next(it) for _ in range(n)]


# --------------------------------------------------------------------------------------------------------
# The data pipeline.


@pytest.mark.parametrize("ranges", [((1, 4), (1, 4)), ((1, 4), (1, 4), (1, 2))])
@pytest.mark.parametrize("ladder", [0, 1])
def test_one_scale_set_per_batch_in_the_official_stage_cycle(ranges, ladder):
  imgs = [coded_image(300, 280, 0), coded_image(260, 320, 1), coded_image(400, 300, 2)]
  spec = cascade.CascadeSpec(ranges=ranges, lr_size=8, queries=16, ladder=ladder)
  got = batches(spec, imgs, 8, batch_size=3)
  assert [b["stage_scales"].shape[1] for b in got] == official_cycle(len(ranges), 8)
  for b in got:
    s = b["stage_scales"]
    assert s.dtype == np.float32 and s.shape[0] == 3 and (s == s[:1]).all()  # one scale set per batch
    for i, v in enumerate(s[0]):  # each factor from its own range (no image here forces the rescale)
      assert ranges[i][0] <= v <= ranges[i][1]
      if ladder:
        assert np.log2(v) == round(np.log2(v))
  values = {tuple(b["stage_scales"][0]) for b in got}
  assert len(values) > 2  # drawn, not fixed
  no_cycle = cascade.CascadeSpec(ranges=ranges, lr_size=8, queries=16, alternate=False)
  assert {b["stage_scales"].shape[1] for b in batches(no_cycle, imgs, 4)} == {len(ranges)}


@pytest.mark.parametrize("ladder", [0, 1])
def test_every_row_is_an_hr_crop_of_side_round_lr_prod_s_with_its_lr(ladder):
  imgs = [coded_image(150, 170, t) for t in range(4)]
  lr = 8
  spec = cascade.CascadeSpec(ranges=((1, 4), (1, 4)), lr_size=lr, queries=40, augment=False, ladder=ladder)
  sides = set()
  for b in batches(spec, imgs, 6):
    s = [float(v) for v in b["stage_scales"][0]]
    prod = 1.0
    for v in s:
      prod *= v
    side = round(lr * prod)
    sides.add(side)
    for r in range(2):
      rgb, xy = b["rgb"][r], b["coords"][r]
      np.testing.assert_array_equal(b["cells"][r], np.float32(2 / side))
      # Pixel centres of a side x side grid: x = -1 + (2 col + 1) / side.
      cols = np.round(((xy[:, 0] + 1) * side - 1) / 2).astype(int)
      rows = np.round(((xy[:, 1] + 1) * side - 1) / 2).astype(int)
      np.testing.assert_allclose(xy[:, 0], -1 + (2 * cols + 1) / side, atol=1e-6)
      assert len(set(zip(rows, cols))) == 40 and rows.min() >= 0 and rows.max() < side and cols.max() < side
      img_rows, img_cols = np.round(rgb[:, 0] * 1024).astype(int), np.round(rgb[:, 1] * 1024).astype(int)
      tops, lefts = set(img_rows - rows), set(img_cols - cols)
      assert len(tops) == 1 and len(lefts) == 1  # one crop, without flips
      top, left = tops.pop(), lefts.pop()
      image = imgs[int(round(rgb[0, 2] * 8))]
      crop = image[top:top + side, left:left + side]
      assert crop.shape[:2] == (side, side)
      want = np.round(np.clip(resize.resize(crop, lr, lr), 0, 1) * 255) / 255
      np.testing.assert_allclose(b["lr"][r], want, atol=1e-6)
  assert len(sides) > 1


def test_s1_rescale_for_a_small_image_hand_worked():
  """Both factors fixed at 4 (ranges (4, 4)), lr 16, smallest side 50: lr * prod = 256 > 50.

  Official: s_1 = 4 * 50 / 256 = 0.78125, HR side round(16 * 0.78125 * 4) = 50.
  Ladder 1: prod lowered to the largest power of 2 <= 50 / 16 = 3.125, i.e. 2, so s_1 = 2 / 4 = 0.5, side 32.
  """
  imgs = [coded_image(50, 90, 0), coded_image(120, 130, 1)]
  for ladder, want_s, want_side in ((0, (0.78125, 4.0), 50), (1, (0.5, 4.0), 32)):
    spec = cascade.CascadeSpec(ranges=((4, 4), (4, 4)), lr_size=16, queries=20, ladder=ladder, alternate=False)
    for b in batches(spec, imgs, 3):
      assert tuple(float(v) for v in b["stage_scales"][0]) == want_s
      np.testing.assert_array_equal(b["cells"], np.float32(2 / want_side))
      np.testing.assert_allclose(b["scale"], want_side / 16)
  # The draw itself, on fixed uniform values: (3, 2.5) -> prod 7.5, 16 * 7.5 = 120 > 50.
  fixed = type("Fixed", (), {"__init__": lambda self, v: setattr(self, "v", list(v)),
                             "uniform": lambda self, lo, hi: self.v.pop(0)})
  spec = cascade.CascadeSpec(ranges=((1, 4), (1, 4)), lr_size=16, queries=20)
  assert cascade.draw_scales(spec, 2, 50, fixed([3.0, 2.5])) == (1.25, 2.5)  # 3 * 50 / 120
  assert cascade.draw_scales(spec, 2, 200, fixed([3.0, 2.5])) == (3.0, 2.5)  # 120 <= 200: unchanged
  # Ladder 1: 3 -> 4, 2.5 -> 2 (nearest in log2), prod 8 -> 128 > 50 -> prod 2 -> s_1 = 1.
  ladder = cascade.CascadeSpec(ranges=((1, 4), (1, 4)), lr_size=16, queries=20, ladder=1)
  assert cascade.draw_scales(ladder, 2, 50, fixed([3.0, 2.5])) == (1.0, 2.0)
  assert cascade.draw_scales(ladder, 2, 200, fixed([3.0, 2.5])) == (4.0, 2.0)


def test_stream_is_deterministic_resumable_and_shards_rows():
  imgs = [coded_image(100 + 10 * t, 120, t) for t in range(5)]
  spec = cascade.CascadeSpec(ranges=((1, 4), (1, 4), (1, 2)), lr_size=8, queries=16, ladder=0)
  a, b, other = batches(spec, imgs, 6), batches(spec, imgs, 6), batches(spec, imgs, 6, seed=1)
  for x, y in zip(a, b):
    assert x.keys() == y.keys()
    for k in x:
      np.testing.assert_array_equal(x[k], y[k])
  assert any(not np.array_equal(x["rgb"], y["rgb"]) for x, y in zip(a, other))
  it = iter(cascade.cascade_dataset(imgs, spec, batch_size=2, seed=0, shard=(0, 1)))
  for _ in range(3):
    next(it)
  state = it.get_state()
  resumed = iter(cascade.cascade_dataset(imgs, spec, batch_size=2, seed=0, shard=(0, 1)))
  resumed.set_state(state)
  for want in a[3:]:
    got = next(resumed)
    for k in want:
      np.testing.assert_array_equal(got[k], want[k])
  # Two processes: rows 0 and 1 of every global batch, with its scale set.
  p0, p1 = batches(spec, imgs, 6, shard=(0, 2)), batches(spec, imgs, 6, shard=(1, 2))
  for whole, x, y in zip(a, p0, p1):
    for k in whole:
      np.testing.assert_array_equal(np.concatenate([x[k], y[k]]), whole[k])


def test_bad_cascade_settings_name_the_field():
  with pytest.raises(ValueError, match=r"data.stage_ranges\[1\]=\(0.5, 2\) must satisfy 1 <= lo <= hi"):
    cascade.CascadeSpec(ranges=((1, 4), (0.5, 2)))
  with pytest.raises(ValueError, match=r"data.stage_ranges\[0\]=\(1.1, 1.3\) holds no power of 2"):
    cascade.CascadeSpec(ranges=((1.1, 1.3),), ladder=1)
  with pytest.raises(ValueError, match="data.scale_ladder=-1 must be an integer >= 0"):
    cascade.CascadeSpec(ladder=-1)
  with pytest.raises(ValueError, match="data.queries=100 must be in"):
    cascade.CascadeSpec(lr_size=8, queries=100)
  c = clit_train291.get_config("lit,small")
  c.data.stage_ranges = ((1, 4), (1, 4))
  with pytest.raises(ValueError, match=r"data.stage_ranges has 2 ranges but model.num_stages=1"):
    cascade.validate(c)


def test_stage_configs_name_their_predecessors_and_load_as_a_schedule():
  chain = cumulative.load_schedule("clit_train291:small", {"train.steps": 2})
  assert [n for n, _ in chain] == ["lit", "clit2", "clit3"]
  for i, (name, c) in enumerate(chain):
    assert c.model.num_stages == i + 1 == len(c.data.stage_ranges) and c.data.protocol == "cascade"
    assert c.cumulative.previous == ("" if i == 0 else chain[i - 1][0]) and c.train.steps == 2
    assert c.model.base_dim == 16  # `small` kept along the chain
  assert [n for n, _ in cumulative.load_schedule("clit_train291:clit2")] == ["lit", "clit2"]
  clit3 = clit_train291.get_config("clit3")
  assert clit3.data.stage_ranges == ((1, 4), (1, 4), (1, 2)) and clit3.data.lr_size == 48
  # Default: the whole schedule in lit_train291's budget; `full`: each stage that budget, CLIT3 1.5 times it.
  lit = lit_train291.get_config()
  equal = [c.train.steps for _, c in cumulative.load_schedule("clit_train291:clit3")]
  per_stage = [c.train for _, c in cumulative.load_schedule("clit_train291:clit3,full")]
  assert [t.steps for t in per_stage] == [lit.train.steps, lit.train.steps, round(1.5 * lit.train.steps)]
  assert [t.budget_s for t in per_stage] == [lit.train.budget_s, lit.train.budget_s, 1.5 * lit.train.budget_s]
  # The equal-budget steps at their estimated step times fill lit_train291's budget, split 2 : 2 : 3.
  seconds = [n * clit_train291.LIT_STEP_S * clit_train291.BATCH_COST[stage]
             for n, stage in zip(equal, ("lit", "clit2", "clit3"))]
  np.testing.assert_allclose(seconds, np.array([2, 2, 3]) / 7 * lit.train.budget_s, rtol=0.02)
  assert equal[0] < lit.train.steps and sum(equal) < lit.train.steps  # cascade steps cost more than LIT's
  with pytest.raises(ValueError, match="unknown argument"):
    clit_train291.get_config("clit4")
  with pytest.raises(ValueError, match="has no cumulative.stage"):
    cumulative.load_schedule("lit_train291:small")


def test_runner_skips_complete_stages_resumes_and_stops_at_a_budget(tmp_path, monkeypatch):
  """The runner's order of work, with `training.train` replaced by a stub that writes checkpoint folders."""
  chain = cumulative.load_schedule("clit_train291:clit3,small")
  totals = {n: c.train.steps for n, c in chain}
  calls, stop_at = [], {"clit2": 2}

  def fake_train(config, workdir, progress=True):
    step = stop_at.pop(config.cumulative.stage, totals[config.cumulative.stage])
    calls.append((config.cumulative.stage, config.train.init_from, checkpoints.latest_step(workdir)))
    (pathlib.Path(workdir) / checkpoints.CHECKPOINT_DIR / str(step)).mkdir(parents=True)
    return {"step": np.int32(step)}

  monkeypatch.setattr(training, "train", fake_train)
  # clit2 stops early (its budget): clit3 does not start.
  assert cumulative.train_schedule(chain, tmp_path) == {"lit": totals["lit"], "clit2": 2}
  assert calls == [("lit", "", None), ("clit2", str((tmp_path / "lit").absolute()), None)]
  calls.clear()
  # Again: LIT complete (skipped), CLIT2 resumed from its step 2, then CLIT3 from CLIT2.
  assert cumulative.train_schedule(chain, tmp_path) == totals
  assert calls == [("clit2", str((tmp_path / "lit").absolute()), 2), ("clit3", str((tmp_path / "clit2").absolute()),
                                                                      None)]
  calls.clear()
  assert cumulative.train_schedule(chain, tmp_path, only=["clit3"]) == {"clit3": totals["clit3"]} and not calls
  with pytest.raises(ValueError, match=r"stages \['clit4'\] are not in the schedule"):
    cumulative.train_schedule(chain, tmp_path, only=["clit4"])


# --------------------------------------------------------------------------------------------------------
# The schedule: trained runs shared by the tests below.


def _cli(workdir):
  return [sys.executable, "-m", "experiments.train_cumulative", "--config=clit_train291:clit2,small",
          f"--workdir={workdir}", *CLI_ARGS]


def _run(workdir, env) -> str:
  r = subprocess.run(_cli(workdir), cwd=REPO, env=env, capture_output=True, text=True)
  assert r.returncode == 0, r.stderr[-3000:]
  return r.stderr


def _params(workdir):
  _, params, _, step = checkpoints.restore_model(workdir)
  return jax.tree.map(np.asarray, params), step


def _flat(params):
  return {"/".join(str(getattr(k, "key", k)) for k in path): np.asarray(v)
          for path, v in jax.tree_util.tree_leaves_with_path(params)}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """The :small LIT -> CLIT2 schedule run straight through, and run again killed inside CLIT2 then restarted."""
  root = tmp_path_factory.mktemp("cumulative")
  data = root / "data" / "train291"
  data.mkdir(parents=True)
  for name, (h, w) in TRAIN_IMAGES.items():
    iio.imwrite(data / f"{name}.png", np.round(images.bundled_image(name)[:h, :w] * 255).astype(np.uint8))
  # One compilation cache for the three processes: the straight run compiles, the others reuse it.
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "INRSR_DATA_DIR": str(root / "data"),
         "JAX_COMPILATION_CACHE_DIR": str(root / "jax_cache")}
  straight, killed = root / "straight", root / "killed"
  _run(straight, env)

  log = root / "killed.log"
  with log.open("w") as f:
    proc = subprocess.Popen(_cli(killed), cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=f)
    deadline = time.time() + 300
    while not (killed / "clit2" / "checkpoints" / "2").exists():
      assert proc.poll() is None, f"training ended before it could be killed: {log.read_text()[-3000:]}"
      assert time.time() < deadline, "no stage-2 checkpoint appeared"
      time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
  killed_at = checkpoints.latest_step(killed / "clit2")
  restart_log = _run(killed, env)
  return dict(data=root / "data", straight=straight, killed=killed, killed_at=killed_at, restart_log=restart_log)


def test_schedule_trains_each_stage_from_the_previous_one(runs):
  straight = runs["straight"]
  chain = cumulative.load_schedule("clit_train291:clit2,small")
  for i, (name, c) in enumerate(chain):
    stored = checkpoints.load_config(straight / name)
    assert checkpoints.latest_step(straight / name) == c.train.steps
    assert stored.model.num_stages == i + 1
    assert stored.train.init_from == ("" if i == 0 else str((straight / chain[i - 1][0]).absolute()))
    logged = [json.loads(l)["step"] for l in (straight / name / training.METRICS_FILE).read_text().splitlines()]
    assert logged[-1] == c.train.steps
    # What evaluation records as the schedule's earlier stages: the steps of every predecessor.
    assert checkpoints.init_steps(straight / name) == tuple(prev.train.steps for _, prev in chain[:i])
  lit, _ = _params(straight / "lit")
  clit2, _ = _params(straight / "clit2")
  flat_lit, flat_clit2 = _flat(lit), _flat(clit2)
  shared = sorted(set(flat_lit) & set(flat_clit2))
  assert shared and len(flat_clit2) > len(shared) and all("_1" in k for k in set(flat_clit2) - set(flat_lit))


def test_init_steps_follow_init_from_and_say_when_a_predecessor_is_gone(tmp_path):
  def run(name, init_from, steps):
    folder = tmp_path / name
    folder.mkdir()
    for step in steps:
      (folder / checkpoints.CHECKPOINT_DIR / str(step)).mkdir(parents=True)
    checkpoints.save_config(ml_collections.ConfigDict({"train": {"init_from": init_from}}), folder)
    return folder

  lit = run("lit", "", [100, 440])
  clit2 = run("clit2", str(lit), [175])
  clit3 = run("clit3", str(clit2), [100])
  assert checkpoints.init_steps(clit3) == (440, 175)
  assert checkpoints.init_steps(lit) == ()
  assert checkpoints.init_steps(run("orphan", str(tmp_path / "deleted"), [5])) is None
  assert checkpoints.init_steps(run("empty_source", str(run("untrained", "", [])), [5])) is None
  loop_a = run("a", str(tmp_path / "b"), [1])
  run("b", str(loop_a), [2])
  with pytest.raises(ValueError, match="loops back to"):
    checkpoints.init_steps(loop_a)


def test_killed_schedule_resumes_to_the_uninterrupted_parameters(runs):
  steps = cumulative.load_schedule("clit_train291:clit2,small")[-1][1].train.steps
  assert runs["killed_at"] is not None and runs["killed_at"] < steps, f"not killed inside CLIT2: {runs['killed_at']}"
  assert "stage lit: complete" in runs["restart_log"]  # the finished stage is not run again
  for stage in ("lit", "clit2"):
    want, want_step = _params(runs["straight"] / stage)
    got, got_step = _params(runs["killed"] / stage)
    assert want_step == got_step
    jax.tree.map(np.testing.assert_array_equal, got, want)  # exactly
    # The same metrics lines (steps and losses), none twice.
    lines = [(runs[k] / stage / training.METRICS_FILE).read_text().splitlines() for k in ("straight", "killed")]
    strip = lambda ls: [{k: v for k, v in json.loads(l).items() if k != "pixels_per_s"} for l in ls]
    assert strip(lines[1]) == strip(lines[0])


def test_new_stage_starts_from_the_previous_stage_parameters(runs, tmp_path, monkeypatch):
  """CLIT2 at learning rate 0 keeps its step-0 parameters: LIT's where they exist, a fresh init elsewhere."""
  monkeypatch.setenv("INRSR_DATA_DIR", str(runs["data"]))
  shutil.copytree(runs["straight"] / "lit", tmp_path / "lit")
  chain = cumulative.load_schedule("clit_train291:clit2,small", {"train.learning_rate": 0.0, "train.steps": 1})
  done = cumulative.train_schedule(chain, tmp_path, progress=False)
  lit_steps = cumulative.load_schedule("clit_train291:lit,small")[0][1].train.steps
  assert done == {"lit": lit_steps, "clit2": 1}  # LIT complete (copied): skipped
  lit, _ = _params(tmp_path / "lit")
  start, _ = _params(tmp_path / "clit2")
  model = models.from_config(chain[1][1].model)
  fresh = _flat(models.init_params(model, jax.random.key(chain[1][1].train.seed)))
  flat_lit, flat_start = _flat(lit), _flat(start)
  new = set(flat_start) - set(flat_lit)
  assert new and len(flat_lit) < len(flat_start)
  for k in flat_lit:
    np.testing.assert_array_equal(flat_start[k], flat_lit[k])
  assert any(not np.array_equal(flat_lit[k], fresh[k]) for k in flat_lit)  # LIT trained away from its init
  for k in new:
    np.testing.assert_array_equal(flat_start[k], fresh[k])
  # Everything complete: nothing is trained again.
  monkeypatch.setattr(training, "train", lambda *a, **k: pytest.fail("a complete stage was trained again"))
  assert cumulative.train_schedule(chain, tmp_path, progress=False) == done
  assert cumulative.train_schedule(chain, tmp_path, only=["clit2"], progress=False) == {"clit2": 1}
  with pytest.raises(ValueError, match="cumulative.previous='lit' but comes first"):
    cumulative.train_schedule(chain[1:], tmp_path, progress=False)
