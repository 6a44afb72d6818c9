"""Upscaling files: an image, a folder of images, a video file or a frame folder, with a run's newest checkpoint."""

from __future__ import annotations

import pathlib

import imageio.v3 as iio
import numpy as np

from inrsr import checkpoints, coords, inference
from inrsr.data import images, video


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


def upscale_paths(workdir, input_path, output_path, *, scale: float | None = None, size: str | None = None,
                  clip: bool = False, chunk: int = 65536, progress: bool = True) -> list[str]:
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

  Returns:
    The paths written.
  """
  src, dst = pathlib.Path(input_path), pathlib.Path(output_path)
  is_video = src.is_file() and src.suffix.lower() in video.VIDEO_EXTENSIONS
  if not src.exists():
    raise ValueError(f"--input={src} does not exist")
  model, params, _, _ = checkpoints.restore_model(workdir)
  to_uint8 = lambda x: np.round(x * 255.0).astype(np.uint8)
  if is_video or (clip and src.is_dir()):
    frames, _ = video.load_video_file(src) if is_video else video.load_frame_folder(src, setting="--input")
    times = coords.time_coords(len(frames))
    h, w = output_size(frames[0].shape, scale, size)
    seq = range(len(frames))
    if progress:
      import tqdm  # pylint: disable=g-import-not-at-top
      seq = tqdm.tqdm(seq, desc=f"frames -> {w}x{h}")
    out_frames = [to_uint8(inference.upscale(model, params, frames[k], h, w, t=float(times[k]), chunk=chunk)) for k in seq]
    if dst.suffix.lower() in video.VIDEO_EXTENSIONS:
      dst.parent.mkdir(parents=True, exist_ok=True)
      try:
        iio.imwrite(dst, np.stack(out_frames), **({"loop": 0} if dst.suffix.lower() == ".gif" else {}))
      except Exception as e:  # imageio raises many types; MP4 without a plugin is one of them.
        raise ValueError(f"{dst}: cannot write video ({type(e).__name__}: {e}); install the `video` extra for "
                         "MP4, or give a folder to receive PNG frames") from e
      return [str(dst)]
    dst.mkdir(parents=True, exist_ok=True)
    written = []
    for k, f in enumerate(out_frames):
      iio.imwrite(dst / f"{k:08d}.png", f)
      written.append(str(dst / f"{k:08d}.png"))
    return written
  if src.is_dir():
    pairs = [(p, dst / (p.stem + ".png")) for p in images.list_images(src, "--input")]
    dst.mkdir(parents=True, exist_ok=True)
  else:
    pairs = [(src, dst)]
  written = []
  for inp, out in pairs:
    lr = images.load_image(inp)
    h, w = output_size(lr.shape, scale, size)
    hr = inference.upscale(model, params, lr, h, w, chunk=chunk, progress=progress)
    out.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(out, to_uint8(hr))
    written.append(str(out))
  return written
