"""Shared pytest set-up: `slow` and `gpu` markers, the `shared` and `shared_data` folders.

Tests on the official fixtures (`../shared/fixtures`) or the benchmark data (`../shared/data`) take the `shared`
or `shared_data` fixture: absent, they skip with the reason; with $INRSR_REQUIRE_SHARED set (`.ci/run` sets it)
they fail instead, so a CI run cannot pass without its port checks.
"""

import os
import pathlib

import jax
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


def pytest_addoption(parser):
  parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


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
