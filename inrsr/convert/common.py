"""Layout conversions shared by the official-checkpoint converters (PyTorch -> flax.linen)."""

from __future__ import annotations

import re

import numpy as np


def conv_kernel(w: np.ndarray) -> np.ndarray:
  """PyTorch conv weight (O, I, kh, kw) -> flax kernel (kh, kw, I, O)."""
  if w.ndim != 4:
    raise ValueError(f"expected a 4-D conv weight (O, I, kh, kw), got shape {w.shape}")
  return np.ascontiguousarray(np.transpose(w, (2, 3, 1, 0)), np.float32)


def dense_kernel(w: np.ndarray) -> np.ndarray:
  """PyTorch Linear weight (out, in) -> flax Dense kernel (in, out)."""
  if w.ndim != 2:
    raise ValueError(f"expected a 2-D Linear weight (out, in), got shape {w.shape}")
  return np.ascontiguousarray(w.T, np.float32)


def require(sd: dict, key: str, what: str) -> np.ndarray:
  """sd[key], or a ValueError saying which key of which layout is missing."""
  if key not in sd:
    raise ValueError(f"state_dict has no {key!r}: not a {what} checkpoint in the official layout")
  return np.asarray(sd[key])


def conv(sd: dict, prefix: str, what: str) -> dict:
  """Flax params {"kernel", "bias"} of a PyTorch Conv2d at `prefix`."""
  return {"kernel": conv_kernel(require(sd, f"{prefix}.weight", what)),
          "bias": np.asarray(require(sd, f"{prefix}.bias", what), np.float32)}


def dense(sd: dict, prefix: str, what: str) -> dict:
  """Flax params {"kernel", "bias"} of a PyTorch Linear at `prefix`."""
  return {"kernel": dense_kernel(require(sd, f"{prefix}.weight", what)),
          "bias": np.asarray(require(sd, f"{prefix}.bias", what), np.float32)}


def count_indexed(sd: dict, pattern: str) -> int:
  """Number of distinct i in keys matching `pattern` (a regex with one `(\\d+)` group)."""
  rx = re.compile(pattern)
  found = {int(m.group(1)) for k in sd for m in [rx.match(k)] if m}
  return max(found) + 1 if found else 0


def edsr_params(sd: dict, prefix: str = "encoder") -> tuple[dict, dict]:
  """Flax params and fields of `inrsr.models.edsr.EDSR` from an official EDSR-baseline state_dict.

  Args:
    sd: the state_dict (numpy arrays, PyTorch layout).
    prefix: the encoder's key prefix ("encoder" in LIIF, HIIF and CLIT checkpoints).

  Returns:
    (params, fields): fields = {"n_resblocks", "n_feats"} read from the shapes. MeanShift keys are ignored.
  """
  what = "EDSR-baseline"
  n_blocks = count_indexed(sd, rf"{re.escape(prefix)}\.body\.(\d+)\.body\.0\.weight")
  if n_blocks == 0:
    raise ValueError(f"state_dict has no {prefix}.body.0.body.0.weight: not an {what} encoder")
  n_feats = require(sd, f"{prefix}.head.0.weight", what).shape[0]
  params = {"head": conv(sd, f"{prefix}.head.0", what), "body_out": conv(sd, f"{prefix}.body.{n_blocks}", what)}
  for i in range(n_blocks):
    params[f"body_{i}_conv1"] = conv(sd, f"{prefix}.body.{i}.body.0", what)
    params[f"body_{i}_conv2"] = conv(sd, f"{prefix}.body.{i}.body.2", what)
  return params, {"n_resblocks": n_blocks, "n_feats": int(n_feats)}
