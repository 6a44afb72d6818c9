"""glibc's allocator kept for reuse (`allocator.reuse_freed_memory`): XLA's buffers stop faulting in afresh."""

import ctypes.util
import pathlib
import subprocess
import sys

import pytest

from experiments import configs
from inrsr.infer import allocator

_PROBE = """
import resource, sys
from inrsr.infer import allocator  # imports no jax: the setting comes before the CPU client's threads
if sys.argv[1] == "1":
  assert allocator.reuse_freed_memory()
import jax, jax.numpy as jnp

@jax.jit
def f(x):
  for _ in range(4):  # a chain of products: each result a 16 MiB temporary, not fused
    x = jnp.tanh(x @ x[:512, :512])
  return x.sum()

x = jnp.ones((8192, 512), jnp.float32) / 512
for _ in range(3):
  jax.block_until_ready(f(x))
faults = []
for _ in range(8):
  before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  jax.block_until_ready(f(x))
  faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(min(faults))
"""


def _glibc() -> bool:
  return sys.platform.startswith("linux") and "libc.so.6" in (ctypes.util.find_library("c") or "")


def test_reuse_freed_memory_stops_the_page_faults_of_every_run(tmp_path):
  """Every call of a program with 16 MiB temporaries faults in at least one temporary's pages by default (glibc
  hands them back to the OS after each call); once the freed blocks are kept, some call faults in almost none."""
  if not _glibc():
    pytest.skip("glibc's mallopt only")
  probe = tmp_path / "probe.py"
  probe.write_text(_PROBE)
  env = {"JAX_PLATFORMS": "cpu", "PATH": "/usr/bin:/bin"}
  run = lambda flag: int(subprocess.run([sys.executable, str(probe), flag], capture_output=True, text=True,
                                        check=True, env=env, cwd=pathlib.Path(__file__).parents[2]
                                        ).stdout.split()[-1])
  pages = (16 << 20) // 4096
  assert run("0") >= pages  # the premise: by default each call maps its buffers afresh
  assert run("1") < pages // 10


def test_settings_names_the_allocator_variables(monkeypatch):
  for name in ("MALLOC_ARENA_MAX", "MALLOC_MMAP_MAX_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_",
               "MALLOC_TOP_PAD_", "GLIBC_TUNABLES"):
    monkeypatch.delenv(name, raising=False)
  assert allocator.settings() == ""
  monkeypatch.setenv("MALLOC_ARENA_MAX", "1")
  monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.hugetlb=1")
  monkeypatch.setenv("MALLOC_PERTURB_X", "7")  # not one of them
  assert allocator.settings() == "MALLOC_ARENA_MAX=1 GLIBC_TUNABLES=glibc.malloc.hugetlb=1"


def test_the_flag_sets_the_allocator_only_when_on(monkeypatch):
  calls = []
  monkeypatch.setattr(allocator, "reuse_freed_memory", lambda: calls.append(True) or True)
  off, on = type("Flag", (), {"value": False})(), type("Flag", (), {"value": True})()
  assert configs.apply_reuse_freed_memory(off) is False and calls == []
  assert configs.apply_reuse_freed_memory(on) is True and calls == [True]
  monkeypatch.setattr(allocator, "reuse_freed_memory", lambda: False)  # not glibc: a warning, no setting
  assert configs.apply_reuse_freed_memory(on) is False
