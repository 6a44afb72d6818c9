"""Shared pytest set-up: `slow` and `gpu` markers, the repo and shared folders, entry points, a trained run.

Tests on the official fixtures (`../shared/fixtures`) or the benchmark data (`../shared/data`) take the `shared`
or `shared_data` fixture: absent, they skip with the reason; with $INRSR_REQUIRE_SHARED set (`.ci/run` sets it)
they fail instead, so a CI run cannot pass without its port checks.

`run_module` runs `python -m experiments.X ...` as a subprocess from the repo root (CPU); `trained_run` is one
`srinr_demo:small` run trained once per test process (per xdist worker) for the tests that need *a* trained run,
and `trained_run_copy` a copy of it for a test that writes into the run folder.
"""

import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import jax
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


def pytest_addoption(parser):
  parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


CACHE_VAR = "JAX_COMPILATION_CACHE_DIR"
_OWN_CACHE = []  # the cache folder this (controlling) pytest process made, removed when it ends


def pytest_configure(config):
  """One persistent JAX compilation cache for the whole test run: this process, its xdist workers (which inherit
  the environment) and every entry point a test starts, so a program many tests compile (the small train steps,
  the upscale passes) is compiled once. A cache folder set by the user ($JAX_COMPILATION_CACHE_DIR) is used as is;
  otherwise a temporary folder, removed at the end of the run. Cached executables are the compiled programs
  themselves (keyed by program, compile options, XLA flags, backend and JAX version): results are unchanged."""
  del config
  if not os.environ.get(CACHE_VAR):
    os.environ[CACHE_VAR] = tempfile.mkdtemp(prefix="inrsr-test-jax-cache-")
    _OWN_CACHE.append(os.environ[CACHE_VAR])
  jax.config.update("jax_compilation_cache_dir", os.environ[CACHE_VAR])


def pytest_unconfigure(config):
  del config
  for folder in _OWN_CACHE:
    shutil.rmtree(folder, ignore_errors=True)


def has_gpu() -> bool:
  try:
    return any(d.platform == "gpu" for d in jax.devices())
  except RuntimeError:
    return False


def pytest_collection_modifyitems(config, items):
  skip_slow = pytest.mark.skip(reason="slow test: run with --runslow")
  skip_gpu = pytest.mark.skip(reason="needs an NVIDIA GPU; none is present")
  gpu = has_gpu()
  for item in items:
    if "slow" in item.keywords and not config.getoption("--runslow"):
      item.add_marker(skip_slow)
    if "gpu" in item.keywords and not gpu:
      item.add_marker(skip_gpu)


REQUIRE_SHARED = "INRSR_REQUIRE_SHARED"  # set (to anything but "" or "0") by .ci/run


def shared_dir() -> pathlib.Path:
  """The shared folder (fixtures of the official code, data): $INRSR_SHARED_DIR, else ../shared beside the repo."""
  return pathlib.Path(os.environ.get("INRSR_SHARED_DIR", REPO.parent / "shared"))


def data_dir() -> pathlib.Path:
  """The shared benchmark-data folder: $INRSR_DATA_DIR, else ../shared/data beside the repo."""
  return pathlib.Path(os.environ.get("INRSR_DATA_DIR", REPO.parent / "shared" / "data"))


def shared_required() -> bool:
  return os.environ.get(REQUIRE_SHARED, "") not in ("", "0")


def missing(reason: str):
  """Skip a test whose shared input is absent; fail it instead when $INRSR_REQUIRE_SHARED is set (CI)."""
  if shared_required():
    pytest.fail(f"{reason}; {REQUIRE_SHARED} is set, so tests on the shared fixtures and data must run",
                pytrace=False)
  pytest.skip(reason)


@pytest.fixture(scope="session")
def shared() -> pathlib.Path:
  """The shared folder, holding `fixtures/` (official outputs): skips when absent, fails under CI."""
  root = shared_dir()
  if not (root / "fixtures").is_dir():
    missing(f"shared fixtures not found at {root / 'fixtures'} (set INRSR_SHARED_DIR to ../shared)")
  return root


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
  """The benchmark-data folder, holding `Set5/` and the rest: skips when absent, fails under CI."""
  root = data_dir()
  if not (root / "Set5").is_dir():
    missing(f"benchmark data not found at {root} (set INRSR_DATA_DIR to ../shared/data)")
  return root


@pytest.fixture(scope="session")
def repo_root() -> pathlib.Path:
  """The checkout's root folder (where `python -m experiments.X` runs)."""
  return REPO


def module_env(env: dict | None = None) -> dict:
  """The environment of an entry point run by a test: this process's, on the CPU, with `env` on top."""
  return {**os.environ, "JAX_PLATFORMS": "cpu", **(env or {})}


def module_command(module: str, *args) -> list[str]:
  """`python -m module args...` with this interpreter (for a test that starts it with `subprocess.Popen`)."""
  return [sys.executable, "-m", module, *map(str, args)]


def run_module_process(module: str, *args, env: dict | None = None, check: bool = False,
                       timeout: float = 900) -> subprocess.CompletedProcess:
  """Run `python -m module args...` from the repo root on the CPU, capturing its text output.

  Args:
    module: the module, e.g. "experiments.upscale".
    *args: its arguments (converted with str).
    env: variables added to this process's environment (JAX_PLATFORMS=cpu is set unless `env` says otherwise).
    check: fail the test, showing the end of stderr, when the exit status is not 0.
    timeout: seconds before the run is killed (a subprocess.TimeoutExpired error).

  Returns:
    The subprocess.CompletedProcess (returncode, stdout, stderr as text).
  """
  run = subprocess.run(module_command(module, *args), cwd=REPO, env=module_env(env), capture_output=True, text=True,
                       timeout=timeout, check=False)
  if check and run.returncode != 0:
    pytest.fail(f"python -m {module} {' '.join(map(str, args))} exited {run.returncode}:\n{run.stderr[-3000:]}",
                pytrace=False)
  return run


@pytest.fixture(scope="session")
def run_module():
  """`run_module(module, *args, env=None, check=False, timeout=900)`: see `run_module_process`."""
  return run_module_process


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> pathlib.Path:
  """A `srinr_demo:small` run (trained in this process once per session and xdist worker): 20 steps, checkpoints
  at steps 10 and 20, protocol `fit` on two bundled 128x128 crops, `heldout` on a third.

  Shared by every test that takes it: read it (restore, upscale from it), never write into it; a test that writes
  into the run folder (evaluate's results, diagnostics) takes `trained_run_copy`.
  """
  from experiments.configs import srinr_demo  # pylint: disable=g-import-not-at-top
  from inrsr.train import training  # pylint: disable=g-import-not-at-top
  workdir = tmp_path_factory.mktemp("trained_run") / "run"
  training.train(srinr_demo.get_config("small"), workdir, progress=False)
  return workdir


@pytest.fixture
def trained_run_copy(trained_run, tmp_path) -> pathlib.Path:
  """A copy of `trained_run` in the test's own folder, for a test that writes into the run."""
  return pathlib.Path(shutil.copytree(trained_run, tmp_path / "trained_run"))
