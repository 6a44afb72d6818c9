"""Experiment configs: `--config=NAME[:ARG]` (or `--config NAME[:ARG]`) resolves to experiments/configs/NAME.py."""

from __future__ import annotations

import pathlib

CONFIG_DIR = pathlib.Path(__file__).resolve().parent


def _resolve(value: str, flag: str = "config") -> str:
  """NAME[:ARG] -> the path of experiments/configs/NAME.py[:ARG]; paths and NAME.py pass unchanged."""
  if value.startswith("/"):
    return value
  name, sep, arg = value.partition(":")
  if name.endswith(".py") or "/" in name:
    return value
  path = CONFIG_DIR / f"{name}.py"
  if not path.exists():
    known = sorted(p.stem for p in CONFIG_DIR.glob("*.py") if not p.stem.startswith("_") and p.stem != "common")
    raise ValueError(f"--{flag}={name}: no experiments/configs/{name}.py; known configs: {known}")
  return f"{path}{sep}{arg}"


def resolve_argv(argv: list[str], names: tuple[str, ...] = ("config",)) -> list[str]:
  """Rewrite `--config=NAME[:ARG]` and `--config NAME[:ARG]` into `--config=<path of NAME.py>[:ARG]`.

  Args:
    argv: the command line (sys.argv).
    names: the config-file flags to resolve (a CLI with a second config flag names both).

  Returns:
    The command line with the configs named by path (other arguments unchanged).

  Raises:
    ValueError: NAME is not a config file here, listing the ones that are.
  """
  out = []
  args = iter(argv)
  for a in args:
    for flag in names:
      if a.startswith(f"--{flag}="):
        a = f"--{flag}={_resolve(a[len(flag) + 3:], flag)}"
      elif a == f"--{flag}":
        value = next(args, None)
        a = f"--{flag}" if value is None else f"--{flag}={_resolve(value, flag)}"  # absl reports the missing value.
    out.append(a)
  return out
