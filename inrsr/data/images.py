"""Reading images into float32 RGB in [0, 1]: files, folders and the photographs bundled with scikit-image.

Grayscale inputs are replicated to RGB, RGBA inputs lose their alpha channel (composited over black would
change colours the model must reproduce), 16-bit inputs are scaled by 1/65535; each conversion is logged.
Anything else (an unreadable file, 2 or 5+ channels, an empty or missing folder) raises a ValueError that
names the file or folder and what was expected.
"""

from __future__ import annotations

import os
import pathlib

import imageio.v3 as iio
import numpy as np
from absl import logging

from inrsr import resize

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
# Real photographs shipped inside the scikit-image wheel (no download); camera and coins are grayscale.
BUNDLED = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field", "retina",
           "camera", "coins")


def to_rgb_float(array: np.ndarray, name: str = "image") -> np.ndarray:
  """Convert a decoded image to float32 RGB in [0, 1].

  Args:
    array: (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) array of uint8, uint16, bool or float in [0, 1].
    name: what to call the image in messages (its path).

  Returns:
    (H, W, 3) float32 array.
  """
  a = np.asarray(array)
  if a.ndim == 2:
    a = a[..., None]
  if a.ndim != 3 or a.shape[-1] not in (1, 3, 4):
    raise ValueError(f"{name}: expected a grayscale, RGB or RGBA image, got an array of shape {a.shape}")
  if a.shape[-1] == 1:
    logging.info("%s: grayscale image converted to RGB", name)
    a = np.repeat(a, 3, axis=-1)
  elif a.shape[-1] == 4:
    logging.info("%s: RGBA image, alpha channel dropped", name)
    a = a[..., :3]
  if a.dtype == np.uint8:
    return a.astype(np.float32) / 255.0
  if a.dtype == np.uint16:
    logging.info("%s: 16-bit image scaled to [0, 1]", name)
    return a.astype(np.float32) / 65535.0
  if a.dtype == bool:
    return a.astype(np.float32)
  if np.issubdtype(a.dtype, np.floating):
    if a.size and (np.nanmin(a) < 0 or np.nanmax(a) > 1 or not np.all(np.isfinite(a))):
      raise ValueError(f"{name}: float images must hold finite values in [0, 1]")
    return a.astype(np.float32)
  raise ValueError(f"{name}: unsupported pixel type {a.dtype} (expected uint8, uint16 or float)")


def load_image(path) -> np.ndarray:
  """Read an image file (PNG, JPEG, BMP, ...) as (H, W, 3) float32 RGB in [0, 1]."""
  path = os.fspath(path)
  try:
    array = iio.imread(path)
  except Exception as e:  # imageio raises many types for bad files.
    raise ValueError(f"{path}: cannot read image ({type(e).__name__}: {e})") from e
  return to_rgb_float(array, path)


def list_images(folder, setting: str = "data.root") -> list[pathlib.Path]:
  """Sorted image files (PNG, JPEG, BMP) directly inside `folder`.

  Args:
    folder: a directory.
    setting: the config field that named it, for the error message.

  Returns:
    Non-empty sorted list of paths.
  """
  folder = pathlib.Path(os.path.expandvars(os.fspath(folder))).expanduser()
  if not folder.is_dir():
    raise ValueError(f"image folder {folder} does not exist: set {setting} (or INRSR_DATA_DIR) to a folder "
                     "of PNG/JPEG/BMP images")
  files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
  if not files:
    raise ValueError(f"image folder {folder} holds no PNG/JPEG/BMP images (set {setting})")
  return files


def bundled_image(name: str) -> np.ndarray:
  """One of scikit-image's bundled photographs (no download) as (H, W, 3) float32 RGB."""
  import skimage.data  # pylint: disable=g-import-not-at-top

  if name not in BUNDLED:
    raise ValueError(f"bundled image {name!r} is not one of {BUNDLED}")
  return to_rgb_float(getattr(skimage.data, name)(), f"skimage.data.{name}")


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
  """Central size x size crop (the whole image if it is smaller)."""
  h, w = image.shape[:2]
  top, left = max(0, (h - size) // 2), max(0, (w - size) // 2)
  return image[top:top + size, left:left + size]


def prepare(image: np.ndarray, *, center_crop_size: int = 0, hr_size: int = 0) -> np.ndarray:
  """The datasets' HR preparation: optional central crop, then optional bicubic resize to hr_size squared."""
  if center_crop_size:
    image = center_crop(image, center_crop_size)
  if hr_size:
    image = np.clip(resize.resize(image, hr_size, hr_size), 0.0, 1.0)
  return image
