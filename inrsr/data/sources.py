"""Which frames a config section names: bundled photographs, image folders, frame folders, video files, clips."""

from __future__ import annotations

import os
import pathlib
from typing import Sequence

import ml_collections
import numpy as np

from inrsr import coords
from inrsr.data import images, video


def data_root() -> pathlib.Path:
  """$INRSR_DATA_DIR, else `../shared/data` beside the repository (not the working directory)."""
  if "INRSR_DATA_DIR" in os.environ:
    return pathlib.Path(os.environ["INRSR_DATA_DIR"])
  return pathlib.Path(__file__).resolve().parents[2].parent / "shared" / "data"


SOURCES = ("bundled", "folder", "file", "frames", "video", "bundled_clip")
# Where the sets that configs read from $INRSR_DATA_DIR come from (for the error when one is missing; the
# shared data folder's README.md has the commits and paths).
DATA_SETS = {
    "CelebA-HQ": "56 CelebA-HQ faces (1024x1024 JPEG) from github.com/clovaai/stargan-v2, "
                 "assets/representative/celeba_hq (any CelebA-HQ images will do)",
    "Set5": "the Set5 HR images from github.com/majedelhelou/denoising_datasets, CSet5",
    "Set14": "the Set14 HR images from github.com/majedelhelou/denoising_datasets, CSet14",
    "Vid4": "the Vid4 ground-truth frames (Vid4/GT/<clip>/00000000.png ...) from github.com/yhjo09/VSR-DUF, "
            "inputs/G",
    "DIV2K_valid_downscaled512": "DIV2K validation images 0801, 0829, 0845 at ~512 px from "
                                 "github.com/smiler96/Image-Super-Resolution, images",
    "train291": "the 291 training images (train291/T91, train291/BSD200) from "
                "github.com/jiny2001/dcscn-super-resolution, data/yang91 and data/bsd200",
}


def _missing_data_error(setting: str, root: str, path: pathlib.Path) -> ValueError:
  """A one-line error for a `$INRSR_DATA_DIR/...` root that does not exist: the field, the folder, the source."""
  name = root.split("$INRSR_DATA_DIR", 1)[1].strip("/").split("/")[0]
  origin = f" {name}: {DATA_SETS[name]}." if name in DATA_SETS else ""
  return ValueError(f"{setting}.root={root!r} is {path}, which does not exist.{origin} Set INRSR_DATA_DIR to the "
                    f"folder that holds {name}/ (default ../shared/data beside the repository), or {setting}.root "
                    "to your own copy")


def _resolve_root(source: str, root: str, setting: str) -> str:
  """`root` with `$INRSR_DATA_DIR` expanded, or a ValueError when it is empty or names missing shared data."""
  if not root:
    raise ValueError(f"{setting}.root is empty: set it to a {'file' if source in ('file', 'video') else 'folder'}")
  if "$INRSR_DATA_DIR" in root:
    expanded = pathlib.Path(root.replace("$INRSR_DATA_DIR", os.fspath(data_root())))
    if not expanded.exists():
      raise _missing_data_error(setting, root, expanded)
    root = os.fspath(expanded)
  return root


def _expand(root: str) -> pathlib.Path:
  """A root path with environment variables and `~` expanded, as `images.list_images` expands folders."""
  return pathlib.Path(os.path.expandvars(root)).expanduser()


def load_images(source: str, *, names: Sequence[str] = (), root: str = "", limit: int = 0,
                center_crop_size: int = 0, hr_size: int = 0, setting: str = "data",
                start: int = 0, recursive: bool = False) -> list[tuple[str, np.ndarray]]:
  """Load and prepare a whole image set, or the frames of one clip, in memory.

  Args:
    source: "bundled" (scikit-image photographs `names`), "folder" (all images in `root`), "file" (the one
      image file `root`), or a clip:
      "frames" (a frame folder `root`), "video" (a video file `root`), "bundled_clip" (a pan over the
      photograph names[0], see `inrsr.data.video.bundled_clip`; `limit` frames, default 8).
    names: bundled photograph names.
    root: folder or file path; `$INRSR_DATA_DIR` and `~` are expanded.
    limit: keep the first `limit` images or frames (0 keeps all).
    center_crop_size: see `prepare`.
    hr_size: see `prepare`.
    setting: config prefix used in error messages.
    start: first frame of a clip.
    recursive: "folder": include images in subfolders (named by their path relative to `root`).

  Returns:
    List of (name, (H, W, 3) float32 image).
  """
  if source not in SOURCES:
    raise ValueError(f"{setting}.source={source!r} must be one of {SOURCES}")
  if source in ("bundled", "bundled_clip") and not names:
    raise ValueError(f"{setting}.names is empty: name at least one of {images.BUNDLED}")
  if source in ("folder", "file", "frames", "video"):
    root = _resolve_root(source, root, setting)
  if source == "bundled":
    items = [(n, images.bundled_image(n)) for n in names]
  elif source == "folder":
    files = images.list_images(root, f"{setting}.root", recursive)
    base = _expand(root)
    items = [(p.relative_to(base).as_posix() if recursive else p.name, images.load_image(p)) for p in files]
  elif source == "file":
    path = _expand(root)
    if not path.is_file():
      raise ValueError(f"{setting}.root={root!r} is not an image file")
    items = [(path.name, images.load_image(path))]
  else:
    if source == "frames":
      frames, frame_names = video.load_frame_folder(root, start=start, num_frames=limit, setting=f"{setting}.root")
    elif source == "video":
      frames, frame_names = video.load_video_file(root, start=start, num_frames=limit)
    else:
      frames, frame_names = video.bundled_clip(names[0], num_frames=limit or 8)
    items = list(zip(frame_names, frames))
  if limit:
    items = items[:limit]
  return [(n, images.prepare(im, center_crop_size=center_crop_size, hr_size=hr_size)) for n, im in items]


def load_section(section: ml_collections.ConfigDict, setting: str) -> list[tuple[str, np.ndarray]]:
  """(name, HR frame) pairs of a config's data section (`data` or `eval.heldout`)."""
  return load_images(section.source, names=tuple(section.names), root=section.root, limit=section.limit,
                     center_crop_size=section.center_crop, hr_size=section.hr_size, setting=setting,
                     start=section.get("start_frame", 0), recursive=section.get("recursive", False))


def image_files(section: ml_collections.ConfigDict, setting: str) -> list[pathlib.Path]:
  """The image files a folder / frames / file section names (after `start_frame` and `limit`), none read.

  Args:
    section: a config data section of source "folder", "frames" or "file".
    setting: its name in errors ("data").

  Raises:
    ValueError: the folder is missing or holds no image (naming `<setting>.root`).
  """
  root = _resolve_root(section.source, section.root, setting)
  if section.source == "file":
    files = [_expand(root)]
  else:
    files = images.list_images(root, f"{setting}.root", bool(section.get("recursive", False)))
    files = files[section.get("start_frame", 0):] if section.source == "frames" else files
  return files[:section.limit] if section.limit else files


def frame_sizes(section: ml_collections.ConfigDict, setting: str) -> list[tuple[int, int]]:
  """The (H, W) of each frame `load_section` would return, from the files' headers where it can (none decoded).

  With `hr_size` (frames resized to it) the files are only counted, and a missing folder counts as one frame;
  bundled photographs and video files are loaded.

  Args:
    section: a config data section.
    setting: its name in errors ("data").

  Raises:
    ValueError: the data cannot be found (naming the field).
  """
  from PIL import Image  # pylint: disable=g-import-not-at-top
  files = section.source in ("folder", "frames", "file")
  if section.hr_size:
    try:
      count = len(image_files(section, setting)) if files else 1
    except ValueError:
      count = 1
    return [(int(section.hr_size), int(section.hr_size))] * count
  if not files:
    return [im.shape[:2] for _, im in load_section(section, setting)]
  sizes = []
  for f in image_files(section, setting):
    with Image.open(f) as im:
      sizes.append((im.height, im.width))
  crop = section.center_crop
  return [(min(h, crop), min(w, crop)) for h, w in sizes] if crop else sizes


def image_times(config: ml_collections.ConfigDict, num_images: int) -> list[float]:
  """Time coordinate of each training image.

  `data.image_time="index"` places image k of K at t_k = -1 + (2k + 1) / K, like frame k of a K-frame clip:
  SR-INR's "3-D high-resolution grid", which lets the table tell apart images that share (x, y). "zero" puts
  every image at t = 0. Images never trained on are always evaluated at t = 0.
  """
  mode = config.data.get("image_time", "zero")
  if mode == "index":
    return [float(t) for t in coords.time_coords(num_images)]
  if mode == "zero":
    return [0.0] * num_images
  raise ValueError(f"data.image_time={mode!r} must be 'index' or 'zero'")
