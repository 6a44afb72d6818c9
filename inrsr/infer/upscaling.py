"""Upscaling files: an image, a folder of images, a video file or a frame folder, with a run's newest checkpoint.

Outputs of any size in bounded memory: a PNG is written band by band as `inference.upscale_rows` produces the
rows (`write_png`: pypng's header and chunks, each band filtered and compressed as it comes), so neither the
float32 output nor its 8-bit copy is ever whole in memory (HIIF included: its attention statistics are summed
over every query in a first pass, `inference.upscale_rows`). A video is written one frame at a time (a
whole-clip model, BVSR-IK, runs its recurrences over the LR clip, then upsamples and writes one frame at a time,
`inference.upscale_clip_frames`): PNG frames stream like images; a GIF
(Pillow's GIF encoder fed frame by frame) or an MP4 (imageio's writer, the `video` extra) takes each 8-bit frame
whole. Other image formats (JPEG, WebP, ...) are encoded from the whole 8-bit frame. `check_output` refuses,
before any work, an output its format cannot hold or one larger than the stated limits below.
"""

from __future__ import annotations

import os
import pathlib

import imageio.v3 as iio
import jax
import numpy as np

from inrsr import coords, models
from inrsr.data import images, video
from inrsr.infer import allocator, inference
from inrsr.train import checkpoints, training

# The largest output inrsr writes, in pixels per image or frame: 65536 x 65536, 12 GiB as 8-bit RGB (raise it
# by assigning to `inrsr.infer.upscaling.MAX_OUTPUT_PIXELS` where the disk and the time allow).
MAX_OUTPUT_PIXELS = 2**32
# Formats encoded from the whole 8-bit frame in memory (all but PNG): at most 16384 x 16384 (768 MiB).
MAX_WHOLE_FRAME_PIXELS = 2**28
STREAMED_FORMATS = (".png",)
# Largest width or height each format can store.
MAX_SIDE = {".png": 2**31 - 1, ".jpg": 65535, ".jpeg": 65535, ".gif": 65535, ".webp": 16383, ".bmp": 2**31 - 1}
# Output formats, by suffix: images, and video files for clips (MP4 and others need the `video` extra).
IMAGE_OUTPUTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif")
OUTPUT_EXTENSIONS = IMAGE_OUTPUTS + tuple(e for e in video.VIDEO_EXTENSIONS if e not in IMAGE_OUTPUTS)


def _gib(n_bytes: int) -> str:
  return f"{n_bytes / 2**30:.1f} GiB" if n_bytes >= 2**30 else f"{n_bytes / 2**20:.1f} MiB"


def check_output(path, height: int, width: int) -> None:
  """Raise a ValueError if an H x W RGB output cannot be written to `path` (its format chosen by the suffix).

  Refused: an existing folder, a suffix not in `OUTPUT_EXTENSIONS`, a side beyond what the format stores
  (`MAX_SIDE`), more than `MAX_OUTPUT_PIXELS` pixels, and, for a format encoded from the whole frame (everything
  but PNG), more than `MAX_WHOLE_FRAME_PIXELS`.
  """
  path = pathlib.Path(path)
  suffix = path.suffix.lower()
  if path.is_dir():
    raise ValueError(f"--output={path} is a folder: expected a file name ending in one of "
                     f"{', '.join(OUTPUT_EXTENSIONS)} (a folder is the output of an image folder or a clip's frames)")
  if suffix not in OUTPUT_EXTENSIONS:
    raise ValueError(f"--output={path}: unknown output format {suffix or '(no suffix)'!s}; expected one of "
                     f"{', '.join(OUTPUT_EXTENSIONS)}")
  pixels = height * width
  size = f"{width}x{height} ({pixels:,} pixels, {_gib(3 * pixels)} as 8-bit RGB)"
  side = MAX_SIDE.get(suffix)
  if side is not None and max(height, width) > side:
    raise ValueError(f"{path}: the output of {size} does not fit a {suffix} file, which stores at most {side} "
                     "pixels per side")
  if pixels > MAX_OUTPUT_PIXELS:
    raise ValueError(f"{path}: the output of {size} exceeds the limit of {MAX_OUTPUT_PIXELS:,} pixels "
                     f"({_gib(3 * MAX_OUTPUT_PIXELS)}) per image (inrsr.infer.upscaling.MAX_OUTPUT_PIXELS)")
  if suffix not in STREAMED_FORMATS and pixels > MAX_WHOLE_FRAME_PIXELS:
    raise ValueError(f"{path}: the output of {size} exceeds the limit of {MAX_WHOLE_FRAME_PIXELS:,} pixels "
                     f"({_gib(3 * MAX_WHOLE_FRAME_PIXELS)}) for a {suffix or 'suffix-less'} file, which is "
                     "encoded from the whole frame in memory; write a .png, which is streamed row by row")


def frame_path(output_path, k: int) -> pathlib.Path:
  """Frame k of a clip written as PNG frames into the folder `output_path`."""
  return pathlib.Path(output_path) / f"{k:08d}.png"


def first_output(output_path, frames: bool) -> pathlib.Path:
  """The first file an upscale writes: `output_path` itself for an image or a video file, else (`frames`, into
  a folder) its frame 0; `check_output` checks this path before any work."""
  dst = pathlib.Path(output_path)
  return frame_path(dst, 0) if frames and dst.suffix.lower() not in video.VIDEO_EXTENSIONS else dst


def to_uint8(x: np.ndarray) -> np.ndarray:
  """[0, 1] floats to 8 bits, rounding to nearest."""
  return np.round(x * 255.0).astype(np.uint8)


def write_png(path, bands, height: int, width: int, *, bitdepth: int = 8, compression: int = 6) -> None:
  """Write an RGB PNG from bands of rows as they come, holding one band at a time.

  pypng writes the PNG's header and chunks; each band's scanlines are filtered here with the filter of least
  sum of absolute residuals per row (libpng's heuristic, as Pillow's PNGs have; pypng itself writes unfiltered
  rows, about 3x larger files for photographs) and fed to one zlib stream. The file appears at `path` only when
  complete (it is written beside it as `<name>.partial` first).

  Args:
    path: the output file.
    bands: iterable of (row_start, band), band (n, W, 3) in [0, 1], from the top without gaps (as
      `inference.upscale_rows` yields them).
    height: H, the rows the bands add up to.
    width: W.
    bitdepth: 8 or 16 bits per channel.
    compression: zlib level, 0 .. 9.
  """
  import zlib  # pylint: disable=g-import-not-at-top

  import png  # pylint: disable=g-import-not-at-top

  if bitdepth not in (8, 16):
    raise ValueError(f"{bitdepth=} must be 8 or 16")
  path = pathlib.Path(path)
  check_output(path, height, width)
  bpp = 3 * bitdepth // 8
  partial = path.with_name(path.name + ".partial")
  try:
    with open(partial, "wb") as f:
      png.Writer(width, height, greyscale=False, bitdepth=bitdepth).write_preamble(f)
      compressor, pending = zlib.compressobj(compression), bytearray()
      next_row, prev = 0, np.zeros(width * bpp, np.uint8)  # the row above the top one is zeros
      for start, band in bands:
        if start != next_row or band.shape[1:] != (width, 3):
          raise ValueError(f"band of shape {band.shape} at row {start}: expected (n, {width}, 3) at row {next_row}")
        if next_row + len(band) > height:
          raise ValueError(f"bands run past the {height} rows of the image")
        step = max(1, 2**20 // (width * bpp))  # rows filtered at a time (about 1 MiB, whatever the band)
        for r in range(0, len(band), step):
          q = band[r:r + step]
          q = to_uint8(q) if bitdepth == 8 else np.round(q * 65535.0).astype(">u2")
          raw = q.reshape(len(q), -1).view(np.uint8)
          pending += compressor.compress(_filter_scanlines(raw, prev, bpp))
          if len(pending) >= 2**20:
            png.write_chunk(f, b"IDAT", pending)
            pending = bytearray()
          prev = raw[-1]
        next_row += len(band)
      if next_row != height:
        raise ValueError(f"bands hold {next_row} rows, not the image's {height}")
      png.write_chunk(f, b"IDAT", pending + compressor.flush())
      png.write_chunk(f, b"IEND")
    os.replace(partial, path)
  finally:
    partial.unlink(missing_ok=True)


def _filter_scanlines(raw: np.ndarray, prev: np.ndarray, bpp: int) -> bytes:
  """PNG scanlines of rows `raw` (n, row bytes) uint8, `prev` the row above the first (zeros for the top row).

  Each row gets the filter (0 None, 1 Sub, 2 Up, 3 Average, 4 Paeth) whose residuals, read as signed bytes,
  have the least sum of absolute values. Encoding needs only the unfiltered neighbours, so it is vectorised.
  """
  x = raw.astype(np.int16)
  up = np.concatenate([prev[None].astype(np.int16), x[:-1]])
  left, up_left = np.zeros_like(x), np.zeros_like(x)
  left[:, bpp:], up_left[:, bpp:] = x[:, :-bpp], up[:, :-bpp]
  pa, pb, pc = np.abs(up - up_left), np.abs(left - up_left), np.abs(left + up - 2 * up_left)
  paeth = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, up_left))
  residuals = (np.stack([x, x - left, x - up, x - (left + up) // 2, x - paeth]) & 0xFF).astype(np.uint8)
  cost = np.abs(residuals.view(np.int8).astype(np.int32)).sum(axis=2)  # (5, n)
  best = cost.argmin(axis=0)
  out = np.empty((len(raw), 1 + raw.shape[1]), np.uint8)
  out[:, 0] = best
  out[:, 1:] = residuals[best, np.arange(len(raw))]
  return out.tobytes()


def check_decode_memory(model, params, lr_hw, height: int, width: int, chunk: int) -> int:
  """Refuse, before any work, an output whose decoding the host cannot hold (`inference.decode_bytes`).

  On a CPU only (an accelerator's memory is its own; XLA reports it).

  Args:
    model, params: the model and its parameters.
    lr_hw: the LR's (h, w).
    height, width: the output size.
    chunk: query points per call.

  Only a model whose features depend on the output size (a `query_kwargs` hook: CLIT's stages) is compiled for;
  the others hold LR-sized features and decode in chunks.

  Returns:
    The decoding's peak bytes (features and the larger working set); 0 when not checked.

  Raises:
    ValueError: on a CPU, more than the host memory available (`training.host_memory_available`).
  """
  if jax.default_backend() != "cpu":
    return 0
  available = training.host_memory_available()
  if available is None or models.hook(model, "query_kwargs") is None:
    return 0  # LR-sized features and chunk-bounded decoding (benchmark_upscale measures them): nothing to compile
  features, peak = inference.decode_bytes(model, params, lr_hw, (height, width), chunk)
  if peak > available:
    raise ValueError(f"an output of {width}x{height} from a {lr_hw[1]}x{lr_hw[0]} input: {type(model).__name__} "
                     f"needs {peak / 2**30:.1f} GiB ({features / 2**30:.1f} GiB of features held while it "
                     f"decodes; CLIT: the stage maps), more than the {available / 2**30:.1f} "
                     "GiB of host memory available; ask for a smaller output or upscale a smaller input")
  return peak


def upscale_to_file(model, params, lr: np.ndarray, path, height: int, width: int, *, t: float = 0.0,
                    chunk: int = 65536, progress: bool = False, self_ensemble: bool = False,
                    cell_scale: float | None = None) -> None:
  """Upscale `lr` to H x W and write it to `path`: a PNG streamed band by band, other formats whole.

  With `self_ensemble`, the mean over the LR's 8 flips and transposes (`inference.upscale_self_ensemble`,
  generalising models only), computed whole before it is written. `cell_scale` as `inference.upscale`'s (None:
  the model's test-time cell rule).
  """
  path = pathlib.Path(path)
  check_output(path, height, width)
  check_decode_memory(model, params, lr.shape[:2], height, width, chunk)
  if self_ensemble:
    bands = iter([(0, inference.upscale_self_ensemble(model, params, lr, height, width, chunk=chunk,
                                                      cell_scale=cell_scale, progress=progress))])
  else:
    bands = inference.upscale_rows(model, params, lr, height, width, t=t, chunk=chunk, cell_scale=cell_scale,
                                   progress=progress)
  if path.suffix.lower() in STREAMED_FORMATS:
    write_png(path, bands, height, width)
  else:
    iio.imwrite(path, _whole_frame(bands, height, width))


def _whole_frame(bands, height: int, width: int) -> np.ndarray:
  """The 8-bit (H, W, 3) frame assembled from bands (never a float32 frame)."""
  frame = np.empty((height, width, 3), np.uint8)
  for start, band in bands:
    frame[start:start + len(band)] = to_uint8(band)
  return frame


class _GifStream:
  """An animated GIF written frame by frame (Pillow's GIF encoder; Pillow's own save needs every frame first).

  Each frame is quantized to its own adaptive palette as Pillow's save does; the file loops forever.
  """

  def __init__(self, path):
    self._file = open(path, "wb")  # pylint: disable=consider-using-with
    self._count = 0

  def append(self, frame: np.ndarray) -> None:
    from PIL import GifImagePlugin, Image  # pylint: disable=g-import-not-at-top

    im = Image.fromarray(frame).convert("P", palette=Image.Palette.ADAPTIVE)
    if self._count == 0:
      header, _ = GifImagePlugin.getheader(im, info={"loop": 0})
      self._file.writelines(header)
    self._file.writelines(GifImagePlugin.getdata(im, include_color_table=True))
    self._count += 1

  def close(self) -> None:
    self._file.write(b";")
    self._file.close()


def _video_writer(dst: pathlib.Path):
  """A writer with append(frame) and close() for a video file (by its suffix)."""
  if dst.suffix.lower() == ".gif":
    return _GifStream(dst)
  return _ImageioStream(dst)


class _ImageioStream:
  """A video file written frame by frame through imageio's writer (MP4 and others: the `video` extra)."""

  def __init__(self, path):
    import imageio.v2 as iio2  # pylint: disable=g-import-not-at-top

    self._writer = iio2.get_writer(path)

  def append(self, frame: np.ndarray) -> None:
    self._writer.append_data(frame)

  def close(self) -> None:
    self._writer.close()


def parse_size(size: str) -> tuple[int, int]:
  """'WxH' -> (W, H) with both > 0."""
  try:
    w, h = (int(v) for v in size.lower().split("x"))
  except ValueError as e:
    raise ValueError(f"--size={size!r} must look like WIDTHxHEIGHT, e.g. 1024x768") from e
  if w <= 0 or h <= 0:
    raise ValueError(f"--size={size!r} must have positive width and height")
  return w, h


def output_size(lr_shape, scale: float | None, size: str | None) -> tuple[int, int]:
  """(H, W) of the output for an LR of `lr_shape` from either a scale or a 'WxH' size."""
  if (scale is None) == (size is None):
    raise ValueError("give exactly one of --scale and --size")
  if size is not None:
    w, h = parse_size(size)
    return h, w
  if not np.isfinite(scale) or scale <= 0:
    raise ValueError(f"--scale={scale} must be a finite number > 0")
  return max(1, int(round(lr_shape[0] * scale))), max(1, int(round(lr_shape[1] * scale)))


def _same_path(a: pathlib.Path, b: pathlib.Path) -> bool:
  if a.exists() and b.exists():
    return os.path.samefile(a, b)
  return a.resolve() == b.resolve()


def _image_pairs(src: pathlib.Path, dst: pathlib.Path) -> list[tuple[pathlib.Path, pathlib.Path]]:
  """(input image, output file) pairs of an image or a folder of images; two inputs with one output refused."""
  if not src.is_dir():
    return [(src, dst)]
  pairs, by_output = [], {}
  for p in images.list_images(src, "--input"):
    out = dst / (p.stem + ".png")
    if out.name.lower() in by_output:
      raise ValueError(f"--input={src}: {by_output[out.name.lower()].name} and {p.name} would both be written to "
                       f"{out}; rename one of them")
    by_output[out.name.lower()] = p
    pairs.append((p, out))
  return pairs


def check_paths(input_path, output_path, *, clip: bool = False, overwrite: bool = False) -> None:
  """Refuse, before any work, an upscale that would write over its input, over one of its own outputs, or
  (unless `overwrite`) over an existing file.

  Args:
    input_path: as `upscale_paths`'s.
    output_path: as `upscale_paths`'s.
    clip: as `upscale_paths`'s.
    overwrite: replace existing output files (never the input).

  Raises:
    ValueError: the input is missing; the output is the input, a folder where a file is written or a file where
      a folder is; two inputs of a folder have one output name (a.png and a.jpg).
    FileExistsError: an output file exists and `overwrite` is False.
  """
  src, dst = pathlib.Path(input_path), pathlib.Path(output_path)
  if not src.exists():
    raise ValueError(f"--input={src} does not exist")
  if _same_path(src, dst):
    raise ValueError(f"--output={dst} is the input {src}: an upscale never writes over its input; give another "
                     "output")
  is_clip = (src.is_file() and src.suffix.lower() in video.VIDEO_EXTENSIONS) or (clip and src.is_dir())
  to_folder = dst.suffix.lower() not in video.VIDEO_EXTENSIONS if is_clip else src.is_dir()  # as `first_output`
  if to_folder and dst.exists() and not dst.is_dir():
    raise ValueError(f"--output={dst} is a file: the input {src} is written into a folder")
  if not to_folder:
    check_output(dst, 1, 1)  # a folder or an unknown suffix, before any work
  if is_clip:
    outputs = sorted(p for p in dst.glob("[0-9]" * 8 + ".png")) if to_folder else [dst]
  else:
    outputs = [out for _, out in _image_pairs(src, dst)]
  existing = [p for p in outputs if p.exists()]
  if existing and not overwrite:
    more = f" (and {len(existing) - 1} more output files)" if len(existing) > 1 else ""
    raise FileExistsError(f"--output: {existing[0]} exists{more}: give another output, or --overwrite to replace it")


def _upscale_clip(workdir, src: pathlib.Path, dst: pathlib.Path, is_video: bool, *, scale, size, chunk: int,
                  progress: bool, cell_scale) -> list[str]:
  """`upscale_paths` of a clip (a video file or a folder of frames): frame by frame to a video or PNG frames."""
  frames, _ = video.load_video_file(src) if is_video else video.load_frame_folder(src, setting="--input")
  h, w = output_size(frames[0].shape, scale, size)
  to_file = dst.suffix.lower() in video.VIDEO_EXTENSIONS
  check_output(first_output(dst, frames=True), h, w)
  model, params, _, _ = checkpoints.restore_model(workdir)
  if inference.is_clip_model(model):  # BVSR-IK: recurrences over the whole clip, then frame by frame
    allocator.return_freed_memory()
    expected = (frames[0].shape[0] * model.scale, frames[0].shape[1] * model.scale)
    if (h, w) != expected:
      raise ValueError(f"{type(model).__name__} upscales x{model.scale} only: the output would be {w}x{h}, "
                       f"expected {expected[1]}x{expected[0]} (--scale={model.scale})")
    hr_frames = inference.upscale_clip_frames(model, params, frames)  # frame k is the k-th item; asked in order
    bands = lambda k: iter([(0, next(hr_frames))])
    seq = range(len(frames))
  else:
    times = coords.time_coords(len(frames))
    bands = lambda k: inference.upscale_rows(model, params, frames[k], h, w, t=float(times[k]), chunk=chunk,
                                             cell_scale=cell_scale)
    seq = range(len(frames))
  if progress:
    import tqdm  # pylint: disable=g-import-not-at-top
    seq = tqdm.tqdm(seq, desc=f"frames -> {w}x{h}")
  if to_file:
    _write_video(dst, seq, bands, h, w)
    return [str(dst)]
  dst.mkdir(parents=True, exist_ok=True)
  written = []
  for k in seq:
    write_png(frame_path(dst, k), bands(k), h, w)
    written.append(str(frame_path(dst, k)))
  return written


def _write_video(dst: pathlib.Path, seq, bands, h: int, w: int) -> None:
  """Frame k of `seq` (assembled from `bands(k)`) appended to the video file `dst`, one frame at a time."""
  dst.parent.mkdir(parents=True, exist_ok=True)
  writer = None
  try:
    try:
      writer = _video_writer(dst)
    except Exception as e:  # imageio raises many types; MP4 without a plugin is one of them.
      raise _video_error(dst, e) from e
    for k in seq:
      frame = _whole_frame(bands(k), h, w)
      try:
        writer.append(frame)
      except Exception as e:  # pylint: disable=broad-exception-caught
        raise _video_error(dst, e) from e
  finally:
    if writer is not None:
      writer.close()


def upscale_paths(workdir, input_path, output_path, *, scale: float | None = None, size: str | None = None,
                  clip: bool = False, chunk: int = 65536, progress: bool = True,
                  self_ensemble: bool = False, cell_scale: float | None = None, overwrite: bool = True) -> list[str]:
  """Upscale an image, a folder of images, or a clip, with the latest checkpoint of a run.

  Args:
    workdir: the training run's folder.
    input_path: an image file, a folder of images, a video file (.mp4, .gif, ...), or (with `clip`) a folder
      of frames.
    output_path: for an image, the output file; for a folder of images, a folder; for a clip, a video file
      (by its suffix) or a folder that receives 00000000.png, 00000001.png, ...
    scale: output = round(input size * scale); or
    size: 'WxH' output size.
    clip: treat a folder as the frames of one clip (frame k of T at t = -1 + (2k + 1) / T).
    chunk: query points per inference call.
    progress: progress bars.
    self_ensemble: images only: the mean over the input's 8 flips and transposes (generalising models).
    cell_scale: generalising models' query cell factor, as `inference.upscale`'s: None, the model's test-time
      rule (HIIF's official clipping, as `evaluate` scores it); 1.0, the plain cell 2 / size.
    overwrite: replace output files that exist (False refuses them, as `experiments.upscale` does without
      --overwrite); the input is never written over, whatever this says.

  Every output is checked (`check_paths`, `check_output`) before any is computed: the input is never written
  over, nor one output by another; existing files are replaced only with `overwrite`. PNG outputs (images, a
  folder of frames) are streamed band by band; a video file is written one frame at a time.

  Returns:
    The paths written.
  """
  src, dst = pathlib.Path(input_path), pathlib.Path(output_path)
  check_paths(src, dst, clip=clip, overwrite=overwrite)
  is_video = src.is_file() and src.suffix.lower() in video.VIDEO_EXTENSIONS
  if self_ensemble and (is_video or (clip and src.is_dir())):
    raise ValueError(f"--input={src}: the self-ensemble is for images, not clips")
  if is_video or (clip and src.is_dir()):
    return _upscale_clip(workdir, src, dst, is_video, scale=scale, size=size, chunk=chunk, progress=progress,
                         cell_scale=cell_scale)
  pairs = _image_pairs(src, dst)
  sizes = []
  for inp, out in pairs:  # every output checked before any work
    sizes.append(output_size(image_shape(inp), scale, size))
    check_output(out, *sizes[-1])
  model, params, _, _ = checkpoints.restore_model(workdir)
  written = []
  for (inp, out), (h, w) in zip(pairs, sizes):
    out.parent.mkdir(parents=True, exist_ok=True)
    upscale_to_file(model, params, images.load_image(inp), out, h, w, chunk=chunk, progress=progress,
                    self_ensemble=self_ensemble, cell_scale=cell_scale)
    written.append(str(out))
  return written


def image_shape(path) -> tuple[int, ...]:
  """An image file's shape from its header (the pixels are read later, one image at a time)."""
  try:
    return iio.improps(path).shape
  except Exception as e:  # imageio raises many types for bad files.
    raise images.unreadable(path, e) from e


def _video_error(dst, e: Exception) -> ValueError:
  return ValueError(f"{dst}: cannot write video ({type(e).__name__}: {e}); install the `video` extra for MP4, or "
                    "give a folder to receive PNG frames")
