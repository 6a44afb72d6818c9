"""Tests for the Grain training pipeline: determinism, resumable iterator state, and the degradation rule."""

import threading
import time

import numpy as np
import PIL.Image
import pytest
import skimage.data

from inrsr import coords, resize
from inrsr.data import images, pipeline


@pytest.fixture(scope="module")
def frames():
  return [images.center_crop(images.bundled_image(n), 96) for n in ("astronaut", "coffee")] + [
      images.bundled_image("chelsea")[:80, :120]]


def _spec(frames, **kw):
  args = dict(scale_min=4.0, scale_max=4.0, pixels=64, crop=0, augment=False)
  args.update(kw)
  return pipeline.ExampleSpec(**args, lr_pad=pipeline.lr_pad_shape(frames, args["scale_min"], args["crop"]))


def _take(ds, n):
  it = iter(ds)
  return [next(it) for _ in range(n)]


def test_same_seed_same_batches_other_seed_other_batches(frames):
  spec = _spec(frames, scale_max=8.0)
  a = _take(pipeline.training_dataset(frames, spec, batch_size=2, seed=3), 4)
  b = _take(pipeline.training_dataset(frames, spec, batch_size=2, seed=3), 4)
  c = _take(pipeline.training_dataset(frames, spec, batch_size=2, seed=4), 4)
  for x, y in zip(a, b):
    for k in x:
      np.testing.assert_array_equal(x[k], y[k])
  assert any(not np.array_equal(x["coords"], y["coords"]) for x, y in zip(a, c))


def test_iterator_state_resumes_exactly(frames):
  it = iter(pipeline.training_dataset(frames, _spec(frames), batch_size=2, seed=0))
  next(it)
  state = it.get_state()
  want = [next(it) for _ in range(3)]
  it2 = iter(pipeline.training_dataset(frames, _spec(frames), batch_size=2, seed=0))
  it2.set_state(state)
  for w in want:
    np.testing.assert_array_equal(next(it2)["rgb"], w["rgb"])


def test_pairs_obey_degradation_rule(frames):
  spec = _spec(frames)
  batch = _take(pipeline.training_dataset(frames, spec, batch_size=3, seed=1), 1)[0]
  assert batch["lr"].shape == (3,) + spec.lr_pad + (3,)
  for b in range(3):
    h, w = batch["lr_size"][b]
    # Identify the frame by its LR, which must be exactly the mod-cropped bicubic downsampling.
    matches = [f for f in frames if resize.downsample(f, 4.0)[0].shape[:2] == (h, w)
               and np.allclose(resize.downsample(f, 4.0)[0], batch["lr"][b, :h, :w], atol=1e-6)]
    assert len(matches) == 1
    lr, hr = resize.downsample(matches[0], 4.0)
    # Padding repeats the edge.
    np.testing.assert_array_equal(batch["lr"][b, h:, :w], np.broadcast_to(lr[-1:], batch["lr"][b, h:, :w].shape))
    # Each coordinate is an HR pixel centre of the cropped HR, and rgb is that pixel.
    xs, ys = batch["coords"][b, :, 0], batch["coords"][b, :, 1]
    cols = np.round(((xs + 1) * hr.shape[1] - 1) / 2).astype(int)
    rows = np.round(((ys + 1) * hr.shape[0] - 1) / 2).astype(int)
    np.testing.assert_allclose(coords.pixel_coords(rows, cols, *hr.shape[:2]), batch["coords"][b], atol=1e-6)
    np.testing.assert_array_equal(batch["rgb"][b], hr[rows, cols])
    assert len(set(zip(rows, cols))) == spec.pixels  # without replacement


def _pillow_bicubic(image, height, width):
  """Pillow's antialiased BICUBIC resize in float mode ("F", no 8-bit rounding), channel by channel."""
  return np.stack([np.asarray(PIL.Image.fromarray(np.ascontiguousarray(image[..., k], np.float32))
                              .resize((width, height), PIL.Image.BICUBIC)) for k in range(image.shape[-1])], -1)


def test_internal_frames_are_pillow_bicubic_of_the_whole_frame():
  photo = skimage.data.chelsea()[:97, :100].astype(np.float32) / 255.0
  flat = np.full((20, 31, 3), 0.25, np.float32)
  lr_photo, lr_flat = pipeline.internal_frames([photo, flat], 3.0)
  # 97 x 100 at x3: the whole frame (no mod-crop, so the LR covers the frame at every scale) to 32 x 33.
  assert lr_photo.shape == (32, 33, 3) and lr_flat.shape == (6, 10, 3)
  np.testing.assert_allclose(lr_photo, _pillow_bicubic(photo, 32, 33), rtol=0, atol=1e-5)
  # The literal SR degradation stays available: the HR mod-cropped to 96 x 99 (top-left) first.
  lr_crop, = pipeline.internal_frames([photo], 3.0, modcrop=True)
  np.testing.assert_allclose(lr_crop, _pillow_bicubic(photo[:96, :99], 32, 33), rtol=0, atol=1e-5)
  np.testing.assert_allclose(lr_flat, 0.25, rtol=0, atol=1e-6)  # a constant image stays constant
  assert [f.shape[:2] for f in pipeline.internal_frames([photo], 2.5)] == [(38, 40)]  # floor(97/2.5), floor(100/2.5)


def test_internal_protocol_never_sees_hr(frames):
  lr_frames = pipeline.internal_frames(frames, 2.0)
  assert [f.shape[:2] for f in lr_frames] == [(48, 48), (48, 48), (40, 60)]
  spec = _spec(lr_frames, scale_min=2.0, scale_max=2.0)
  batch = _take(pipeline.training_dataset(lr_frames, spec, batch_size=2, seed=0), 1)[0]
  # LR of the LR: frames are 96x96, 96x96, 80x120 -> LR 48x48, 48x48, 40x60 -> inputs padded to 24x30.
  assert batch["lr"].shape[1:3] == (24, 30)
  assert sorted(map(tuple, batch["lr_size"])) in ([(20, 30), (24, 24)], [(24, 24), (24, 24)], [(20, 30), (20, 30)])


def test_crops_and_augmentation_shapes(frames):
  spec = _spec(frames, crop=48, augment=True, scale_max=6.0)
  batch = _take(pipeline.training_dataset(frames, spec, batch_size=3, seed=0), 2)[1]
  assert batch["lr"].shape == (3, 12, 12, 3)
  assert np.all(batch["lr_size"] <= 12) and np.all(batch["scale"] >= 4.0) and np.all(batch["scale"] <= 6.0)


def test_scale_sampling_shares_by_hand():
  # On [2, 8], x4 is the geometric middle: log-uniform puts half the draws below it, uniform a third.
  rng = np.random.default_rng(0)
  for sampling, below_4, below_2_83 in (("log", 1 / 2, 1 / 4), ("uniform", 1 / 3, (2.828 - 2) / 6)):
    s = np.array([pipeline.draw_scale(2.0, 8.0, sampling, rng) for _ in range(20000)])
    assert s.min() >= 2.0 and s.max() <= 8.0
    assert abs(np.mean(s < 4.0) - below_4) < 0.015, sampling
    assert abs(np.mean(s < 2.828) - below_2_83) < 0.015, sampling
  assert pipeline.draw_scale(3.0, 3.0, "log", rng) == 3.0


def test_log_sampled_examples_use_their_scale(frames):
  spec = _spec(frames, scale_min=2.0, scale_max=8.0, scale_sampling="log")
  scales = [float(pipeline.make_example(frames[0], 0.0, spec, np.random.default_rng(i))["scale"])
            for i in range(400)]
  assert abs(np.mean(np.array(scales) < 4.0) - 0.5) < 0.08


@pytest.mark.parametrize("kw,match", [(dict(scale_min=0.0, scale_max=0.0), "scale_min"),
                                      (dict(scale_sampling="geometric"), "data.scale_sampling='geometric'"),
                                      (dict(scale_min=float("nan"), scale_max=2.0), "scale_min"),
                                      (dict(scale_min=0.5, scale_max=2.0), "scale_min=0.5 must be .* >= 1"),
                                      (dict(pixels=0), "pixels_per_frame")])
def test_bad_spec(kw, match):
  args = dict(scale_min=4.0, scale_max=4.0, pixels=64, crop=0, augment=False, lr_pad=(8, 8))
  args.update(kw)
  with pytest.raises(ValueError, match=match):
    pipeline.ExampleSpec(**args)


def test_frame_smaller_than_crop_is_an_error(frames):
  spec = _spec(frames, crop=200)
  with pytest.raises(ValueError, match="smaller than the crop"):
    pipeline.make_example(frames[0], 0.0, spec, np.random.default_rng(0))


def test_the_iterator_makes_a_few_batches_ahead_not_hundreds():
  """One batch taken, then a pause: the prefetch threads stop at READ_OPTIONS's buffer (Grain's default fills
  500 batches with 16 threads, which a short run never uses and which slowed the step's tracing 4-10 times).
  With these options 9 batches are made: the one taken and 8 in the buffer."""
  made = []
  lock = threading.Lock()

  def make(item, rng):
    with lock:
      made.append(1)
    return {"x": np.full((2,), rng.integers(1 << 20), np.int64)}

  it = iter(pipeline.batched_dataset(pipeline.FrameSource([np.zeros((4, 4, 3))] * 3), make, batch_size=2, seed=0,
                                     shard=(0, 1)))
  first = next(it)
  assert first["x"].shape == (2, 2)
  time.sleep(1.0)
  ahead = pipeline.READ_OPTIONS.prefetch_buffer_size + pipeline.READ_OPTIONS.num_threads + 1
  assert 2 <= len(made) <= 2 * ahead, len(made)
