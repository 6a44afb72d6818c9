"""Grain training pipelines: HR frames -> (LR frame, B x P random HR pixels) batches, deterministic from a seed.

An element of the source is one HR frame with its time coordinate t (0 for images). Per element and step:
optional random HR crop, optional flips / 90-degree rotations, a scale (fixed or uniform in a range), the SR
degradation (antialiased bicubic, `inrsr.resize.downsample`, by default without the mod-crop so that an HR pixel
has the same (x, y) at every scale), and P HR pixels drawn uniformly without replacement. LR frames of
different sizes are padded at the bottom/right (edge values) to a common shape and carry their valid size, so
whole images of different sizes can share a batch.

Protocol `internal` trains on (LR downscaled again, LR) pairs: the source frames are first replaced by their LR
at `internal_scale`, so no HR pixel is ever seen (DESIGN.md, Training protocols).

This module holds the example makers (whole frames, `ExampleSpec`; LR crops, `PatchSpec`) and the Grain pipeline
every protocol shares (`batched_dataset`); the protocol modules (`inrsr.data.protocols`) build them from a config.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import grain
import numpy as np

from inrsr import coords, resize
from inrsr.data import common


SCALE_SAMPLINGS = ("uniform", "log")


@dataclasses.dataclass(frozen=True)
class ExampleSpec:
  """How one training example is made from an HR frame.

  Attributes:
    scale_min: smallest SR scale (>= 1: the LR is never larger than the HR).
    scale_max: largest SR scale (== scale_min for a fixed scale).
    pixels: P, HR pixels sampled per frame.
    crop: HR random crop size (0 keeps whole frames).
    augment: random horizontal/vertical flips and transposes (crops only; whole frames keep their
      coordinates, which the `fit` protocol needs).
    lr_pad: (h, w) every LR is padded to.
    modcrop: crop the HR to the scale's multiple before downsampling (the SR literature's degradation, under
      which the coordinates are normalised to a region that changes with the scale); False (the default)
      downsamples the whole frame, so HR pixel (i, j) is at `coords.pixel_coords(i, j, H, W)` at every scale.
    scale_sampling: how a scale in [scale_min, scale_max] is drawn: "uniform" (the default) or "log"
      (log-uniform: each octave, e.g. x2-x4 and x4-x8, gets the same share of examples).
  """

  scale_min: float
  scale_max: float
  pixels: int
  crop: int
  augment: bool
  lr_pad: tuple[int, int]
  modcrop: bool = False
  scale_sampling: str = "uniform"

  def __post_init__(self):
    common.check_scale_range(self.scale_min, self.scale_max, ("data.scale_min", "data.scale_max"))
    if self.pixels <= 0:
      raise ValueError(f"data.pixels_per_frame={self.pixels} must be > 0")
    if self.scale_sampling not in SCALE_SAMPLINGS:
      raise ValueError(f"data.scale_sampling={self.scale_sampling!r} must be one of {SCALE_SAMPLINGS}")


def draw_scale(scale_min: float, scale_max: float, sampling: str, rng: np.random.Generator) -> float:
  """One scale from [scale_min, scale_max]: uniform, or log-uniform (`sampling="log"`); scale_min when equal."""
  if scale_max == scale_min:
    return scale_min
  if sampling == "log":
    return float(math.exp(rng.uniform(math.log(scale_min), math.log(scale_max))))
  return float(rng.uniform(scale_min, scale_max))


def lr_pad_shape(frames: Sequence[np.ndarray], scale_min: float, crop: int = 0) -> tuple[int, int]:
  """The largest LR (h, w) any frame can produce at `scale_min` (with crops of size `crop`)."""
  if crop:
    sizes = [(crop, crop)]
  else:
    sizes = [f.shape[:2] for f in frames]
  return (max(int(math.floor(h / scale_min + 1e-9)) for h, _ in sizes),
          max(int(math.floor(w / scale_min + 1e-9)) for _, w in sizes))


def make_example(frame: np.ndarray, t: float, spec: ExampleSpec, rng: np.random.Generator) -> dict:
  """One training example from one HR frame.

  Args:
    frame: (H, W, 3) float32 HR frame.
    t: its time coordinate.
    spec: the ExampleSpec.
    rng: NumPy generator (Grain derives it from the seed and the element index).

  Returns:
    dict with lr (h_pad, w_pad, 3) float32, lr_size (2,) int32, coords (P, 3) float32, rgb (P, 3) float32,
    scale () float32.
  """
  hr = frame
  if spec.crop:
    h, w = hr.shape[:2]
    if h < spec.crop or w < spec.crop:
      raise ValueError(f"frame of {h}x{w} is smaller than the crop data.crop={spec.crop}")
    top, left = rng.integers(0, h - spec.crop + 1), rng.integers(0, w - spec.crop + 1)
    hr = hr[top:top + spec.crop, left:left + spec.crop]
    if spec.augment:
      if rng.random() < 0.5:
        hr = hr[:, ::-1]
      if rng.random() < 0.5:
        hr = hr[::-1]
      if rng.random() < 0.5:
        hr = hr.transpose(1, 0, 2)
  scale = draw_scale(spec.scale_min, spec.scale_max, spec.scale_sampling, rng)
  lr, hr = resize.downsample(np.ascontiguousarray(hr), scale, modcrop=spec.modcrop)
  h_hr, w_hr = hr.shape[:2]
  if spec.pixels > h_hr * w_hr:
    raise ValueError(f"data.pixels_per_frame={spec.pixels} exceeds the {h_hr}x{w_hr} HR frame")
  flat = rng.choice(h_hr * w_hr, size=spec.pixels, replace=False)
  rows, cols = flat // w_hr, flat % w_hr
  h_pad, w_pad = spec.lr_pad
  if lr.shape[0] > h_pad or lr.shape[1] > w_pad:
    raise ValueError(f"LR of {lr.shape[:2]} does not fit the padding {spec.lr_pad}")
  lr_padded = np.pad(lr, ((0, h_pad - lr.shape[0]), (0, w_pad - lr.shape[1]), (0, 0)), mode="edge")
  return {
      "lr": lr_padded.astype(np.float32),
      "lr_size": np.array(lr.shape[:2], np.int32),
      "coords": coords.pixel_coords(rows, cols, h_hr, w_hr, t),
      "rgb": hr[rows, cols].astype(np.float32),
      "scale": np.float32(scale),
  }


class FrameSource:
  """Random-access source of (frame, t) pairs held in memory."""

  def __init__(self, frames: Sequence[np.ndarray], times: Sequence[float] | None = None):
    if not len(frames):
      raise ValueError("no frames to train on")
    self.frames = list(frames)
    self.times = [0.0] * len(frames) if times is None else list(times)

  def __len__(self) -> int:
    return len(self.frames)

  def __getitem__(self, index: int):
    return self.frames[index], self.times[index]


def internal_frames(frames: Sequence[np.ndarray], scale: float, modcrop: bool = False) -> list[np.ndarray]:
  """The `internal` protocol's training frames: each frame's LR at `scale` (no HR is kept).

  Without `modcrop` (the default) the LR covers the whole frame, as the LR that evaluation gives the model
  (`evaluation.evaluate_images` with modcrop False) does.
  """
  return [resize.downsample(f, scale, modcrop=modcrop)[0] for f in frames]


# How many batches the iterator makes ahead of the train step, and with how many threads. Grain's own default
# (16 threads filling a buffer of 500 batches) makes hundreds of batches no short run uses, in threads that hold
# the interpreter while the step is traced and compiled: the first step of `benchmark_train --config=srinr_demo`
# took 11.5 s with it and 6.0-7.6 s with these options, the step itself the same (BENCHMARKS.md, "Batches made
# ahead"). A pipeline slower than the step takes worker processes instead (`data.num_workers`).
READ_OPTIONS = grain.ReadOptions(num_threads=2, prefetch_buffer_size=8)


def process_shard() -> tuple[int, int]:
  """(this process's index, the number of processes) of the JAX runtime: (0, 1) in a single-process run."""
  import jax  # pylint: disable=g-import-not-at-top

  return jax.process_index(), jax.process_count()


def batched_dataset(source: FrameSource, make, *, batch_size: int, seed: int, num_workers: int = 0,
                    shard: tuple[int, int] | None = None) -> grain.IterDataset:
  """Infinite, shuffled, batched Grain dataset of `make(item, rng)` over a source's items, deterministic for a seed.

  The one pipeline every protocol shares (whole frames, patches, clips): seeded shuffle, repeat, a random map
  per item, fixed-size batches, optional worker processes. In a run of N processes each reads only its share
  of the examples: global batch k is the examples k B .. (k + 1) B - 1 of the single-process stream, and
  process p gets those whose index is p modulo N (a strided slice after the random map, so every example keeps
  the random numbers it has in a single-process run), B / N of them per step.

  Args:
    source: the items (`FrameSource`: (frame, t) pairs).
    make: (item, numpy Generator) -> example dict.
    batch_size: examples per global batch (over all processes).
    seed: shuffling and sampling seed.
    num_workers: Grain worker processes (0 = in-process).
    shard: (process index, process count); None reads them from the JAX runtime (`process_shard`).

  Returns:
    IterDataset of dicts with a leading batch axis of batch_size / process count; its iterator is
    checkpointable (`get_state` / `set_state`).
  """
  index, count = process_shard() if shard is None else shard
  if batch_size <= 0 or batch_size % count:
    raise ValueError(f"data.batch_size={batch_size} must be > 0 and a multiple of the {count} processes")
  ds = (grain.MapDataset.source(source).seed(seed).shuffle().repeat()
        .random_map(make))
  if count > 1:
    ds = ds[index::count]
  it = ds.batch(batch_size // count, drop_remainder=True).to_iter_dataset(READ_OPTIONS)
  if num_workers > 0:
    it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers))
  return it


def training_dataset(frames: Sequence[np.ndarray], spec: ExampleSpec, *, batch_size: int, seed: int,
                     times: Sequence[float] | None = None, num_workers: int = 0) -> grain.IterDataset:
  """Infinite, shuffled, batched Grain dataset of training examples, deterministic for a seed.

  Args:
    frames: HR frames (H_i, W_i, 3).
    spec: ExampleSpec (see `lr_pad_shape` for its lr_pad).
    batch_size: B frames per batch (frames repeat when B exceeds the dataset).
    seed: shuffling and sampling seed.
    times: per-frame t (zeros for images).
    num_workers: Grain worker processes (0 = in-process).

  Returns:
    IterDataset of dicts with leading batch axis B; its iterator is checkpointable (`get_state`).
  """
  return batched_dataset(FrameSource(frames, times), lambda ft, rng: make_example(ft[0], ft[1], spec, rng),
                         batch_size=batch_size, seed=seed, num_workers=num_workers)


@dataclasses.dataclass(frozen=True)
class PatchSpec:
  """The `patches` protocol of the generalising models (LIIF's `sr-implicit-downsampled` wrapper).

  Attributes:
    lr_size: LR crop side (48).
    scale_min: smallest scale (1).
    scale_max: largest scale (4); one scale per sample, uniform in [scale_min, scale_max].
    queries: HR pixels sampled per crop, without replacement (2304 = 48^2).
    augment: independent coin flips for reversing rows, columns, and transposing (LR and HR alike).
    quantize_lr: round the LR to 8 bits (the official code resizes uint8 images with Pillow).
  """

  lr_size: int = 48
  scale_min: float = 1.0
  scale_max: float = 4.0
  queries: int = 2304
  augment: bool = True
  quantize_lr: bool = True

  def __post_init__(self):
    common.check_scale_range(self.scale_min, self.scale_max, ("data.scale_min", "data.scale_max"))
    if self.lr_size <= 0:
      raise ValueError(f"data.lr_size={self.lr_size} must be > 0")
    if not 0 < self.queries <= self.lr_size ** 2:
      raise ValueError(f"data.queries={self.queries} must be in (0, lr_size^2 = {self.lr_size ** 2}]: a crop at "
                       "scale 1 has no more HR pixels than that")


def make_patch_example(image: np.ndarray, spec: PatchSpec, rng: np.random.Generator) -> dict:
  """One `patches` example: an LR crop of side lr_size, and `queries` HR pixels with their cells.

  The scale s ~ U(scale_min, scale_max); the HR crop has side round(lr_size * s) at a random position and the
  LR is its antialiased bicubic downsampling to lr_size (Pillow's BICUBIC, as the official code). An image too
  small for round(lr_size * s) uses its largest square crop instead, so its effective scale is lower
  (train291 holds images of 78 px; DIV2K, the official set, never needs this).

  Args:
    image: (H, W, 3) float32 HR image in [0, 1], both sides >= lr_size.
    spec: the PatchSpec.
    rng: NumPy generator (Grain derives it from the seed and the element index).

  Returns:
    dict with lr (lr_size, lr_size, 3), coords (Q, 2) (x, y), cells (Q, 2) (2 / W_hr, 2 / H_hr), rgb (Q, 3),
    scale () float32 (the effective scale).
  """
  h, w = image.shape[:2]
  if min(h, w) < spec.lr_size:
    raise ValueError(f"image of {h}x{w} is smaller than the LR crop data.lr_size={spec.lr_size}")
  scale = rng.uniform(spec.scale_min, spec.scale_max)
  side = min(int(round(spec.lr_size * scale)), h, w)
  top, left = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
  hr = image[top:top + side, left:left + side]
  if spec.augment:
    if rng.random() < 0.5:
      hr = hr[::-1]
    if rng.random() < 0.5:
      hr = hr[:, ::-1]
    if rng.random() < 0.5:
      hr = hr.transpose(1, 0, 2)
  hr = np.ascontiguousarray(hr, np.float32)
  lr = np.clip(resize.resize(hr, spec.lr_size, spec.lr_size), 0.0, 1.0)
  if spec.quantize_lr:
    lr = np.round(lr * 255.0) / 255.0
  flat = rng.choice(side * side, size=spec.queries, replace=False)
  rows, cols = flat // side, flat % side
  return {
      "lr": lr.astype(np.float32),
      "coords": coords.grid_xy_f32(rows, cols, side, side),
      "cells": np.full((spec.queries, 2), 2.0 / side, np.float32),
      "rgb": hr[rows, cols],
      "scale": np.float32(side / spec.lr_size),
  }


def patches_dataset(images: Sequence[np.ndarray], spec: PatchSpec, *, batch_size: int, seed: int,
                    num_workers: int = 0) -> grain.IterDataset:
  """Infinite, shuffled, batched Grain dataset of `patches` examples, deterministic for a seed.

  Args:
    images: HR images (H_i, W_i, 3), each side >= spec.lr_size.
    spec: the PatchSpec.
    batch_size: crops per batch.
    seed: shuffling and sampling seed.
    num_workers: Grain worker processes (0 = in-process).

  Returns:
    IterDataset of dicts with a leading batch axis; its iterator is checkpointable.
  """
  small = [i for i, im in enumerate(images) if min(im.shape[:2]) < spec.lr_size]
  if small:
    raise ValueError(f"{len(small)} training images are smaller than data.lr_size={spec.lr_size} "
                     f"(first: index {small[0]}, {images[small[0]].shape[:2]})")
  return batched_dataset(FrameSource(images), lambda ft, rng: make_patch_example(ft[0], spec, rng),
                         batch_size=batch_size, seed=seed, num_workers=num_workers)
