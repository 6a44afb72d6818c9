"""Bad input and faults: one-line errors before any work, nothing a user made written over or left behind.

The CLI cases run the entry points as subprocesses and fail before anything is compiled (seconds each).
"""

import hashlib
import logging
import os
import pathlib
import subprocess
import sys

import imageio.v3 as iio
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

from conftest import REPO, run_module_process
from experiments.configs import srinr_demo
from inrsr import convert, models
from inrsr.data import sources
from inrsr.infer import upscaling
from inrsr.train import checkpoints, training

def _cli(*args, env=None):
  """Run `python -m args...` (CPU); returns (exit status, stderr)."""
  run = run_module_process(*args, env=env, timeout=300)
  return run.returncode, run.stderr


def _one_error_line(rc, stderr) -> str:
  """The single `error: ...` line of a handled failure: exit status 2 and no traceback."""
  errors = [l for l in stderr.splitlines() if l.startswith("error: ")]
  assert rc == 2 and "Traceback" not in stderr and len(errors) == 1, stderr[-3000:]
  return errors[0]


def _digest(folder: pathlib.Path) -> dict:
  return {p.relative_to(folder).as_posix(): hashlib.sha1(p.read_bytes()).hexdigest()
          for p in sorted(folder.rglob("*")) if p.is_file()}


def _fake_trained_run(folder: pathlib.Path) -> pathlib.Path:
  """A folder laid out as a trained run (config.json, metrics.jsonl, checkpoint steps 2 and 4)."""
  for step in (2, 4):
    (folder / "checkpoints" / str(step)).mkdir(parents=True)
    (folder / "checkpoints" / str(step) / "state").write_bytes(os.urandom(64))
  checkpoints.save_config(srinr_demo.get_config("small"), folder)
  (folder / "metrics.jsonl").write_text('{"step": 4, "loss": 0.1}\n')
  return folder


# 1. convert never writes over a trained run; --overwrite replaces only an earlier conversion.


def test_convert_refuses_a_trained_run_even_with_overwrite(tmp_path):
  run = _fake_trained_run(tmp_path / "run")
  before = _digest(run)
  for extra in ([], ["--overwrite"]):
    line = _one_error_line(*_cli("experiments.convert", f"--input={tmp_path / 'none.pth'}", f"--workdir={run}",
                                 *extra))
    assert line == (f"error: --workdir={run} holds a trained run: a conversion never writes over it; give a new or "
                    "empty folder")
  assert _digest(run) == before
  (tmp_path / "mine").mkdir()
  (tmp_path / "mine" / "notes.txt").write_text("mine")
  with pytest.raises(FileExistsError, match=r"holds files that are not an inrsr run \(notes.txt\)"):
    convert.convert_to_run(tmp_path / "none.pth", tmp_path / "mine", ml_collections.ConfigDict(), overwrite=True)


def test_convert_overwrite_replaces_only_an_earlier_conversion(tmp_path, monkeypatch):
  conv = tmp_path / "conv"
  config = srinr_demo.get_config("small")
  config.converted_from = "old.pth"
  checkpoints.save_params(conv, config, {"w": np.zeros(3, np.float32)})
  (tmp_path / "empty").mkdir()
  assert convert.check_workdir(tmp_path / "new") is False and convert.check_workdir(tmp_path / "empty") is False
  with pytest.raises(FileExistsError, match=r"holds a run converted from old.pth: give a new folder, or --overwrite"):
    convert.convert_to_run(tmp_path / "new.pth", conv, config)
  # With --overwrite the earlier conversion's parameters and config are replaced by the new file's.
  monkeypatch.setattr(convert, "read_checkpoint", lambda path, model=None: ("liif", {"k": 1}, {"w": np.ones(2)}))
  convert.convert_to_run(tmp_path / "new.pth", conv, ml_collections.ConfigDict({"eval": {"x": 1}}), overwrite=True)
  manager = checkpoints.checkpoint_manager(conv)
  restored = manager.restore(0, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
  manager.close()
  assert manager.all_steps() == [0] and np.asarray(restored["state"]["params"]["w"]).tolist() == [1.0, 1.0]
  stored = checkpoints.load_config(conv)
  assert stored.converted_from == str(tmp_path / "new.pth") and stored.model.to_dict() == {"k": 1, "name": "liif"}
  (conv / "checkpoints" / "5").mkdir()  # a step that training wrote: no longer a conversion only
  with pytest.raises(FileExistsError, match="holds a trained run"):
    convert.check_workdir(conv, overwrite=True)


# 2. A corrupt newest checkpoint is moved aside on resume; restore_model says in one line which step it used.


_OURS = checkpoints.__file__  # records of inrsr.train.checkpoints (Orbax logs a line of its own for a bad metadata file)


def _corrupt(step_dir: pathlib.Path):
  for f in step_dir.rglob("*"):
    if f.is_file():
      f.write_bytes(b"\0garbage")


def test_corrupt_newest_step_is_moved_aside_so_the_retrained_one_replaces_it(tmp_path, caplog):
  state = lambda v: {"params": {"w": jnp.full((4,), v, jnp.float32)}}
  save = lambda m, step, v: m.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state(v))))
  manager = checkpoints.checkpoint_manager(tmp_path)
  for step in (2, 4):
    save(manager, step, float(step))
  manager.wait_until_finished()
  manager.close()
  _corrupt(tmp_path / "checkpoints" / "4")
  caplog.set_level(logging.WARNING, logger="absl")
  manager = checkpoints.checkpoint_manager(tmp_path)
  restored, step = checkpoints.restore_latest(manager, jax.eval_shape(lambda: state(0.0)))
  assert step == 2 and np.asarray(restored["params"]["w"]).tolist() == [2.0] * 4
  assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["2", "4.corrupt-1"]
  warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and r.pathname == _OURS]
  assert len(warnings) == 1 and "using checkpoint step 2" in warnings[0] and "4.corrupt-1" in warnings[0]
  assert "\n" not in warnings[0] and "tensorstore_spec" not in warnings[0]
  save(manager, 4, 40.0)  # the retrained step: saved (Orbax skips a step it already holds)
  manager.wait_until_finished()
  manager.close()
  manager = checkpoints.checkpoint_manager(tmp_path)
  restored, step = checkpoints.restore_latest(manager, jax.eval_shape(lambda: state(0.0)))
  manager.close()
  assert step == 4 and np.asarray(restored["params"]["w"]).tolist() == [40.0] * 4


def test_restore_model_past_a_corrupt_step_says_which_step_in_one_line(tmp_path, caplog):
  config = srinr_demo.get_config("small")
  model = models.from_config(config.model)
  params = jax.tree.map(lambda x: np.full(x.shape, 0.5, x.dtype), checkpoints.abstract_params(model))
  checkpoints.save_params(tmp_path, config, params, step=3)
  checkpoints.save_params(tmp_path, config, params, step=6)
  _corrupt(tmp_path / "checkpoints" / "6" / "state")  # the arrays' files: TensorStore's long errors
  caplog.set_level(logging.INFO, logger="absl")
  _, _, _, step = checkpoints.restore_model(tmp_path)
  assert step == 3
  said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and r.pathname == _OURS]
  assert len(said) == 1 and "using checkpoint step 3" in said[0] and "step 6:" in said[0], said
  assert len(said[0]) < 600 and "\n" not in said[0]
  assert (tmp_path / "checkpoints" / "6").is_dir()  # reading a run never renames its files


# 4. upscale never writes over its input, one output with another, or (without --overwrite) an existing file.


def test_upscale_refuses_its_input_as_output_and_colliding_names_before_any_work(tmp_path):
  src = tmp_path / "a.png"
  iio.imwrite(src, np.full((8, 8, 3), 7, np.uint8))
  before = src.read_bytes()
  line = _one_error_line(*_cli("experiments.upscale", f"--workdir={tmp_path / 'no-run'}", f"--input={src}",
                               "--scale=2", f"--output={tmp_path / '.' / 'a.png'}"))
  assert line == (f"error: --output={tmp_path / '.' / 'a.png'} is the input {src}: an upscale never writes over its "
                  "input; give another output")
  folder = tmp_path / "photos"
  folder.mkdir()
  for name in ("a.png", "a.jpg", "b.png"):
    iio.imwrite(folder / name, np.full((8, 8, 3), 9, np.uint8))
  with pytest.raises(ValueError, match=r"is the input"):
    upscaling.upscale_paths(tmp_path / "no-run", folder, folder, scale=2, progress=False)
  with pytest.raises(ValueError, match=r"--input=.*photos: a.jpg and a.png would both be written to .*out/a.png"):
    upscaling.upscale_paths(tmp_path / "no-run", folder, tmp_path / "out", scale=2, progress=False)
  assert src.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "photos"]


def test_existing_outputs_are_refused_unless_overwrite(tmp_path):
  src = tmp_path / "in.png"
  iio.imwrite(src, np.zeros((8, 8, 3), np.uint8))
  (tmp_path / "out.png").write_bytes(b"mine")
  line = _one_error_line(*_cli("experiments.upscale", f"--workdir={tmp_path / 'no-run'}", f"--input={src}",
                               "--scale=2", f"--output={tmp_path / 'out.png'}"))
  assert line == f"error: --output: {tmp_path / 'out.png'} exists: give another output, or --overwrite to replace it"
  assert (tmp_path / "out.png").read_bytes() == b"mine"
  upscaling.check_paths(src, tmp_path / "out.png", overwrite=True)  # allowed with --overwrite
  clip, frames = tmp_path / "clip", tmp_path / "frames"
  clip.mkdir()
  frames.mkdir()
  iio.imwrite(clip / "00000000.png", np.zeros((8, 8, 3), np.uint8))
  (frames / "00000001.png").write_bytes(b"mine")
  with pytest.raises(FileExistsError, match=r"frames/00000001.png exists"):
    upscaling.check_paths(clip, frames, clip=True)
  with pytest.raises(ValueError, match=r"--output=.*in.png is a file: the input .*clip is written into a folder"):
    upscaling.check_paths(clip, src, clip=True)
  iio.imwrite(tmp_path / "clip.gif", np.zeros((2, 8, 8, 3), np.uint8))
  for source in (clip, tmp_path / "clip.gif"):  # new frame folders and video files are what a clip writes
    upscaling.check_paths(source, tmp_path / "new_frames", clip=True)
    upscaling.check_paths(source, tmp_path / "new.mp4", clip=True)


# 5. Non-positive steps, an output folder, an unknown suffix, a file that is no image, an unknown field.


@pytest.mark.parametrize("field,value", [("steps", -5), ("epochs", -1)])
def test_negative_or_fractional_steps_are_refused(field, value):
  c = srinr_demo.get_config("small")
  c.train[field] = value
  with pytest.raises(ValueError, match=rf"train.{field}={value!r} must be a whole number > 0"):
    training.validate_config(c)
  c.train.update(steps=0, epochs=0)
  with pytest.raises(ValueError, match="train.steps=0 and train.epochs=0 leave nothing to train"):
    training.validate_config(c)


def test_train_with_negative_steps_stops_at_once_and_leaves_no_folder(tmp_path):
  line = _one_error_line(*_cli("experiments.train", "--config=srinr_demo:small", f"--workdir={tmp_path / 'run'}",
                               "--config.train.steps=-5"))
  assert line == "error: train.steps=-5 must be a whole number > 0 (or 0: train.steps=0 trains train.epochs epochs)"
  assert not (tmp_path / "run").exists()


def test_zero_shot_output_folder_and_unknown_suffix_are_refused_before_the_fit(tmp_path):
  src = tmp_path / "in.png"
  iio.imwrite(src, np.zeros((64, 64, 3), np.uint8))
  (tmp_path / "outdir").mkdir()
  line = _one_error_line(*_cli("experiments.upscale", f"--input={src}", "--scale=2", f"--output={tmp_path / 'outdir'}",
                               "--budget=100000"))  # a fit first would take hours
  assert line.startswith(f"error: --output={tmp_path / 'outdir'} is a folder: expected a file name ending in one of "
                         ".png, .jpg")
  line = _one_error_line(*_cli("experiments.upscale", f"--input={src}", "--scale=2", f"--output={tmp_path / 'o.xyz'}",
                               "--budget=100000"))
  assert line == (f"error: --output={tmp_path / 'o.xyz'}: unknown output format .xyz; expected one of "
                  f"{', '.join(upscaling.OUTPUT_EXTENSIONS)}")
  assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png", "outdir"] and not any((tmp_path / "outdir").iterdir())


@pytest.mark.parametrize("content,why", [(b"", "an empty file, 0 bytes"),
                                         (b"hello", "5 bytes that do not decode as a PNG image")])
def test_a_file_named_png_that_is_no_image_is_named(tmp_path, content, why):
  bad = tmp_path / "photo.png"
  bad.write_bytes(content)
  line = _one_error_line(*_cli("experiments.upscale", f"--input={bad}", "--scale=2", f"--output={tmp_path / 'o.png'}"))
  assert line == f"error: {bad}: not a readable image ({why})"


def test_unknown_override_field_is_one_line_with_close_names(tmp_path):
  rc, err = _cli("experiments.train", "--config=srinr_demo:small", f"--workdir={tmp_path / 'run'}",
                 "--config.model.num_levles=3")
  assert _one_error_line(rc, err) == ("error: --config.model.num_levles: model has no field 'num_levles'; did you "
                                      "mean num_levels?")
  rc, err = _cli("experiments.train", "--config=srinr_demo:small", f"--workdir={tmp_path / 'run'}",
                 "--config.train.no_such_field=3")
  assert _one_error_line(rc, err) == "error: --config.train.no_such_field: train has no field 'no_such_field'"
  assert not (tmp_path / "run").exists()


# 6. One shared wrapper: handled errors are one line (traceback with --verbose or INRSR_VERBOSE=1), bugs are not.


_MAIN = "from experiments import configs; configs.run(lambda argv: {body}, names=())"
_RAISE = "(_ for _ in ()).throw({error})"


@pytest.mark.parametrize("error,line", [
    ("ValueError('--input=x.png does not exist')", "error: --input=x.png does not exist"),
    ("FileExistsError('out.png exists')", "error: out.png exists"),
    ("__import__('absl.app').app.UsageError('unexpected arguments: [1]')", "error: unexpected arguments: [1]"),
    ("__import__('inrsr.train.checkpoints').train.checkpoints.CheckpointError('no readable\\ncheckpoint')",
     "error: no readable checkpoint")])
def test_handled_errors_are_one_line_and_verbose_shows_the_traceback(error, line):
  code = _MAIN.format(body=_RAISE.format(error=error))
  run = lambda *extra, env=None: subprocess.run([sys.executable, "-c", code, *extra], cwd=REPO, capture_output=True,
                                                text=True, timeout=120, env={**os.environ, **(env or {})})
  quiet = run()
  assert _one_error_line(quiet.returncode, quiet.stderr) == line and quiet.stdout == ""
  name = error.split("(")[-2].split(".")[-1]  # the exception type
  if name == "CheckpointError":
    return  # (an inrsr type: one line too; its traceback is shown as the others')
  for loud in (run("--verbose"), run(env={"INRSR_VERBOSE": "1"})):
    assert loud.returncode == 1 and "error: " not in loud.stderr
    if name != "UsageError":  # absl prints a UsageError with the command's help
      assert "Traceback (most recent call last)" in loud.stderr and name in loud.stderr


def test_a_bug_keeps_its_traceback():
  run = subprocess.run([sys.executable, "-c", _MAIN.format(body="1 / 0")], cwd=REPO, capture_output=True, text=True,
                       timeout=120)
  assert run.returncode == 1 and "Traceback" in run.stderr and "ZeroDivisionError" in run.stderr
  assert "error: " not in run.stderr


def test_every_entry_point_starts_through_the_shared_wrapper():
  for path in sorted((REPO / "experiments").glob("*.py")):
    text = path.read_text()
    if '__name__ == "__main__"' in text:
      tail = text.split('__name__ == "__main__"', 1)[1]
      assert "configs.run(main" in tail and "app.run(" not in tail, path.name


# 7. A failed start leaves no empty run folder (and never removes a folder that was there before).


def test_failed_start_removes_only_the_folder_it_made_and_left_empty(tmp_path):
  c = srinr_demo.get_config("small")
  c.data.update(source="folder", root=str(tmp_path / "nowhere"))
  with pytest.raises(ValueError, match="nowhere does not exist"):
    training.train(c, tmp_path / "new" / "run", progress=False)
  assert not (tmp_path / "new" / "run").exists()
  (tmp_path / "mine").mkdir()
  with pytest.raises(ValueError, match="nowhere does not exist"):
    training.train(c, tmp_path / "mine", progress=False)
  assert (tmp_path / "mine").is_dir()  # the user's folder stays, empty as it was


# 8. Memory before allocation; where a missing data set comes from.


def test_state_memory_is_counted_and_refused_before_allocation(monkeypatch):
  c = srinr_demo.get_config("small")
  model = models.from_config(c.model)
  tx = optax.adam(1e-3)
  abstract = training.abstract_state(model, tx)
  mesh = training.make_mesh(1)
  shardings = jax.tree.map(lambda _: jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()), abstract)
  n = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(checkpoints.abstract_params(model)))
  devices = jax.local_device_count()
  # float32 parameters and Adam's two moments, Adam's int32 count and the int32 step, then a step's gradients
  # and updates, on every local device (the state is replicated).
  want = devices * (3 * 4 * n + 4 + 4 + 2 * 4 * n)
  monkeypatch.setattr(training, "host_memory_available", lambda: want)
  assert training.check_state_memory(c, abstract, shardings) == want
  monkeypatch.setattr(training, "host_memory_available", lambda: want - 1)
  with pytest.raises(ValueError, match=rf"model.name='srinr' \({n:,} parameters\) needs at least .* \({want:,} bytes"):
    training.check_state_memory(c, abstract, shardings)


def test_a_model_larger_than_the_host_is_refused_in_one_line(tmp_path):
  line = _one_error_line(*_cli("experiments.train", "--config=srinr_demo:small", f"--workdir={tmp_path / 'run'}",
                               "--config.model.log2_table_size=30", "--config.model.num_levels=16"))  # 640 GiB
  assert "more than the" in line and "GiB of host memory available" in line and "model.name='srinr'" in line
  assert not (tmp_path / "run").exists()


def test_a_table_size_the_hashing_cannot_index_is_refused_in_one_line(tmp_path):
  # kernels/hashgrid gathers table rows with int32 indices: 2**31 rows overflowed inside jnp.take (a traceback).
  base = srinr_demo.get_config("small").model
  for log2_t in (0, 30):
    assert models.from_config(ml_collections.ConfigDict({**base, "log2_table_size": log2_t})).log2_table_size == log2_t
  for bad in (31, -1, 2.5):
    with pytest.raises(ValueError, match=rf"^model.log2_table_size={bad} must be a whole number in \[0, 30\]"):
      models.from_config(ml_collections.ConfigDict({**base, "log2_table_size": bad}))
  line = _one_error_line(*_cli("experiments.train", "--config=srinr_demo:small", f"--workdir={tmp_path / 'run'}",
                               "--config.model.log2_table_size=31"))
  assert line.startswith("error: model.log2_table_size=31 must be a whole number in [0, 30]")
  assert not (tmp_path / "run").exists()


def test_missing_benchmark_set_names_the_field_and_where_it_comes_from(tmp_path, monkeypatch):
  monkeypatch.setenv("INRSR_DATA_DIR", str(tmp_path))
  with pytest.raises(ValueError, match=r"data.root='\$INRSR_DATA_DIR/CelebA-HQ' is .*CelebA-HQ, which does not exist\. "
                                       r"CelebA-HQ: 56 CelebA-HQ faces .*clovaai/stargan-v2.*Set INRSR_DATA_DIR"):
    sources.load_images("folder", root="$INRSR_DATA_DIR/CelebA-HQ")
  line = _one_error_line(*_cli("experiments.train", "--config=srinr_celeba", f"--workdir={tmp_path / 'run'}",
                               env={"INRSR_DATA_DIR": str(tmp_path)}))
  assert line.startswith("error: data.root='$INRSR_DATA_DIR/CelebA-HQ'") and "stargan-v2" in line
  assert not (tmp_path / "run").exists()
