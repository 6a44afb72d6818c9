"""The persistent compilation cache every entry point turns on (`experiments.configs.compilation_cache`)."""

import os
import subprocess
import sys

import jax
import pytest

from experiments import configs

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(autouse=True)
def _restore_cache_dir():
  before = jax.config.jax_compilation_cache_dir
  yield
  jax.config.update("jax_compilation_cache_dir", before)


def test_default_folder_user_folder_off_and_jax_own_variable(tmp_path):
  assert configs.compilation_cache({"XDG_CACHE_HOME": str(tmp_path)}) == str(tmp_path / "inrsr" / "jax")
  assert jax.config.jax_compilation_cache_dir == str(tmp_path / "inrsr" / "jax")
  assert configs.compilation_cache({configs.CACHE_ENV: str(tmp_path / "mine")}) == str(tmp_path / "mine")
  assert jax.config.jax_compilation_cache_dir == str(tmp_path / "mine")
  jax.config.update("jax_compilation_cache_dir", None)
  assert configs.compilation_cache({configs.CACHE_ENV: ""}) is None  # "" turns it off
  assert configs.compilation_cache({"JAX_COMPILATION_CACHE_DIR": "/x", configs.CACHE_ENV: "/y"}) is None
  assert jax.config.jax_compilation_cache_dir is None  # JAX reads its own variable; inrsr sets nothing


PROGRAM = """
import sys
import jax, jax.numpy as jnp
from experiments import configs

def main(argv):
  print(float(jax.jit(lambda x: jnp.sin(x) @ x.T)(jnp.ones((64, 64))).sum()))

sys.argv = sys.argv[:1]
configs.run(main, names=())
"""


def test_an_entry_point_fills_the_cache_and_a_second_run_reads_it(tmp_path):
  # Every experiments/*.py starts through configs.run (tests/integration/bad_input_test.py checks that); this runs a main
  # through it twice in fresh processes. JAX caches programs that took 1 s or more to compile; 0 here.
  cache = tmp_path / "cache"
  env = {**os.environ, configs.CACHE_ENV: str(cache), "JAX_PLATFORMS": "cpu",
         "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", "JAX_DEBUG_LOG_MODULES": "jax._src.compiler"}
  env.pop("JAX_COMPILATION_CACHE_DIR", None)
  runs = [subprocess.run([sys.executable, "-c", PROGRAM], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=300) for _ in range(2)]
  assert all(r.returncode == 0 for r in runs), runs[-1].stderr[-2000:]
  assert runs[0].stdout == runs[1].stdout
  assert any(cache.iterdir()), "no executable was written to the cache"
  assert "cache hit" not in runs[0].stderr.lower()
  assert "persistent compilation cache hit" in runs[1].stderr.lower(), runs[1].stderr[-2000:]
