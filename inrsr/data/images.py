"""Reading images into float32 RGB in [0, 1]: files, folders and the photographs bundled with scikit-image.

Grayscale inputs are replicated to RGB, RGBA and gray+alpha inputs lose their alpha channel (composited over
black would change colours the model must reproduce), 16-bit inputs are scaled by 1/65535; each conversion is
logged. 16-bit colour PNGs (RGB, RGBA, gray+alpha), which Pillow reduces to 8 bits, are decoded here with zlib
and NumPy so they keep their 16-bit precision. Anything else (an unreadable file, 5+ channels, an empty or
missing folder) raises a ValueError that names the file or folder and what was expected.
"""

from __future__ import annotations

import os
import pathlib
import struct
import zlib

import imageio.v3 as iio
import numpy as np
import PIL.Image
from absl import logging

from inrsr import resize

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
# Real photographs shipped inside the scikit-image wheel (no download); camera and coins are grayscale.
BUNDLED = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field", "retina",
           "camera", "coins")


def to_rgb_float(array: np.ndarray, name: str = "image") -> np.ndarray:
  """Convert a decoded image to float32 RGB in [0, 1].

  Args:
    array: (H, W), (H, W, 1), (H, W, 2) (gray+alpha), (H, W, 3) or (H, W, 4) array of uint8, uint16, bool or
      float in [0, 1].
    name: what to call the image in messages (its path).

  Returns:
    (H, W, 3) float32 array.
  """
  a = np.asarray(array)
  if a.ndim == 2:
    a = a[..., None]
  if a.ndim != 3 or a.shape[-1] not in (1, 2, 3, 4):
    raise ValueError(f"{name}: expected a grayscale, gray+alpha, RGB or RGBA image, got an array of shape "
                     f"{a.shape}")
  if a.shape[-1] == 1:
    logging.info("%s: grayscale image converted to RGB", name)
    a = np.repeat(a, 3, axis=-1)
  elif a.shape[-1] == 2:
    logging.info("%s: gray+alpha image converted to RGB, alpha channel dropped", name)
    a = np.repeat(a[..., :1], 3, axis=-1)
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


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # colour type -> samples per pixel (3, palette, is 8-bit at most)
# Adam7 passes: (first column, first row, column step, row step).
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def _png_header(path) -> tuple[int, int, int, int, int] | None:
  """(width, height, bit depth, colour type, interlace) of a PNG file, or None for any other file."""
  with open(path, "rb") as f:
    head = f.read(33)
  if len(head) < 33 or head[:8] != PNG_SIGNATURE or head[12:16] != b"IHDR":
    return None
  width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", head[16:29])
  return width, height, depth, color, interlace


def _unfilter(data: np.ndarray, height: int, width: int, bpp: int) -> np.ndarray:
  """Undo the PNG scanline filters of one (sub-)image: (height, 1 + width * bpp) bytes -> (height, width, bpp).

  Filters 1 (Sub), 3 (Average) and 4 (Paeth) make each pixel depend on its left neighbour, so the rows are
  reconstructed along anti-diagonals (pixel (r, c) needs (r, c-1), (r-1, c) and (r-1, c-1)): H + W - 1 NumPy
  steps instead of H * W Python ones.
  """
  rows = data.reshape(height, 1 + width * bpp)
  kind = rows[:, 0]
  if np.any(kind > 4):
    raise ValueError(f"unknown PNG filter type {int(kind.max())}")
  raw = rows[:, 1:].reshape(height, width, bpp).astype(np.int32)
  out = np.zeros((height + 1, width + 1, bpp), np.int32)  # Row 0 and column 0 are the zero border.
  for d in range(height + width - 1):
    r = np.arange(max(0, d - width + 1), min(height, d + 1))
    c = d - r
    a, b, ul = out[r + 1, c], out[r, c + 1], out[r, c]  # left, up, up-left
    f = kind[r][:, None]
    pa, pb, pc = np.abs(b - ul), np.abs(a - ul), np.abs(a + b - 2 * ul)
    paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, ul))
    pred = np.select([f == 1, f == 2, f == 3, f == 4], [a, b, (a + b) // 2, paeth], 0)
    out[r + 1, c + 1] = (raw[r, c] + pred) & 0xFF
  return out[1:, 1:].astype(np.uint8)


def read_png16(path) -> np.ndarray:
  """Decode a 16-bit PNG at full precision (Pillow reduces 16-bit RGB, RGBA and gray+alpha to 8 bits).

  Args:
    path: a PNG file of bit depth 16.

  Returns:
    (H, W, C) uint16 array, C = 1 (gray), 2 (gray+alpha), 3 (RGB) or 4 (RGBA).
  """
  data = pathlib.Path(path).read_bytes()
  if data[:8] != PNG_SIGNATURE:
    raise ValueError(f"{path}: not a PNG file")
  pos, idat, header = 8, [], None
  while pos + 8 <= len(data):
    length, kind = struct.unpack(">I4s", data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + length]
    if len(body) < length:
      raise ValueError(f"{path}: PNG chunk {kind!r} is truncated")
    if kind == b"IHDR":
      header = struct.unpack(">IIBBBBB", body[:13])
    elif kind == b"IDAT":
      idat.append(body)
    elif kind == b"IEND":
      break
    pos += 12 + length
  if header is None or not idat:
    raise ValueError(f"{path}: PNG without IHDR or IDAT")
  width, height, depth, color, _, _, interlace = header
  if depth != 16 or color not in _PNG_CHANNELS:
    raise ValueError(f"{path}: read_png16 needs a 16-bit PNG, got bit depth {depth}, colour type {color}")
  channels = _PNG_CHANNELS[color]
  bpp = 2 * channels
  stream = np.frombuffer(zlib.decompress(b"".join(idat)), np.uint8)
  passes = _ADAM7 if interlace else ((0, 0, 1, 1),)
  image = np.zeros((height, width, bpp), np.uint8)
  pos = 0
  for x0, y0, dx, dy in passes:
    w, h = -(-(width - x0) // dx), -(-(height - y0) // dy)
    if w <= 0 or h <= 0:
      continue
    size = h * (1 + w * bpp)
    if pos + size > stream.size:
      raise ValueError(f"{path}: PNG image data is truncated")
    image[y0::dy, x0::dx] = _unfilter(stream[pos:pos + size], h, w, bpp)
    pos += size
  return image.view(">u2").astype(np.uint16)


def unreadable(path, error: Exception) -> ValueError:
  """The one-line error for a file that does not decode as an image (raise it `from error`).

  Args:
    path: the file.
    error: what the decoder raised (imageio's may be several lines of plugin advice).

  Returns:
    A ValueError naming the file: empty, or so many bytes that are not the image format its suffix names, or
    the first line of `error` for anything else (a missing file, an unknown suffix).
  """
  path = pathlib.Path(path)
  size = path.stat().st_size if path.is_file() else None
  suffix = path.suffix.lower()
  if size == 0:
    return ValueError(f"{path}: not a readable image (an empty file, 0 bytes)")
  if size is not None and suffix in PIL.Image.registered_extensions():  # a format Pillow reads; the bytes are not
    return ValueError(f"{path}: not a readable image ({size:,} bytes that do not decode as a {suffix[1:].upper()} "
                      "image)")
  first = str(error).strip().splitlines()[0] if str(error).strip() else ""
  return ValueError(f"{path}: not a readable image ({type(error).__name__}: {first})")


def load_image(path) -> np.ndarray:
  """Read an image file (PNG, JPEG, BMP, ...) as (H, W, 3) float32 RGB in [0, 1].

  Args:
    path: the file.

  Returns:
    (H, W, 3) float32 array; a file that does not decode raises a one-line ValueError naming it (`unreadable`).
  """
  path = os.fspath(path)
  try:
    header = _png_header(path) if os.path.isfile(path) else None
    if header is not None and header[2] == 16 and header[3] in (2, 4, 6):
      array = read_png16(path)  # Pillow would keep only the high byte of each sample.
    else:
      array = iio.imread(path)
  except Exception as e:  # imageio and zlib raise many types for bad files.
    raise unreadable(path, e) from e
  return to_rgb_float(array, path)


def list_images(folder, setting: str = "data.root", recursive: bool = False) -> list[pathlib.Path]:
  """Sorted image files (PNG, JPEG, BMP) inside `folder` (and its subfolders when `recursive`).

  Args:
    folder: a directory.
    setting: the config field that named it, for the error message.
    recursive: also list images in subfolders (e.g. train291/T91 and train291/BSD200).

  Returns:
    Non-empty sorted list of paths.
  """
  folder = pathlib.Path(os.path.expandvars(os.fspath(folder))).expanduser()
  if not folder.is_dir():
    raise ValueError(f"image folder {folder} does not exist: set {setting} (or INRSR_DATA_DIR) to a folder "
                     "of PNG/JPEG/BMP images")
  entries = folder.rglob("*") if recursive else folder.iterdir()
  files = sorted(p for p in entries if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
  if not files:
    searched = " (searched subfolders too)" if recursive else ""
    raise ValueError(f"image folder {folder} holds no PNG/JPEG/BMP images{searched} (set {setting})")
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
