"""VR-INR on one Vid4 clip, protocol `fit`: trained at x4 on the clip's LR/HR frames, evaluated on the same frames.

Evaluated at x2, x4, x8, x16, x32 and x2.5 (`benchmark`: Y channel, shave scale, and `full`), the temporal
error, and zero-shot denoising (Gaussian sigma 30 and 50, Poisson) at x4 and x8. Frames at native size as in
VR-INR; the paper's model and schedule (Adam 1e-4 halved every 100 epochs, 300 epochs).

  python -m experiments.train --config=vrinr_vid4:calendar --workdir=workdirs/vid4_calendar
  python -m experiments.evaluate --workdir=workdirs/vid4_calendar
Arguments (comma-separated): a clip (calendar, city, foliage, walk; default calendar); `robust` (the scale-robust
settings measured in RESULTS.md, "VR-INR on Vid4 calendar with the scale-robust settings", not in the papers:
a bicubic residual, 1 lattice cell on the code axes, training scales log-uniform in [1.5, 12];
`srinr_demo.scale_robust`); `cpu` (minutes on a CPU: 8 levels, T = 2^18, the first 10 frames resized to 256x256,
1500 steps of 4 x 2048 pixels, and `robust` with it); `small`. Without `cpu` or `robust` the config is the
papers' literal reading, trained at x4 only.
Data: $INRSR_DATA_DIR/Vid4/GT/<clip> (frames 00000000.png ...).
"""

from experiments.configs import common
from experiments.configs import srinr_demo

CLIPS = ("calendar", "city", "foliage", "walk")


def get_config(arg=None):
  c = common.base()
  c.data.update(source="frames", root="$INRSR_DATA_DIR/Vid4/GT/calendar", scale=4.0, batch_size=4,
                pixels_per_frame=4096)
  c.eval.update(scales=(2.0, 2.5, 4.0, 8.0, 16.0, 32.0), metrics=("benchmark", "full"), temporal=True,
                noise=(("gaussian", 30.0), ("gaussian", 50.0), ("poisson", 0.0)), noise_scales=(4.0, 8.0))
  flags, clip = common.parse_arg(arg, "vrinr_vid4", CLIPS, flags=("small", "cpu", "robust"))
  c.data.root = f"$INRSR_DATA_DIR/Vid4/GT/{clip or 'calendar'}"
  if "cpu" in flags:
    c.data.update(hr_size=256, limit=10, pixels_per_frame=2048)
    c.train.steps = 1500
  if flags & {"cpu", "robust"}:  # the measured CPU run (RESULTS.md) is the scale-robust one
    srinr_demo.scale_robust(c)
  common.finish(c, ",".join(sorted(flags - {"robust"})), "vrinr_vid4")
  return c
