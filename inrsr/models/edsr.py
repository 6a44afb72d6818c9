"""EDSR-baseline encoder (Lim et al. 2017) as the LIIF family uses it: no upsampler, no mean shift.

Follows the official LIIF code (`../shared/baselines.md` §1.2): head conv 3 -> n_feats, `n_resblocks` residual
blocks (conv, ReLU, conv, times `res_scale`, plus the input; no BatchNorm), a final body conv, and a global skip
from the head's output. The official MeanShift modules exist in its state_dict but are not called, so they are
absent here (the converters drop their keys). Input is the LR already normalised to [-1, 1]; layout NHWC.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from kernels import winograd


WINOGRAD_MIN_ELEMENTS = 2**20
WINOGRAD_MAX_ELEMENTS = 2**24
"""`convolve3x3` takes B * H * W * (C + K) (input and output elements) in [WINOGRAD_MIN_ELEMENTS,
WINOGRAD_MAX_ELEMENTS] to Winograd on CPU. Above: its transforms hold about 4 times the input and the output (at
most 256 MiB: the 48 x 48 training crops at batch 4 to 16, LIIF's 64 -> 256 projection included, and 64-channel
maps up to about 360 x 360), so larger maps take XLA's direct convolution, whose working set is the maps
themselves. Below (a 48 x 48 crop at batch 1, the small test models): the transforms' many small operations take
longer to compile than the convolution takes to run."""


def uses_winograd(shape: tuple[int, ...], features: int) -> bool:
  """Whether `convolve3x3` of an input of `shape` to `features` channels goes to Winograd on CPU (by size)."""
  b, h, w, c = shape
  return WINOGRAD_MIN_ELEMENTS <= b * h * w * (c + features) <= WINOGRAD_MAX_ELEMENTS


def convolve3x3(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """3x3 'same' convolution at float32: Winograd F(2x2, 3x3) on CPU (`kernels.winograd`), XLA's elsewhere.

  XLA:CPU's direct convolution runs far below its matrix-product rate: EDSR-baseline's forward with both gradients
  on 4 x 48 x 48 takes 1.9 times as long with it as with the Winograd op and its blocks scanned, at 128 x 128
  1.3 times (`experiments.benchmark_conv`, 2 cores, BENCHMARKS.md); the Winograd sums are as accurate (float32
  error 1.9e-6 against 4.9e-6 for the direct one on a 64 -> 64 layer). The branch follows the platform the program
  is compiled for (`lax.platform_dependent`): GPUs and TPUs, and programs compiled ahead of time for them, keep
  XLA's convolution (cuDNN picks its own algorithm there).

  Args:
    x: (B, H, W, C).
    kernel: (3, 3, C, K), HWIO.

  Returns:
    (B, H, W, K).
  """
  if not uses_winograd(x.shape, kernel.shape[-1]):
    return winograd.conv3x3_reference(x, kernel)
  return jax.lax.platform_dependent(x, kernel, cpu=winograd.conv3x3, default=winograd.conv3x3_reference)


class Conv3x3(nn.Module):
  """PyTorch's `default_conv` (3x3, padding 1, bias) through `convolve3x3`; parameters as `nn.Conv`'s.

  Same names, shapes and init as `nn.Conv(features, (3, 3), padding=1)` (kernel (3, 3, C, K) lecun-normal, bias
  zeros), so checkpoints and converters see no difference.
  """

  features: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param("kernel", nn.initializers.lecun_normal(), (3, 3, x.shape[-1], self.features), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
    return convolve3x3(x, kernel) + bias


def conv3x3(features: int, name: str) -> Conv3x3:
  """A 3x3 'same' convolution with bias at full float32 precision (PyTorch's `default_conv`)."""
  return Conv3x3(features, name=name)


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
    convs = [(conv3x3(self.n_feats, f"body_{i}_conv1"), conv3x3(self.n_feats, f"body_{i}_conv2"))
             for i in range(self.n_resblocks)]
    if self.is_initializing() or self.n_resblocks < 2 or not uses_winograd(x.shape, self.n_feats):
      res = x
      for conv1, conv2 in convs:
        res = self._residual(res, conv2(nn.relu(conv1(res))))
    else:  # one traced block for all: the same sums, a 16th of the program to compile (XLA:CPU's direct
      # convolution runs many times slower inside a loop, so large maps, which take it, stay unrolled)
      stacked = [jnp.stack([c.variables["params"][n] for c in column]) for column in zip(*convs)
                 for n in ("kernel", "bias")]

      def block(res, p):
        k1, b1, k2, b2 = p
        y = convolve3x3(nn.relu(convolve3x3(res, k1) + b1), k2) + b2
        return self._residual(res, y), None

      res, _ = jax.lax.scan(block, x, stacked)
    res = conv3x3(self.n_feats, "body_out")(res)
    return res + x

  def _residual(self, res: jax.Array, y: jax.Array) -> jax.Array:
    return res + y * self.res_scale if self.res_scale != 1.0 else res + y


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
