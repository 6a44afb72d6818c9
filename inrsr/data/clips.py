"""Grain pipeline of BVSR-IK's `clips` protocol: pseudo-videos cut from still images, blurred frame by frame.

There is no video training set here (the official code trains on REDS), so each example is a T-frame clip cut
from one image (`../shared/bvsr_ik.md` section 6, local data plan), made as the official `data.py` makes a
REDS training sample from its T sharp frames:

  * Motion: a random walk of the HR crop window. Frame 0's window (side P = scale * lr_size) sits at a random
    position; every further frame moves it by an integer step drawn uniformly from [-walk_step, walk_step] HR
    pixels along each axis. Integer HR steps keep every HR frame an exact crop of the image (no resampling
    blur in the ground truth) while the LR frames still see sub-pixel motion (a step of 1 HR pixel is a
    quarter LR pixel). The start is drawn so the whole walk stays inside the image; a walk longer than the
    image allows is clamped at its borders (frames then repeat a position).
  * Degradation: every frame gets its own kernel, drawn with `inrsr.data.degradations` (the official
    training recipe, `gaussian_train` by default: sigma from {0.4, ..., 2.0}, replicate padding, per-channel
    correlation, `[::4, ::4]`); the LR stays float and unrounded, as the official training LR.
  * Correction target I^DN (`lrs_clean`): the official code reads REDS's `train_sharp_bicubic/X4`, MATLAB's
    antialiased bicubic x1/4 of the sharp frame stored as uint8 PNG; here `inrsr.resize.resize` (Pillow's
    antialiased bicubic, the same Keys a = -0.5 filter widened by the scale; borders differ slightly from
    MATLAB's symmetric padding) of the HR frame, clipped and rounded to 8 bits.
  * Augmentation: random horizontal and vertical flips of the whole clip (one coin each); no rotation, no
    temporal reversal. Where they apply is `flip_before_degradation`:
      - False (the official `augment`, `data.py` L173-187): the blurred LR, the HR and the clean LR are flipped
        together after the degradation. A flip moves the `[::4, ::4]` sampling phase: LR pixel j of a flipped
        clip sits at HR pixel 4j + 3 instead of 4j, and nothing in the LR tells the two phases apart, so a
        model trained this way can only hedge between them (a +-1.5 HR px shift around bicubic's own grid).
      - True (our departure, the `bvsr_ik_train291` default): the HR frames are flipped first and then
        degraded, so every LR has the test sets' phase (LR pixel j at HR 4j). Measured on blurred Vid4
        (central 256 x 256, first 20 frames): bicubic scores 21.76 dB Y, the same bicubic moved by the phase
        offset (-1.5 HR px) 23.76 dB; that 2 dB of alignment is learnable only with one phase. Trained with the
        official order for 1000 steps, the model collapsed onto its bilinear skip (RESULTS.md).

The random draws come from the NumPy generator Grain derives from the seed and the element index, in this
order: the T - 1 walk steps, the start (row, column), then each frame's kernel (and noise, if the recipe has
any) and the two flip coins, the coins first when `flip_before_degradation`. Images whose shorter side is below
P cannot give a clip (`fits`).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import grain
import ml_collections
import numpy as np
from absl import logging

from inrsr import resize
from inrsr.data import common, degradations, pipeline, sources

WHOLE_FRAMES = False
SCALE_SAMPLINGS = ("uniform",)


@dataclasses.dataclass(frozen=True)
class ClipSpec:
  """How one pseudo-video is cut from an image.

  Attributes:
    lr_size: LR frame side h = w (the official patch: HR 256, LR 64).
    frames: T, frames per clip (5: M = 2).
    scale: subsampling factor (4; an integer, the degradation subsamples `[::scale, ::scale]`).
    walk_step: largest HR step of the crop window per frame and axis.
    augment: random horizontal and vertical flips of the whole clip.
    clean_phase: "centre" (the official I^DN: antialiased bicubic, LR pixel j at HR 4j + 1.5) or "grid" (the
      same filter centred on HR pixel 4j, the blurred LR's `[::4]` grid; pairs with BVSR-IK's
      `skip_phase="grid"`).
    flip_before_degradation: flip the HR frames before degrading them (every LR keeps the `[::4, ::4]` phase
      of the test sets) instead of flipping the degraded clip (the official order, which mixes two phases).
    degradation: a name in `degradations.RECIPES` ("gaussian_train" or "realistic_train" for training).
  """

  lr_size: int = 64
  frames: int = 5
  scale: int = 4
  walk_step: int = 8
  augment: bool = True
  degradation: str = "gaussian_train"
  flip_before_degradation: bool = False
  clean_phase: str = "centre"

  def __post_init__(self):
    if self.lr_size <= 0:
      raise ValueError(f"data.lr_size={self.lr_size} must be > 0")
    if self.frames <= 0:
      raise ValueError(f"data.frames={self.frames} must be > 0")
    if self.walk_step < 0:
      raise ValueError(f"data.walk_step={self.walk_step} must be >= 0")
    if self.degradation not in degradations.RECIPES:
      raise ValueError(f"data.degradation={self.degradation!r} must be one of {sorted(degradations.RECIPES)}")
    if self.clean_phase not in ("centre", "grid"):
      raise ValueError(f"data.clean_phase={self.clean_phase!r} must be 'centre' or 'grid'")
    if self.recipe.scale != self.scale:
      raise ValueError(f"data.scale={self.scale} differs from the degradation's scale {self.recipe.scale}")

  @property
  def hr_size(self) -> int:
    return self.lr_size * self.scale

  @property
  def recipe(self) -> degradations.BlurDownRecipe:
    return degradations.RECIPES[self.degradation]


def fits(image: np.ndarray, spec: ClipSpec) -> bool:
  """True when `image` is large enough for a clip (both sides >= the HR crop side)."""
  return min(image.shape[:2]) >= spec.hr_size


def walk_positions(rng: np.random.Generator, height: int, width: int, spec: ClipSpec) -> np.ndarray:
  """The (T, 2) top-left (row, column) of each frame's HR window in an image of `height` x `width`."""
  p = spec.hr_size
  steps = rng.integers(-spec.walk_step, spec.walk_step + 1, size=(spec.frames - 1, 2))
  offsets = np.concatenate([np.zeros((1, 2), np.int64), np.cumsum(steps, axis=0)])
  limits = np.array([height - p, width - p])
  lo = -offsets.min(axis=0)
  hi = limits - offsets.max(axis=0)
  start = np.array([rng.integers(lo[i], hi[i] + 1) if lo[i] <= hi[i] else rng.integers(0, limits[i] + 1)
                    for i in range(2)])
  return np.clip(start + offsets, 0, limits)


def clean_lr(hr: np.ndarray, lr_size: int, phase: str = "centre") -> np.ndarray:
  """The correction target I^DN of an HR frame: antialiased bicubic to lr_size, rounded to 8 bits.

  Args:
    hr: (P, P, 3) HR frame, P = scale * lr_size.
    lr_size: the LR side.
    phase: "centre" (Pillow's resize, LR pixel j at HR (j + 0.5) * scale - 0.5) or "grid" (the same widened
      filter centred on HR pixel scale * j, `resize.grid_matrix`).
  """
  if phase == "grid":
    lr = resize.resize_on_grid(hr, lr_size, lr_size, hr.shape[0] // lr_size)
  else:
    lr = resize.resize(hr, lr_size, lr_size)
  lr = np.clip(lr, 0.0, 1.0)
  return (np.round(lr * 255.0) / 255.0).astype(np.float32)


def make_clip_example(image: np.ndarray, spec: ClipSpec, rng: np.random.Generator) -> dict:
  """One pseudo-video from one HR image.

  Args:
    image: (H, W, 3) float32 image in [0, 1], both sides >= spec.hr_size.
    spec: the ClipSpec.
    rng: NumPy generator (Grain derives it from the seed and the element index).

  Returns:
    dict with lrs (T, h, h, 3) float32 (blurred and subsampled, unclipped), rgb (T, P, P, 3) float32 (the HR
    frames), lrs_clean (T, h, h, 3) float32 (the correction target), P = scale * h.
  """
  h, w = image.shape[:2]
  p = spec.hr_size
  if min(h, w) < p:
    raise ValueError(f"image of {h}x{w} is smaller than the HR crop {p} (data.lr_size={spec.lr_size} x "
                     f"data.scale={spec.scale})")
  positions = walk_positions(rng, h, w, spec)
  hr = np.stack([image[top:top + p, left:left + p] for top, left in positions]).astype(np.float32)
  if spec.augment and spec.flip_before_degradation:
    if rng.random() < 0.5:
      hr = hr[:, :, ::-1]
    if rng.random() < 0.5:
      hr = hr[:, ::-1]
  lrs = np.stack([degradations.degrade_frame(frame, rng, spec.recipe)[0] for frame in hr])
  clean = np.stack([clean_lr(frame, spec.lr_size, spec.clean_phase) for frame in hr])
  if spec.augment and not spec.flip_before_degradation:
    if rng.random() < 0.5:
      lrs, hr, clean = lrs[:, :, ::-1], hr[:, :, ::-1], clean[:, :, ::-1]
    if rng.random() < 0.5:
      lrs, hr, clean = lrs[:, ::-1], hr[:, ::-1], clean[:, ::-1]
  return {"lrs": np.ascontiguousarray(lrs, np.float32), "rgb": np.ascontiguousarray(hr, np.float32),
          "lrs_clean": np.ascontiguousarray(clean, np.float32)}


def clips_dataset(images: Sequence[np.ndarray], spec: ClipSpec, *, batch_size: int, seed: int,
                  num_workers: int = 0) -> grain.IterDataset:
  """Infinite, shuffled, batched Grain dataset of pseudo-videos, deterministic for a seed.

  Args:
    images: HR images (H_i, W_i, 3), each with `fits(image, spec)`.
    spec: the ClipSpec.
    batch_size: clips per batch.
    seed: shuffling and sampling seed.
    num_workers: Grain worker processes (0 = in-process).

  Returns:
    IterDataset of dicts lrs (B, T, h, h, 3), rgb (B, T, P, P, 3), lrs_clean (B, T, h, h, 3); its iterator
    is checkpointable (`get_state` / `set_state`).
  """
  small = [i for i, im in enumerate(images) if not fits(im, spec)]
  if small:
    raise ValueError(f"{len(small)} training images are smaller than the HR crop {spec.hr_size} "
                     f"(first: index {small[0]}, {images[small[0]].shape[:2]})")
  return pipeline.batched_dataset(pipeline.FrameSource(images), lambda ft, rng: make_clip_example(ft[0], spec, rng),
                                  batch_size=batch_size, seed=seed, num_workers=num_workers)


def clip_spec(config: ml_collections.ConfigDict) -> ClipSpec:
  """The `ClipSpec` of a config's `data` section."""
  d = config.data
  return ClipSpec(lr_size=d.lr_size, frames=d.frames, scale=int(d.scale), walk_step=d.walk_step,
                  augment=d.augment, degradation=d.degradation,
                  flip_before_degradation=bool(d.get("flip_before_degradation", False)),
                  clean_phase=d.get("clean_phase", "centre"))


def validate(config: ml_collections.ConfigDict) -> None:
  """Check what this protocol adds to the common checks: an integer `data.scale`, the clip settings.

  Raises:
    ValueError: naming the field and what was expected.
  """
  scale = float(config.data.scale)
  if scale != int(scale):
    raise ValueError(f"data.scale={config.data.scale!r} must be an integer for protocol {config.data.protocol!r} "
                     "(frames are subsampled [::scale, ::scale])")
  clip_spec(config)


def training_data(config: ml_collections.ConfigDict) -> common.TrainingData:
  """The run's dataset (`clips_dataset` over the images of `data` large enough for a clip) and schedule.

  Images smaller than the HR crop are left out (logged); an epoch is one pass over the others, `data.repeat`
  times.

  Args:
    config: a training config of protocol `clips`, checked (`protocols.validate`).

  Returns:
    `common.TrainingData`; a step trains on B x T x P^2 HR pixels.

  Raises:
    ValueError: no image of `data` is large enough.
  """
  d = config.data
  spec = clip_spec(config)
  items = sources.load_section(d, "data")
  usable = [(n, im) for n, im in items if fits(im, spec)]
  if not usable:
    raise ValueError(f"no image of data.root={d.root!r} is at least {spec.hr_size}x{spec.hr_size} "
                     f"(data.lr_size={spec.lr_size} x data.scale={spec.scale}); lower data.lr_size")
  logging.info("training on clips from %d of %d images (%d smaller than %d px left out: %s ...), protocol %s",
               len(usable), len(items), len(items) - len(usable), spec.hr_size,
               ", ".join(n for n, im in items if not fits(im, spec))[:200], d.protocol)
  steps, per_epoch = common.schedule(config, len(usable) * d.get("repeat", 1), d.batch_size)
  dataset = clips_dataset([im for _, im in usable], spec, batch_size=d.batch_size, seed=config.train.seed,
                          num_workers=d.num_workers)
  return common.TrainingData(dataset, steps, per_epoch, d.batch_size * spec.frames * spec.hr_size ** 2)


def blank_example(config: ml_collections.ConfigDict) -> common.BlankExample:
  """One clip of the run's shapes, cut from a blank image just large enough for the HR crop and its walk.

  Args:
    config: a training config of protocol `clips`, checked (`protocols.validate`).

  Returns:
    `common.BlankExample` (the schedule counts one image an epoch: the data set is not read).
  """
  spec = clip_spec(config)
  side = spec.hr_size + 2 * spec.walk_step * spec.frames
  example = make_clip_example(common.blank_frame(side, side), spec, np.random.default_rng(0))
  return common.blank_result(config, example, spec.frames * spec.hr_size ** 2)
