"""Tests for the generalising-model path: registry, `patches` pipeline, training, conversion, CLIs, inference."""

import os

import imageio.v3 as iio
import jax
import ml_collections
import numpy as np
import pytest

from experiments.configs import common, liif_train291, srinr_demo
from inrsr import coords, evaluators, models, resize
from inrsr.convert import pth
from inrsr.data import pipeline
from inrsr.evaluators import frames
from inrsr.infer import inference
from inrsr.train import checkpoints, training


@pytest.fixture
def liif_fixture(shared):
  """The official LIIF fixture folder (`shared` skips, or fails under CI, when ../shared is absent)."""
  return shared / "fixtures" / "liif"


def stepped(steps):
  """small_config with the step schedule (a cosine schedule depends on train.steps itself)."""
  c = small_config(steps)
  c.train.schedule = "step"
  return c


def small_config(steps=6):
  """liif_train291:small on bundled photographs, so it runs without ../shared/data."""
  c = liif_train291.get_config("small")
  c.data.update(source="bundled", names=("astronaut", "coffee", "chelsea"), root="", limit=0)
  c.train.update(steps=steps)
  c.eval.heldout_sets = ml_collections.ConfigDict()
  c.eval.heldout.update(source="bundled", names=("rocket",), center_crop=64)
  return c


def test_registry_builds_each_model_by_name_and_rejects_unknown():
  srinr = models.from_config(ml_collections.ConfigDict({"num_levels": 2}))
  assert type(srinr).__name__ == "SRINR" and not models.is_generalising(srinr)
  liif = models.from_config(small_config().model)
  assert type(liif).__name__ == "LIIF" and models.is_generalising(liif)
  with pytest.raises(ValueError, match="model.name='nope' is not a registered model"):
    models.from_config(ml_collections.ConfigDict({"name": "nope"}))


def test_patch_example_matches_the_hr_crop_it_came_from():
  rng_img = np.random.default_rng(0)
  image = rng_img.random((120, 90, 3)).astype(np.float32)
  spec = pipeline.PatchSpec(lr_size=16, scale_min=1.0, scale_max=4.0, queries=200, augment=False)
  ex = pipeline.make_patch_example(image, spec, np.random.default_rng(3))
  side = int(round(float(ex["scale"]) * 16))
  assert ex["lr"].shape == (16, 16, 3) and ex["coords"].shape == (200, 2)
  np.testing.assert_allclose(ex["cells"], 2.0 / side)
  # Recover each query's pixel from its coordinate, then find the crop: every value must be an image pixel.
  cols = np.round((ex["coords"][:, 0] + 1) * side / 2 - 0.5).astype(int)
  rows = np.round((ex["coords"][:, 1] + 1) * side / 2 - 0.5).astype(int)
  assert len(set(zip(rows, cols))) == 200  # without replacement
  hits = [(t, l) for t in range(120 - side + 1) for l in range(90 - side + 1)
          if np.array_equal(image[t + rows[:5], l + cols[:5]], ex["rgb"][:5])]
  assert len(hits) == 1
  top, left = hits[0]
  crop = image[top:top + side, left:left + side]
  np.testing.assert_array_equal(crop[rows, cols], ex["rgb"])
  lr = np.round(np.clip(resize.resize(crop, 16, 16), 0, 1) * 255) / 255
  np.testing.assert_allclose(ex["lr"], lr, atol=1e-6)


def test_patch_example_caps_the_scale_for_small_images_and_is_deterministic():
  image = np.random.default_rng(1).random((40, 50, 3)).astype(np.float32)
  spec = pipeline.PatchSpec(lr_size=16, scale_min=3.0, scale_max=4.0, queries=64)
  a = pipeline.make_patch_example(image, spec, np.random.default_rng(7))
  b = pipeline.make_patch_example(image, spec, np.random.default_rng(7))
  assert float(a["scale"]) == pytest.approx(40 / 16)  # round(16 * s) >= 48 > 40: the largest crop.
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])
  with pytest.raises(ValueError, match="data.queries=300 must be in"):
    pipeline.PatchSpec(lr_size=16, queries=300)
  with pytest.raises(ValueError, match="data.scale_min=0.5 must be a finite number >= 1"):
    pipeline.PatchSpec(scale_min=0.5)


def test_liif_trains_resumes_exactly_and_evaluates(tmp_path):
  straight, split = tmp_path / "straight", tmp_path / "split"
  # The split run stops at 3 by its `steps` and goes on to 6; a cosine schedule is a function of train.steps,
  # so this comparison uses the step schedule (the cosine one is checked by its own test below).
  training.train(stepped(6), straight, progress=False)
  training.train(stepped(3), split, progress=False)
  training.train(stepped(6), split, progress=False)
  _, p1, _, s1 = checkpoints.restore_model(straight)
  _, p2, _, s2 = checkpoints.restore_model(split)
  assert s1 == s2 == 6
  for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p2)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  results = evaluators.evaluate_run(straight, scales=(2.0, 3.0), progress=False)
  assert set(results["protocols"]) == {"heldout"} and results["model"] == "liif"
  assert "| benchmark | LIIF |" in (straight / evaluators.RESULTS_MD).read_text()
  assert "init_steps" not in results  # trained from scratch
  # A run started from another (a cumulative schedule's stage) records the earlier run's steps for its label.
  follow = stepped(2)
  follow.train.init_from = str(straight)
  training.train(follow, tmp_path / "follow", progress=False)
  assert evaluators.evaluate_run(tmp_path / "follow", scales=(2.0,), progress=False)["init_steps"] == [6]
  straight.rename(tmp_path / "moved")  # the earlier run is gone: its steps are recorded as unknown, not as none
  assert evaluators.evaluate_run(tmp_path / "follow", scales=(2.0,), progress=False)["init_steps"] is None


def test_results_name_a_one_stage_clit_lit():
  base = common.GENERALISING_MODELS["clit"]
  assert models.results_key(ml_collections.ConfigDict(base)) == "lit"
  assert models.results_key(ml_collections.ConfigDict({**base, "num_stages": 3})) == "clit"
  assert models.results_key(ml_collections.ConfigDict(common.GENERALISING_MODELS["liif"])) == "liif"
  assert frames.markdown_table({"model": "lit", "step": 1, "num_images": {"p": 1}, "protocols": {"p": {
      "2": {"benchmark": {"model": {"psnr": 30.0, "ssim": 0.9}, "bicubic": {"psnr": 29.0, "ssim": 0.8}}}}}}
  ).count("| benchmark | LIT | 30.00 / 0.9000 |") == 1


def test_cosine_schedule_decays_to_zero_over_the_run():
  c = small_config(steps=10)
  tx = training.make_optimizer(c, 1, 10)
  params = {"w": np.ones(3, np.float32)}
  state = tx.init(params)
  sizes = []
  for _ in range(10):
    updates, state = tx.update({"w": np.ones(3, np.float32)}, state, params)
    sizes.append(float(np.abs(np.asarray(updates["w"])).max()))
  # Adam's first update has size lr; cos decay: lr * (1 + cos(pi k / 10)) / 2 at step k.
  assert sizes[0] == pytest.approx(c.train.learning_rate, rel=1e-3)
  assert sizes[5] == pytest.approx(c.train.learning_rate * 0.5, rel=1e-2)
  assert sizes[-1] < 0.03 * c.train.learning_rate


def _adam_update_sizes(tx, grads):
  """Largest |update| of each step of `tx` fed the gradients `grads` in turn (params of 3 ones)."""
  params = {"w": np.ones(3, np.float32)}
  state = tx.init(params)
  sizes = []
  for g in grads:
    updates, state = tx.update({"w": np.full(3, g, np.float32)}, state, params)
    sizes.append(float(np.abs(np.asarray(updates["w"])).max()))
  return sizes


def test_warmup_ramps_linearly_then_the_cosine_decays_over_the_rest():
  c = small_config(steps=10)
  c.train.update(warmup_steps=4, warmup_init=0.1)
  lr = c.train.learning_rate
  # A constant gradient makes Adam's update exactly the rate of the step (m_hat / sqrt(v_hat) = 1).
  sizes = _adam_update_sizes(training.make_optimizer(c, 1, 10), [1.0] * 10)
  expected = [lr * (0.1 + 0.9 * k / 4) for k in range(4)] + [lr * (1 + np.cos(np.pi * k / 6)) / 2 for k in range(6)]
  np.testing.assert_allclose(sizes, expected, rtol=1e-4)
  c.train.warmup_steps = 10
  with pytest.raises(ValueError, match="train.warmup_steps=10 must be below the run's 10 steps"):
    training.make_optimizer(c, 1, 10)


def test_clip_grad_norm_clips_before_adam():
  c = small_config(steps=10)
  c.train.update(schedule="step", decay_epochs=0)  # constant rate
  lr = c.train.learning_rate
  # Gradients 1000 then 1 per entry (global norm 1000 sqrt 3, then sqrt 3): clipped to norm sqrt 3 both are 1, so
  # Adam's second update is exactly lr; unclipped, by hand: m_hat = (0.9 * 100 + 0.1) / 0.19, v_hat =
  # (0.999 * 1000 + 0.001) / (1 - 0.999^2), update = lr m_hat / sqrt(v_hat) = 0.6708 lr.
  c.train.clip_grad_norm = float(np.sqrt(3.0))
  assert _adam_update_sizes(training.make_optimizer(c, 1), [1000.0, 1.0])[1] == pytest.approx(lr, rel=1e-4)
  c.train.clip_grad_norm = 0.0
  m_hat, v_hat = (0.9 * 100 + 0.1) / 0.19, (0.999 * 1000 + 0.001) / (1 - 0.999 ** 2)
  assert _adam_update_sizes(training.make_optimizer(c, 1), [1000.0, 1.0])[1] == pytest.approx(
      lr * m_hat / np.sqrt(v_hat), rel=1e-4)


def test_train_budget_stops_with_a_checkpoint(tmp_path):
  c = small_config(steps=1000)
  c.train.budget_s = 1e-6
  training.train(c, tmp_path, progress=False)
  _, _, _, step = checkpoints.restore_model(tmp_path)
  assert step == 1


def test_pth_reader_refuses_code_and_non_checkpoints(tmp_path):
  import pickle  # pylint: disable=g-import-not-at-top
  import zipfile  # pylint: disable=g-import-not-at-top

  bad = tmp_path / "evil.pth"
  with zipfile.ZipFile(bad, "w") as z:
    z.writestr("archive/data.pkl", pickle.dumps(os.system, protocol=2))
  with pytest.raises(ValueError, match="refusing to load posix.system"):
    pth.load(bad)
  text = tmp_path / "text.pth"
  text.write_text("not a checkpoint")
  with pytest.raises(ValueError, match="not a zip-format PyTorch checkpoint"):
    pth.load(text)


def test_pth_reader_reads_the_official_liif_file(liif_fixture):
  ckpt = pth.load(liif_fixture / "edsr_baseline_liif.pth")
  sd = ckpt["model"]["sd"]
  assert ckpt["model"]["name"] == "liif" and ckpt["epoch"] == 1
  assert sd["encoder.head.0.weight"].shape == (64, 3, 3, 3) and sd["imnet.layers.0.weight"].shape == (256, 580)
  # The fixture's MeanShift bias is -(0.4488, 0.4371, 0.4040) * 1 plus 0.01-scale noise (fixtures README).
  np.testing.assert_allclose(sd["encoder.sub_mean.bias"], [-0.4488, -0.4371, -0.4040], atol=0.05)
  assert sum(v.size for k, v in sd.items() if "mean" not in k) == 1567323 - 24


def test_converted_checkpoint_upscales_to_the_official_output_through_the_clis(tmp_path, liif_fixture, run_module):
  z = np.load(liif_fixture / "edsr_baseline_liif.npz")
  lr = z["lr"]
  src, out, run = tmp_path / "lr.png", tmp_path / "sr.png", tmp_path / "run"
  iio.imwrite(src, np.round(lr * 255).astype(np.uint8))  # The fixture's LR is 8-bit exactly.
  for args in (["experiments.convert", f"--input={liif_fixture / 'edsr_baseline_liif.pth'}", f"--workdir={run}"],
               ["experiments.upscale", f"--workdir={run}", f"--input={src}", f"--output={out}", "--size=77x57",
                "--progress=false"]):
    run_module(*args, check=True)
  official = np.round(np.clip(z["pred_grid"].reshape(57, 77, 3), 0, 1) * 255)
  got = iio.imread(out).astype(np.float64)
  assert np.abs(got - official).max() <= 1  # rounding of a value within 1e-5 of a .5 boundary
  assert (got == official).mean() > 0.999


def test_convert_names_what_is_wrong(tmp_path, liif_fixture):
  from inrsr import convert  # pylint: disable=g-import-not-at-top

  with pytest.raises(ValueError, match="holds a 'liif' model, not 'hiif'"):
    convert.read_checkpoint(liif_fixture / "edsr_baseline_liif.pth", model="hiif")
  with pytest.raises(ValueError, match="no such file"):
    convert.read_checkpoint(tmp_path / "missing.pth")


def _small_liif():
  """liif_train291:small's model with fresh parameters."""
  model = models.from_config(small_config().model)
  return model, model.init(jax.random.key(0), *models.example_inputs(model))["params"]


def test_chunked_inference_of_a_generalising_model_is_chunk_independent():
  model, params = _small_liif()
  lr = np.random.default_rng(0).random((9, 11, 3)).astype(np.float32)
  whole = inference.upscale(model, params, lr, 23, 31, chunk=0)
  pieces = inference.upscale(model, params, lr, 23, 31, chunk=100)  # last chunk padded
  np.testing.assert_array_equal(whole, pieces)
  # One query by hand: the model called directly at that pixel centre with its cell.
  q = coords.grid_xy_f32(np.array([5]), np.array([7]), 23, 31)[None]
  cell = np.full((1, 1, 2), 0.0, np.float32) + np.array([2 / 31, 2 / 23], np.float32)
  direct = np.clip(np.asarray(model.apply({"params": params}, lr[None], q, cell))[0, 0], 0, 1)
  np.testing.assert_allclose(whole[5, 7], direct, atol=1e-6)


def test_self_ensemble_is_the_mean_over_rotations_and_mirrors_undone():
  model, params = _small_liif()
  lr = np.random.default_rng(1).random((9, 11, 3)).astype(np.float32)
  got = inference.upscale_self_ensemble(model, params, lr, 23, 31, chunk=100)
  # The same group built another way: 4 rotations (np.rot90) of the LR and of its mirror image, each output
  # rotated back; odd rotations ask for a 31 x 23 output.
  want = np.zeros((23, 31, 3))
  for mirror in (False, True):
    x = lr[:, ::-1] if mirror else lr
    for k in range(4):
      h, w = (31, 23) if k % 2 else (23, 31)
      y = np.rot90(inference.upscale(model, params, np.ascontiguousarray(np.rot90(x, k)), h, w, chunk=0), -k)
      want += y[:, ::-1] if mirror else y
  np.testing.assert_allclose(got, want / 8, atol=2e-6)
  plain = inference.upscale(model, params, lr, 23, 31)
  assert np.abs(got - plain).max() > 1e-3  # a random model is not symmetric, so the ensemble changes the output


def test_self_ensemble_refuses_a_fitting_model():
  model = models.from_config(srinr_demo.get_config("small").model)
  with pytest.raises(ValueError, match="fitting model"):  # refused before the parameters are used
    inference.upscale_self_ensemble(model, None, np.zeros((8, 8, 3), np.float32), 16, 16)


def test_generalising_configs_build_and_name_their_data():
  c = common.generalising_base()
  assert c.data.protocol == "patches" and c.train.decay_epochs == 200 and c.data.queries == 48 * 48
  c291 = liif_train291.get_config()
  assert c291.data.root.endswith("train291") and c291.train.budget_s == 90 * 60
  assert liif_train291.get_config("rdn").model.encoder == "rdn"
