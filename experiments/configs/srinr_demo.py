"""SR-INR on the photographs bundled with scikit-image (the embedded default; about 10 minutes on 2 CPU cores).

Protocol `fit` on central 128x128 crops of four photographs (each image at its own t, see `data.image_time`),
evaluated on the same crops at x2 .. x32 (`fit`) and on two photographs it never saw (`heldout`, t = 0).
Scale-robust settings, chosen by measurement (RESULTS.md; not in the papers): LR inputs at scales drawn
log-uniformly from [1.5, 12] (so x2 and x8 lie inside the trained range, each octave with an equal share)
rather than x4 alone, the output a residual on the LR's bicubic upsampling, and 1 lattice cell on the code axes
(the codes act through the learned corner weights only). The papers' literal reading:
--config.data.scale=4 --config.data.scale_max=0 --config.model.bicubic_residual=False
--config.model.code_resolution=0. The earlier default (uniform on [2, 8], RESULTS.md): --config.data.scale=2
--config.data.scale_max=8 --config.data.scale_sampling=uniform.

  python -m experiments.train --config=srinr_demo --workdir=workdirs/demo
  python -m experiments.evaluate --workdir=workdirs/demo
Quick check: --config=srinr_demo:small
"""

from experiments.configs import common


def scale_robust(c, scale_max: float = 12.0):
  """The scale-robust settings measured on this config (RESULTS.md; not in the papers).

  A bicubic residual, 1 lattice cell on the code axes and one training scale per example drawn log-uniformly
  from [1.5, scale_max]. Used by this config and by the `robust` argument of srinr_celeba, srinr_div2k,
  srinr_set5/14 and vrinr_vid4 (whose `cpu` implies it).

  Args:
    c: the config to change in place.
    scale_max: the top of the training range (12 here; the x32 configs keep their x32 inside it).

  Returns:
    c.
  """
  c.model.update(bicubic_residual=True, code_resolution=1)
  c.data.update(scale=1.5, scale_max=scale_max, scale_sampling="log")
  return c


def get_config(arg=None):
  c = common.base()
  c.model.update(num_levels=8, log2_table_size=16, n_min=16, n_max=128)
  c.data.update(source="bundled", names=("astronaut", "coffee", "chelsea", "rocket"), center_crop=128,
                pixels_per_frame=1024, batch_size=4)
  scale_robust(c)
  c.train.update(steps=2000, learning_rate=5e-3, decay_epochs=40, log_every=50, checkpoint_every=250)
  c.eval.update(scales=(2.0, 2.5, 4.0, 8.0, 16.0, 32.0), metrics=("benchmark", "full"))
  c.eval.heldout.update(source="bundled", names=("immunohistochemistry", "hubble_deep_field"), center_crop=128)
  flags, _ = common.parse_arg(arg, "srinr_demo", flags=("small",))
  if "small" in flags:
    common.shrink(c)
    c.eval.heldout.names = ("immunohistochemistry",)
  return c
