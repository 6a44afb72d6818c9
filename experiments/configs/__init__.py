"""Experiment configs: `--config=NAME[:ARG]` (or `--config NAME[:ARG]`) resolves to experiments/configs/NAME.py."""

from __future__ import annotations

import pathlib

CONFIG_DIR = pathlib.Path(__file__).resolve().parent


def _resolve(value: str) -> str:
  """NAME[:ARG] -> the path of experiments/configs/NAME.py[:ARG]; paths and NAME.py pass unchanged."""
  if value.startswith("/"):
    return value
  name, sep, arg = value.partition(":")
  if name.endswith(".py") or "/" in name:
    return value
  path = CONFIG_DIR / f"{name}.py"
  if not path.exists():
    known = sorted(p.stem for p in CONFIG_DIR.glob("*.py") if not p.stem.startswith("_") and p.stem != "common")
    raise ValueError(f"--config={name}: no experiments/configs/{name}.py; known configs: {known}")
  return f"{path}{sep}{arg}"


def resolve_argv(argv: list[str]) -> list[str]:
  """Rewrite `--config=NAME[:ARG]` and `--config NAME[:ARG]` into `--config=<path of NAME.py>[:ARG]`.

  Args:
    argv: the command line (sys.argv).

  Returns:
    The command line with the config named by path (other arguments unchanged).

  Raises:
    ValueError: NAME is not a config file here, listing the ones that are.
  """
  out = []
  args = iter(argv)
  for a in args:
    if a.startswith("--config="):
      a = f"--config={_resolve(a[len('--config='):])}"
    elif a == "--config":
      value = next(args, None)
      a = "--config" if value is None else f"--config={_resolve(value)}"  # absl reports the missing value.
    out.append(a)
  return out
