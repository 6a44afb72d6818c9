"""EDSR-baseline encoder (Lim et al. 2017) as the LIIF family uses it: no upsampler, no mean shift.

Follows the official LIIF code (`../shared/baselines.md` §1.2): head conv 3 -> n_feats, `n_resblocks` residual
blocks (conv, ReLU, conv, times `res_scale`, plus the input; no BatchNorm), a final body conv, and a global skip
from the head's output. The official MeanShift modules exist in its state_dict but are not called, so they are
absent here (the converters drop their keys). Input is the LR already normalised to [-1, 1]; layout NHWC.
"""

from __future__ import annotations

import flax.linen as nn
import jax

PRECISION = jax.lax.Precision.HIGHEST


def conv3x3(features: int, name: str) -> nn.Conv:
  """A 3x3 'same' convolution with bias at full float32 precision (PyTorch's `default_conv`)."""
  return nn.Conv(features, (3, 3), padding=1, precision=PRECISION, name=name)


class EDSR(nn.Module):
  """EDSR-baseline feature extractor.

  Attributes:
    n_resblocks: residual blocks (16 in EDSR-baseline).
    n_feats: feature channels (64), the output width.
    res_scale: residual scaling (1 in EDSR-baseline).
  """

  n_resblocks: int = 16
  n_feats: int = 64
  res_scale: float = 1.0

  @property
  def out_dim(self) -> int:
    return self.n_feats

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Features of a normalised LR batch.

    Args:
      x: (B, h, w, C) LR in [-1, 1].

    Returns:
      (B, h, w, n_feats) features.
    """
    x = conv3x3(self.n_feats, "head")(x)
    res = x
    for i in range(self.n_resblocks):
      y = nn.relu(conv3x3(self.n_feats, f"body_{i}_conv1")(res))
      y = conv3x3(self.n_feats, f"body_{i}_conv2")(y)
      res = res + y * self.res_scale if self.res_scale != 1.0 else res + y
    res = conv3x3(self.n_feats, "body_out")(res)
    return res + x


def from_fields(**kwargs) -> EDSR:
  """EDSR from keyword fields; unknown names are a ValueError naming them."""
  unknown = sorted(set(kwargs) - {"n_resblocks", "n_feats", "res_scale"})
  if unknown:
    raise ValueError(f"unknown EDSR fields {unknown}; expected n_resblocks, n_feats, res_scale")
  return EDSR(**kwargs)


def feature_dim(encoder: str, kwargs: dict) -> int:
  """Output channels of an encoder by name ("edsr-baseline" here; RDN's G0 is 64 unless given)."""
  if encoder == "edsr-baseline":
    return int(kwargs.get("n_feats", 64))
  if encoder == "rdn":
    return int(kwargs.get("G0", 64))
  raise ValueError(f"encoder={encoder!r} must be 'edsr-baseline' or 'rdn'")
