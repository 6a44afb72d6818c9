"""3x3 'same' convolution by Winograd's minimal filtering F(2x2, 3x3): transforms, public op, reference.

Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks" (2016). Each 2 x 2 output tile is
`A^T [(G g G^T) . (B^T d B)] A` of its 4 x 4 input tile d: the input and the filter go to a 16-point transform
domain where the 3 x 3 x C x K convolution becomes 16 independent (tiles x C) @ (C x K) matrix products, 2.25 times
fewer multiplications than the direct sum, and the transforms are additions (and halvings, exact in float32).
F(2x2, 3x3) is the accurate member of the family: on random data its float32 error is below that of XLA:CPU's
direct convolution (1.9e-6 against 4.9e-6 from float64, a 64 -> 64 layer); F(4x4, 3x3) would be 3.5e-5.

Why: XLA:CPU runs a 3x3 convolution well below its matrix-product rate, and the gradient of its weights slower
still, while the transform domain is matrix products and element-wise loops that XLA fuses (`python -m
experiments.benchmark_conv`, 2 cores: a 64 -> 64 layer on 4 x 48 x 48, forward 13.9 -> 9.8 ms, forward and both
gradients 45.2 -> 34.9 ms; EDSR-baseline's 33 layers with their blocks scanned 1,239 -> 652 ms; BENCHMARKS.md).
`conv3x3` has its own VJP: the input gradient is the same op on the output gradient with the kernel flipped and
transposed (a 'same' 3x3 convolution's transpose), the kernel gradient `G^T (V^T dM) G` from the input's transform
V (recomputed, so the residual is x as for the direct convolution) and the output gradient's transposed output
transform dM.
`conv3x3_reference` is XLA's convolution. Layouts: x (B, H, W, C) NHWC, kernel (3, 3, C, K) HWIO; any H, W (odd
sizes are padded to whole tiles and cropped).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

HIGHEST = jax.lax.Precision.HIGHEST
TILE = 2  # output tile side m; the input tile is m + 2
BT = ((1, 0, -1, 0), (0, 1, 1, 0), (0, -1, 1, 0), (0, 1, 0, -1))  # input transform B^T (4 x 4)
G = ((1, 0, 0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0, 0, 1))  # filter transform G (4 x 3)
AT = ((1, 1, 1, 0), (0, 1, -1, -1))  # output transform A^T (2 x 4)


def _tiles(h: int, w: int) -> tuple[int, int]:
  return -(-h // TILE), -(-w // TILE)


def _apply(matrix, parts: list[jax.Array], axis: int) -> jax.Array:
  """`sum_k matrix[:, k] * parts[k]` with the matrix's row index as a new axis `axis` of the result.

  One broadcast expression (all-zero columns skipped; a zero inside a column multiplies, so an inf or NaN input
  reaches every point of that column; +-1 and 0.5 are exact factors), so XLA compiles each transform to
  at most two fused loops writing one array each. Written as 16 separate sums stacked, it compiled to 16 loops and a
  concatenation copying their results: the LIIF train step's first call took 12.7 s against 8.3 s, same numbers.
  """
  matrix = np.asarray(matrix, np.float32)
  out = None
  for col, part in zip(matrix.T, parts):
    if not col.any():
      continue
    shape = [1] * (part.ndim + 1)
    shape[axis] = len(col)
    term = jnp.expand_dims(part, axis) * col.reshape(shape)
    out = term if out is None else out + term
  return out


def _both_axes(matrix, tile: jax.Array, rows, columns) -> jax.Array:
  """`matrix` applied to a tile's first axis (`rows(k)`: the slice of `tile` at tile row k) and then its second
  (`columns(r, l)`: the slice of the row-transformed array r at tile column l): (out, out, ...)."""
  r = _apply(matrix, [rows(tile, k) for k in range(len(matrix[0]))], 0)
  return _apply(matrix, [columns(r, l) for l in range(len(matrix[0]))], 1)


def input_transform(x: jax.Array) -> jax.Array:
  """x (B, H, W, C) -> V (16, B * th * tw, C): each overlapping 4 x 4 tile (zero 'same' padding) as B^T d B."""
  b, h, w, c = x.shape
  th, tw = _tiles(h, w)
  xp = jnp.pad(x, ((0, 0), (1, th * TILE - h + 1), (1, tw * TILE - w + 1), (0, 0)))
  # Tile row k of tile ty is padded row 2 ty + k: row pair ty + k // 2, member k % 2 (likewise for columns).
  xr = xp.reshape(b, th + 1, TILE, tw * TILE + 2, c)
  v = _both_axes(BT, xr, lambda t, k: t[:, k // TILE:k // TILE + th, k % TILE],
                 lambda r, l: r.reshape(*r.shape[:3], tw + 1, TILE, c)[:, :, :, l // TILE:l // TILE + tw, l % TILE])
  return v.reshape((TILE + 2) ** 2, b * th * tw, c)


def filter_transform(kernel: jax.Array) -> jax.Array:
  """kernel (3, 3, C, K) -> U (16, C, K) = G g G^T per (C, K) pair."""
  u = _both_axes(G, kernel, lambda t, k: t[k], lambda r, l: r[:, l])
  return u.reshape((TILE + 2) ** 2, *kernel.shape[2:])


def output_transform(m: jax.Array, shape: tuple[int, int, int, int]) -> jax.Array:
  """M (16, B * th * tw, K) -> y (B, H, W, K) = A^T M A per tile, the tiles laid out and cropped to `shape`."""
  b, h, w, k = shape
  th, tw = _tiles(h, w)
  a = TILE + 2
  y = _both_axes(AT, m.reshape(a, a, b, th, tw, k), lambda t, i: t[i], lambda r, j: r[:, j])  # (m, m, B, th, tw, K)
  return y.transpose(2, 3, 0, 4, 1, 5).reshape(b, th * TILE, tw * TILE, k)[:, :h, :w]


def _output_transform_t(dy: jax.Array) -> jax.Array:
  """The transpose of `output_transform`: dy (B, H, W, K) -> dM (16, B * th * tw, K) = A dY A^T per tile."""
  b, h, w, k = dy.shape
  th, tw = _tiles(h, w)
  dy = jnp.pad(dy, ((0, 0), (0, th * TILE - h), (0, tw * TILE - w), (0, 0)))
  dm = _both_axes(np.transpose(AT), dy.reshape(b, th, TILE, tw, TILE, k), lambda t, i: t[:, :, i],
                  lambda r, j: r[..., j, :])  # (4, 4, B, th, tw, K)
  return dm.reshape((TILE + 2) ** 2, b * th * tw, k)


def _forward(x: jax.Array, kernel: jax.Array) -> jax.Array:
  m = jnp.einsum("ptc,pck->ptk", input_transform(x), filter_transform(kernel), precision=HIGHEST)
  return output_transform(m, x.shape[:3] + (kernel.shape[-1],))


@jax.custom_vjp
def conv3x3(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """3x3 convolution (cross-correlation as in PyTorch and lax), stride 1, zero padding 1, no bias.

  Args:
    x: (B, H, W, C) float32.
    kernel: (3, 3, C, K) float32, HWIO.

  Returns:
    (B, H, W, K), equal to `conv3x3_reference(x, kernel)` up to float32 rounding.
  """
  _check(x, kernel)
  return _forward(x, kernel)


def _check(x: jax.Array, kernel: jax.Array) -> None:
  if x.ndim != 4 or kernel.shape[:2] != (3, 3) or kernel.shape[2] != x.shape[-1]:
    raise ValueError(f"conv3x3 takes x (B, H, W, C) and kernel (3, 3, C, K); got {x.shape=} {kernel.shape=}")


def _conv3x3_fwd(x, kernel):
  _check(x, kernel)
  return _forward(x, kernel), (x, kernel)


def _conv3x3_bwd(res, dy):
  x, kernel = res
  dx = _forward(dy, kernel[::-1, ::-1].transpose(0, 1, 3, 2))
  du = jnp.einsum("ptc,ptk->pck", input_transform(x), _output_transform_t(dy), precision=HIGHEST)
  a = TILE + 2
  dk = _both_axes(np.transpose(G), du.reshape(a, a, *du.shape[1:]), lambda t, i: t[i], lambda r, j: r[:, j])
  return dx, dk


conv3x3.defvjp(_conv3x3_fwd, _conv3x3_bwd)


def conv3x3_reference(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """XLA's direct convolution with the same contract as `conv3x3`."""
  return jax.lax.conv_general_dilated(x, kernel, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                      precision=HIGHEST)
