"""VR-INR on one Vid4 clip, protocol `internal`: no HR frame is used in training.

The clip's LR frames (x4 bicubic of the HR) are the training targets and their own x4 downscaling the inputs;
the model is then applied to the LR frames and scored against the real HR frames.

  python -m experiments.train --config=vrinr_vid4_internal:calendar --workdir=workdirs/vid4_internal
  python -m experiments.evaluate --workdir=workdirs/vid4_internal
Arguments as vrinr_vid4 (clip, `robust`, `cpu`, `small`).
"""

from experiments.configs import vrinr_vid4


def get_config(arg=None):
  c = vrinr_vid4.get_config(arg)
  c.data.update(protocol="internal", internal_scale=4.0)
  return c
