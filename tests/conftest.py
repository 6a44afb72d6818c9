"""Shared pytest set-up: `slow` and `gpu` markers, the benchmark-data folder, CPU-friendly JAX settings."""

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


def data_dir() -> pathlib.Path:
  """The shared benchmark-data folder: $INRSR_DATA_DIR, else ../shared/data beside the repo."""
  return pathlib.Path(os.environ.get("INRSR_DATA_DIR", REPO.parent / "shared" / "data"))


@pytest.fixture
def shared_data():
  root = data_dir()
  if not (root / "Set5").is_dir():
    pytest.skip(f"benchmark data not found at {root} (set INRSR_DATA_DIR to ../shared/data)")
  return root
