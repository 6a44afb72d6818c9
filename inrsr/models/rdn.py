"""RDN encoder (Zhang et al. 2018) as the LIIF family uses it: no upsampler, no mean shift, NHWC.

Follows the official LIIF code (`../shared/baselines.md` §1.3):
  * SFENet1 (3 -> G0, k x k), SFENet2 (G0 -> G0, k x k); D residual dense blocks, each C layers of
    conv 3x3 (G0 + c*G -> G) + ReLU whose output is concatenated after its input, then a 1x1 local fusion
    (G0 + C*G -> G0) plus the block's input; global fusion 1x1 (D*G0 -> G0) then k x k (G0 -> G0), plus the
    SFENet1 output.
  * The dense-block convs are always 3x3: the official RDB ignores `RDNkSize`, which only sets SFENet and
    the last GFF conv (`kernel_size` here).
  * Config 'B' (D=16, C=8, G=64) is the default; 'A' is (20, 6, 32). `CONFIGS` names both.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

PRECISION = jax.lax.Precision.HIGHEST
CONFIGS = {"A": (20, 6, 32), "B": (16, 8, 64)}
FIELDS = ("D", "C", "G", "G0", "kernel_size")


def _conv(features: int, k: int, name: str) -> nn.Conv:
  """A k x k stride-1 conv with bias and PyTorch's symmetric (k - 1) // 2 zero padding, full float32."""
  return nn.Conv(features, (k, k), padding=(k - 1) // 2, precision=PRECISION, name=name)


class RDN(nn.Module):
  """RDN feature extractor.

  Attributes:
    D: number of residual dense blocks.
    C: conv layers per block.
    G: growth rate (channels each dense conv adds).
    G0: feature channels, the output width.
    kernel_size: kernel of SFENet1, SFENet2 and the last GFF conv (the official `RDNkSize`).
  """

  D: int = 16
  C: int = 8
  G: int = 64
  G0: int = 64
  kernel_size: int = 3

  @property
  def out_dim(self) -> int:
    return self.G0

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Features of a normalised LR batch.

    Args:
      x: (B, h, w, 3) LR in [-1, 1].

    Returns:
      (B, h, w, G0) features.
    """
    k = self.kernel_size
    f1 = _conv(self.G0, k, "SFENet1")(x)
    x = _conv(self.G0, k, "SFENet2")(f1)
    outs = []
    for i in range(self.D):
      y = x
      for c in range(self.C):
        y = jnp.concatenate([y, nn.relu(_conv(self.G, 3, f"RDB_{i}_conv_{c}")(y))], axis=-1)
      x = _conv(self.G0, 1, f"RDB_{i}_LFF")(y) + x
      outs.append(x)
    x = _conv(self.G0, 1, "GFF_0")(jnp.concatenate(outs, axis=-1))
    x = _conv(self.G0, k, "GFF_1")(x)
    return x + f1


def from_fields(**kwargs) -> RDN:
  """RDN from keyword fields, or `config="A"`/`"B"` for the official presets.

  Args:
    **kwargs: a subset of D, C, G, G0, kernel_size, and optionally config ("A" or "B"; explicit D/C/G win).

  Returns:
    The RDN module. Unknown names or an unknown config are a ValueError naming them.
  """
  kwargs = dict(kwargs)
  preset = kwargs.pop("config", None)
  unknown = sorted(set(kwargs) - set(FIELDS))
  if unknown:
    raise ValueError(f"unknown RDN fields {unknown}; expected a subset of {FIELDS} (or config='A'/'B')")
  if preset is not None:
    if preset not in CONFIGS:
      raise ValueError(f"RDN config={preset!r} must be one of {sorted(CONFIGS)}")
    kwargs = {**dict(zip(("D", "C", "G"), CONFIGS[preset])), **kwargs}
  return RDN(**kwargs)
