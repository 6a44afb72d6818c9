"""HR pixel-centre coordinates in [-1, 1], time coordinates and query grids (DESIGN.md, Conventions)."""

from __future__ import annotations

import numpy as np


def pixel_centers(n: int) -> np.ndarray:
  """Centres of `n` pixels along one axis: `x_i = -1 + (2i + 1) / n`.

  Args:
    n: number of pixels, > 0.

  Returns:
    float32 array of shape (n,), strictly inside (-1, 1).
  """
  if n <= 0:
    raise ValueError(f"{n=} must be > 0")
  return (-1.0 + (2.0 * np.arange(n, dtype=np.float64) + 1.0) / n).astype(np.float32)


def time_coords(num_frames: int) -> np.ndarray:
  """Time coordinate of each of `num_frames` frames, `t_k = -1 + (2k + 1) / T`.

  A single image (T = 1) has t = 0.

  Args:
    num_frames: T, > 0.

  Returns:
    float32 array of shape (T,).
  """
  return pixel_centers(num_frames)


def coord_grid(height: int, width: int, t: float = 0.0) -> np.ndarray:
  """(x, y, t) coordinates of every pixel centre of an HR frame, row-major.

  Args:
    height: H, > 0.
    width: W, > 0.
    t: the frame's time coordinate (0 for a single image).

  Returns:
    float32 array (H, W, 3) with [..., 0] = x (column), [..., 1] = y (row), [..., 2] = t.
  """
  ys = pixel_centers(height)
  xs = pixel_centers(width)
  grid = np.empty((height, width, 3), np.float32)
  grid[..., 0] = xs[None, :]
  grid[..., 1] = ys[:, None]
  grid[..., 2] = t
  return grid


def pixel_coords(rows: np.ndarray, cols: np.ndarray, height: int, width: int, t=0.0) -> np.ndarray:
  """(x, y, t) coordinates of chosen pixels of an H x W frame.

  Args:
    rows: integer row indices, any shape S.
    cols: integer column indices, shape S.
    height: H.
    width: W.
    t: scalar or array broadcastable to S.

  Returns:
    float32 array S + (3,).
  """
  x = -1.0 + (2.0 * np.asarray(cols, np.float64) + 1.0) / width
  y = -1.0 + (2.0 * np.asarray(rows, np.float64) + 1.0) / height
  t = np.broadcast_to(np.asarray(t, np.float64), x.shape)
  return np.stack([x, y, t], axis=-1).astype(np.float32)


def scaled_size(height: int, width: int, scale: float) -> tuple[int, int, int, int]:
  """LR size for `scale` and the HR size it corresponds to (the SR mod-crop rule).

  The LR has `floor(H / scale)` rows; the HR is cropped to `round(h_lr * scale)` rows (for an integer
  scale this is the usual mod-crop to a multiple of the scale). Same for columns.

  Args:
    height: H of the HR image.
    width: W of the HR image.
    scale: the SR factor, > 0 and finite.

  Returns:
    (h_lr, w_lr, h_hr, w_hr).
  """
  if not np.isfinite(scale) or scale <= 0:
    raise ValueError(f"{scale=} must be a finite number > 0")
  h_lr = int(np.floor(height / scale + 1e-9))
  w_lr = int(np.floor(width / scale + 1e-9))
  if h_lr < 1 or w_lr < 1:
    raise ValueError(f"image of {height}x{width} is too small for {scale=}: the LR would be empty")
  return h_lr, w_lr, min(height, int(round(h_lr * scale))), min(width, int(round(w_lr * scale)))


def make_coord_f32(n: int) -> np.ndarray:
  """Pixel centres of n pixels in [-1, 1] with the float32 rounding of the official LIIF-family `make_coord`.

  PyTorch computes `v0 + r + (2 r) * arange(n)` with r = 1 / n: (v0 + r) in float64 rounded once to float32,
  plus float32(2 r) times the float32 index, in float32. Models that are discontinuous in the coordinates
  (HIIF's hierarchical bits) need these exact bits to agree with the official code.

  Args:
    n: number of pixels along the axis.

  Returns:
    (n,) float32.
  """
  r = 1.0 / n
  return np.float32(-1.0 + r) + np.float32(2.0 * r) * np.arange(n, dtype=np.float32)


def grid_xy_f32(rows: np.ndarray, cols: np.ndarray, height: int, width: int) -> np.ndarray:
  """(x, y) float32 coordinates of chosen pixels, bit-equal to the official `make_coord` grid (see above)."""
  return np.stack([make_coord_f32(width)[cols], make_coord_f32(height)[rows]], axis=-1)
