"""Video clips as frame stacks: frame folders (the Vid4 layout), video files, and a clip made from a photograph.

A clip is a list of T equally sized (H, W, 3) float32 frames; frame k has time coordinate
t_k = -1 + (2k + 1) / T (`inrsr.coords.time_coords`). Training and evaluation treat a clip exactly like an
image set whose images sit at those t (`data.image_time = "index"`).

`bundled_clip` makes a clip without any download by sliding a window over one of scikit-image's photographs
(a pure translation, `shift` pixels per frame along x and y): real image content with known, simple motion. It
is a stand-in for a video in demos and tests, not a benchmark.
"""

from __future__ import annotations

import os
import pathlib

import imageio.v3 as iio
import numpy as np

from inrsr.data import images

VIDEO_EXTENSIONS = (".mp4", ".gif", ".avi", ".mov", ".mkv", ".webm")


def check_frames(frames, names) -> None:
  """Raise a ValueError naming the first frame whose size differs from the first frame's."""
  if not frames:
    raise ValueError("the clip has no frames")
  h, w = frames[0].shape[:2]
  for f, n in zip(frames, names):
    if f.shape[:2] != (h, w):
      raise ValueError(f"{n}: frame of {f.shape[1]}x{f.shape[0]} differs from the clip's first frame "
                       f"{names[0]} of {w}x{h}; all frames of a clip must have one size")


def load_frame_folder(folder, *, start: int = 0, num_frames: int = 0, setting: str = "data.root"):
  """Frames of a clip stored as one image per frame (sorted by file name), e.g. `<clip>/00000000.png`.

  Args:
    folder: the clip's folder.
    start: first frame index.
    num_frames: number of frames (0 = to the end).
    setting: config field named in errors.

  Returns:
    (frames, names).
  """
  files = images.list_images(folder, setting)[start:]
  if num_frames:
    files = files[:num_frames]
  if not files:
    raise ValueError(f"{folder}: no frames from index {start} (set {setting} / data.start_frame)")
  frames = [images.load_image(p) for p in files]
  names = [p.name for p in files]
  check_frames(frames, names)
  return frames, names


def load_video_file(path, *, start: int = 0, num_frames: int = 0):
  """Frames of a video file (GIF with Pillow; MP4 and others need the `video` extra, imageio's ffmpeg plugin).

  Returns:
    (frames, names) with names like `clip.mp4#00012`.
  """
  path = pathlib.Path(os.path.expandvars(os.fspath(path))).expanduser()
  if not path.is_file():
    raise ValueError(f"video file {path} does not exist")
  try:
    array = iio.imread(path, index=None)
  except Exception as e:  # imageio raises many types; MP4 without a plugin is one of them.
    hint = " (install the `video` extra for MP4: pip install -e '.[video]')" if path.suffix != ".gif" else ""
    raise ValueError(f"{path}: cannot read video ({type(e).__name__}: {e}){hint}") from e
  if array.ndim == 3 and path.suffix.lower() == ".gif":
    array = array[None]
  stop = start + num_frames if num_frames else None
  frames = [images.to_rgb_float(f, f"{path}#{i}") for i, f in enumerate(array[start:stop], start)]
  names = [f"{path.name}#{i:05d}" for i in range(start, start + len(frames))]
  check_frames(frames, names)
  return frames, names


def bundled_clip(name: str = "astronaut", *, num_frames: int = 8, size: int = 128, shift: int = 4):
  """A clip panning across a bundled photograph: frame k is the window at (k * shift, k * shift).

  Returns:
    (frames, names).
  """
  photo = images.bundled_image(name)
  h, w = photo.shape[:2]
  span = (num_frames - 1) * shift
  if size + span > min(h, w):
    raise ValueError(f"bundled clip of {num_frames} frames of {size}px shifting {shift}px does not fit the "
                     f"{w}x{h} photograph {name}")
  y0, x0 = (h - size - span) // 2, (w - size - span) // 2
  frames = [photo[y0 + k * shift:y0 + k * shift + size, x0 + k * shift:x0 + k * shift + size].copy()
            for k in range(num_frames)]
  return frames, [f"{name}#{k:02d}" for k in range(num_frames)]


def add_noise(lr: np.ndarray, kind: str, level: float, rng: np.random.Generator) -> np.ndarray:
  """Noisy LR input for zero-shot denoising, clipped to [0, 1].

  Args:
    lr: (..., 3) image in [0, 1].
    kind: "gaussian" (level = sigma on the 0-255 scale) or "poisson" (level = peak photon count of a white
      pixel; 0 means 255, i.e. the 8-bit scale).
    level: see kind.
    rng: NumPy generator.

  Returns:
    float32 array like lr.
  """
  if kind == "gaussian":
    if not level > 0:
      raise ValueError(f"gaussian noise needs sigma > 0, got {level}")
    noisy = lr + rng.normal(0.0, level / 255.0, lr.shape)
  elif kind == "poisson":
    peak = level or 255.0
    noisy = rng.poisson(np.clip(lr, 0, 1) * peak) / peak
  else:
    raise ValueError(f"noise kind {kind!r} must be 'gaussian' or 'poisson'")
  return np.clip(noisy, 0.0, 1.0).astype(np.float32)


def temporal_error(pred_frames, gt_frames) -> float:
  """Temporal consistency: RMSE of frame-to-frame differences against the ground truth's, over the clip."""
  if len(pred_frames) < 2:
    return float("nan")
  p = np.diff(np.stack(pred_frames).astype(np.float64), axis=0)
  g = np.diff(np.stack(gt_frames).astype(np.float64), axis=0)
  return float(np.sqrt(np.mean((p - g) ** 2)))
