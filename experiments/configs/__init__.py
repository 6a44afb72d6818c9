"""Experiment configs: `--config=NAME[:ARG]` resolves to experiments/configs/NAME.py."""

from __future__ import annotations

import pathlib

CONFIG_DIR = pathlib.Path(__file__).resolve().parent


def resolve_argv(argv: list[str]) -> list[str]:
  """Rewrite `--config=NAME[:ARG]` into the path of experiments/configs/NAME.py (paths pass unchanged).

  Raises:
    ValueError: NAME is not a config file here, listing the ones that are.
  """
  out = []
  for a in argv:
    if a.startswith("--config=") and not a.startswith("--config=/"):
      value = a[len("--config="):]
      name, sep, arg = value.partition(":")
      if not name.endswith(".py") and "/" not in name:
        path = CONFIG_DIR / f"{name}.py"
        if not path.exists():
          known = sorted(p.stem for p in CONFIG_DIR.glob("*.py") if not p.stem.startswith("_")
                         and p.stem != "common")
          raise ValueError(f"--config={name}: no experiments/configs/{name}.py; known configs: {known}")
        a = f"--config={path}{sep}{arg}"
    out.append(a)
  return out
