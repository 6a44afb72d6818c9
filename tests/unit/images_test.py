"""Tests for image loading: conversions and the clear errors DESIGN.md asks for."""

import logging
import struct
import zlib

import imageio.v3 as iio
import numpy as np
import pytest
import skimage.data

from inrsr.data import images, sources

ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def _filtered_rows(x, kinds):
  """PNG scanlines of the (h, w, bytes per pixel) byte array x, row r filtered with filter kinds[r]."""
  a = np.pad(x, ((0, 0), (1, 0), (0, 0)))[:, :-1]  # left
  b = np.pad(x, ((1, 0), (0, 0), (0, 0)))[:-1]  # up
  c = np.pad(x, ((1, 0), (1, 0), (0, 0)))[:-1, :-1]  # up-left
  p = a + b - c
  pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
  paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
  predictors = (np.zeros_like(x), a, b, (a + b) // 2, paeth)
  rows = [np.concatenate([[k], ((x[r] - predictors[k][r]) % 256).ravel()]) for r, k in enumerate(kinds)]
  return np.asarray(rows, np.uint8).tobytes()


def write_png(path, array, *, interlace=False, seed=0):
  """A PNG written from the specification (every filter type, optional Adam7), for bit depths Pillow can't write."""
  a = np.asarray(array)
  h, w = a.shape[:2]
  channels = 1 if a.ndim == 2 else a.shape[2]
  depth = 16 if a.dtype == np.uint16 else 8
  data = np.frombuffer(a.astype(">u2" if depth == 16 else np.uint8).tobytes(), np.uint8)
  data = data.reshape(h, w, -1).astype(np.int64)
  rng = np.random.default_rng(seed)
  stream = b""
  for x0, y0, dx, dy in (ADAM7 if interlace else ((0, 0, 1, 1),)):
    sub = data[y0::dy, x0::dx]
    if sub.size:
      stream += _filtered_rows(sub, rng.integers(0, 5, sub.shape[0]))
  chunk = lambda kind, body: (struct.pack(">I", len(body)) + kind + body
                              + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))
  header = struct.pack(">IIBBBBB", w, h, depth, {1: 0, 2: 4, 3: 2, 4: 6}[channels], 0, 0, int(interlace))
  path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(stream))
                   + chunk(b"IEND", b""))


def test_conversions(tmp_path):
  rgb = skimage.data.coffee()[:20, :30]
  gray = skimage.data.camera()[:20, :30]
  iio.imwrite(tmp_path / "rgb.png", rgb)
  iio.imwrite(tmp_path / "gray.png", gray)
  iio.imwrite(tmp_path / "rgba.png", np.concatenate([rgb, np.full((20, 30, 1), 128, np.uint8)], -1))
  iio.imwrite(tmp_path / "gray16.png", gray.astype(np.uint16) * 257)
  iio.imwrite(tmp_path / "photo.jpg", rgb, quality=95)
  iio.imwrite(tmp_path / "photo.bmp", rgb)
  np.testing.assert_allclose(images.load_image(tmp_path / "rgb.png"), rgb / 255.0, atol=1e-7)
  g = images.load_image(tmp_path / "gray.png")
  assert g.shape == (20, 30, 3) and np.allclose(g[..., 0], g[..., 2]) and np.allclose(g[..., 0], gray / 255.0)
  np.testing.assert_allclose(images.load_image(tmp_path / "rgba.png"), rgb / 255.0, atol=1e-7)
  np.testing.assert_allclose(images.load_image(tmp_path / "gray16.png")[..., 1], gray / 255.0, atol=1e-6)
  assert np.abs(images.load_image(tmp_path / "photo.jpg") - rgb / 255.0).mean() < 0.02
  np.testing.assert_allclose(images.load_image(tmp_path / "photo.bmp"), rgb / 255.0, atol=1e-7)
  assert [p.name for p in images.list_images(tmp_path)] == sorted(
      ["gray.png", "gray16.png", "photo.bmp", "photo.jpg", "rgb.png", "rgba.png"])


def _half_png(tmp_path, depth):
  """The first half of a valid 8- or 16-bit RGB PNG (a 16-bit one is decoded by images.read_png16)."""
  rgb = np.random.default_rng(depth).integers(0, 2 ** depth, (16, 16, 3))
  write_png(tmp_path / "whole.png", rgb.astype(np.uint16 if depth == 16 else np.uint8))
  data = (tmp_path / "whole.png").read_bytes()
  return data[:len(data) // 2]


@pytest.mark.parametrize("kind", ["empty", "text", "half8", "half16"])
def test_a_file_named_png_that_is_no_image_is_one_line_naming_it(tmp_path, kind):
  content = {"empty": b"", "text": b"not a png at all"}[kind] if kind in ("empty", "text") else _half_png(
      tmp_path, int(kind[4:]))
  (tmp_path / "data").mkdir()
  bad = tmp_path / "data" / "broken.png"
  bad.write_bytes(content)
  iio.imwrite(tmp_path / "data" / "good.png", np.zeros((8, 8, 3), np.uint8))
  why = f"{len(content):,} bytes that do not decode as a PNG image" if content else "an empty file, 0 bytes"
  with pytest.raises(ValueError) as e:
    images.load_image(bad)
  assert str(e.value) == f"{bad}: not a readable image ({why})"  # one line: no imageio plugin advice
  with pytest.raises(ValueError) as e:  # a training folder holding it: the same line, before any training
    sources.load_images("folder", root=str(tmp_path / "data"))
  assert str(e.value) == f"{bad}: not a readable image ({why})"


def test_a_missing_file_is_one_line_naming_it(tmp_path):
  with pytest.raises(ValueError, match=r"^\S*gone\.png: not a readable image \(FileNotFoundError: [^\n]*$"):
    images.load_image(tmp_path / "gone.png")


def test_wrong_channel_count_names_the_image():
  with pytest.raises(ValueError, match="five.png: expected a grayscale, gray.alpha, RGB or RGBA"):
    images.to_rgb_float(np.zeros((4, 4, 5), np.uint8), "five.png")


@pytest.mark.parametrize("interlace", [False, True])
def test_16bit_colour_pngs_keep_16bit_precision(tmp_path, interlace):
  rng = np.random.default_rng(int(interlace))
  rgb = rng.integers(0, 65536, (13, 17, 3)).astype(np.uint16)
  rgba = rng.integers(0, 65536, (9, 11, 4)).astype(np.uint16)
  write_png(tmp_path / "rgb16.png", rgb, interlace=interlace, seed=1)
  write_png(tmp_path / "rgba16.png", rgba, interlace=interlace, seed=2)
  write_png(tmp_path / "rgb8.png", (rgb >> 8).astype(np.uint8), interlace=interlace, seed=3)
  # The files are valid PNGs: Pillow (an independent decoder) reads them, though only to 8 bits.
  np.testing.assert_array_equal(iio.imread(tmp_path / "rgb8.png"), rgb >> 8)
  np.testing.assert_array_equal(iio.imread(tmp_path / "rgb16.png"), rgb >> 8)
  np.testing.assert_array_equal(iio.imread(tmp_path / "rgba16.png"), rgba >> 8)
  # Read at full precision: 8 bits would be off by up to 1/255 (the low bytes are random).
  np.testing.assert_allclose(images.load_image(tmp_path / "rgb16.png"), rgb / 65535.0, rtol=0, atol=1e-7)
  np.testing.assert_allclose(images.load_image(tmp_path / "rgba16.png"), rgba[..., :3] / 65535.0, rtol=0, atol=1e-7)


def test_gray_alpha_pngs_become_rgb_without_alpha(tmp_path, caplog):
  caplog.set_level(logging.INFO, logger="absl")
  gray = skimage.data.camera()[:20, :30]
  alpha = np.linspace(0, 255, 20 * 30).reshape(20, 30).astype(np.uint8)
  iio.imwrite(tmp_path / "la8.png", np.stack([gray, alpha], -1))  # Pillow's own LA encoder.
  gray16 = gray.astype(np.uint16) * 257 + np.arange(30, dtype=np.uint16)  # low bytes that 8 bits would lose
  write_png(tmp_path / "la16.png", np.stack([gray16, alpha.astype(np.uint16) * 257], -1))
  la8 = images.load_image(tmp_path / "la8.png")
  np.testing.assert_allclose(la8, np.repeat(gray[..., None], 3, -1) / 255.0, rtol=0, atol=1e-7)
  la16 = images.load_image(tmp_path / "la16.png")
  np.testing.assert_allclose(la16, np.repeat(gray16[..., None], 3, -1) / 65535.0, rtol=0, atol=1e-7)
  assert sum("gray+alpha image converted to RGB, alpha channel dropped" in r.getMessage()
             for r in caplog.records) == 2


def test_empty_and_missing_folders(tmp_path):
  (tmp_path / "notes.txt").write_text("no images here")
  with pytest.raises(ValueError, match="holds no PNG/JPEG/BMP images.*data.root"):
    images.list_images(tmp_path)
  with pytest.raises(ValueError, match="does not exist: set data.root"):
    sources.load_images("folder", root=str(tmp_path / "missing"))


def test_bundled_images_and_bad_names():
  astronaut = images.bundled_image("astronaut")
  assert astronaut.shape == (512, 512, 3) and astronaut.dtype == np.float32
  assert images.bundled_image("camera").shape == (512, 512, 3)
  with pytest.raises(ValueError, match="not one of"):
    images.bundled_image("lena")
  with pytest.raises(ValueError, match="data.source"):
    sources.load_images("http")
