"""The model registry: `config.model.name` -> the module file under inrsr/models that builds it.

Every registered model is a flax.linen module with a class attribute `batch_keys`, the batch entries its
`__call__` takes in order: ("lr", "coords", "lr_size") for SR-INR/VR-INR (fitting models queried at (x, y, t)),
("lr", "coords", "cells") for the generalising models (LIIF, HIIF, LIT/CLIT), which also expose `encode(lr)`
and `query(feats, coords, cells)` so inference runs the encoder once and the queries in chunks. Each model file
has `from_config(model_config)`, and may have `init_params(model, key)` (fresh parameters without running the
model; `init_params` below uses it). Imports are lazy, so importing one model does not import the others.

A generalising model may state a test-time cell rule, a method `cell_scale(lr_hw, out_hw)` returning the factor
its query cell (2 / W, 2 / H) is multiplied by for that upscale (HIIF: the official clipping x max(s / 4, 1));
`cell_scale` below reads it (1.0, no change, for every other model) and `inrsr.inference` applies it by default.
"""

from __future__ import annotations

import importlib

import ml_collections

# name -> module path; the module has `from_config`.
REGISTRY = {
    "srinr": "inrsr.models.srinr",
    "liif": "inrsr.models.liif",
    "hiif": "inrsr.models.hiif",
    "clit": "inrsr.models.clit",
    "bvsr_ik": "inrsr.models.bvsr_ik",
}
FITTING = ("srinr",)  # Fitted per image set or clip; queried at (x, y, t).
GENERALISING = ("liif", "hiif", "clit")  # Trained once on patches; queried at (x, y) with a cell.


def model_name(model_config) -> str:
  """The registered name of a config's `model` section ("srinr" when the section has no name)."""
  name = model_config.get("name", "srinr") if hasattr(model_config, "get") else "srinr"
  if name not in REGISTRY:
    raise ValueError(f"model.name={name!r} is not a registered model; expected one of {sorted(REGISTRY)}")
  return name


def from_config(model_config: ml_collections.ConfigDict):
  """Build the model a config's `model` section names.

  Args:
    model_config: the `model` section; `name` picks the model (default "srinr"), the other fields are the
      model's own (unknown fields are an error raised by the model's `from_config`).

  Returns:
    The flax module.
  """
  name = model_name(model_config)
  module = importlib.import_module(REGISTRY[name])
  fields = ml_collections.ConfigDict({k: v for k, v in model_config.items() if k != "name"})
  return module.from_config(fields)


def is_generalising(model) -> bool:
  """True for models queried with cells (LIIF, HIIF, CLIT): they have `encode` and `query`."""
  return tuple(getattr(model, "batch_keys", ())) == ("lr", "coords", "cells")


def cell_scale(model, lr_hw, out_hw) -> float:
  """The factor a model's test-time query cell is multiplied by for an (h, w) -> (H, W) upscale.

  The model's own rule (its `cell_scale(lr_hw, out_hw)` method, HIIF's official clipping), else 1.0: the cell
  stays (2 / W, 2 / H). The one place the rule is looked up; `inrsr.inference` applies it on every path.

  Args:
    model: a registered model.
    lr_hw: (h, w) of the LR.
    out_hw: (H, W) of the output.

  Returns:
    The factor (1.0 for models without a rule).
  """
  rule = getattr(type(model), "cell_scale", None)
  return 1.0 if rule is None else float(rule(model, tuple(lr_hw), tuple(out_hw)))


def example_inputs(model) -> tuple:
  """Small inputs for `model.init` (parameter shapes do not depend on their sizes)."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  keys = tuple(getattr(model, "batch_keys", ()))
  if keys == ("lr", "coords", "cells"):
    return jnp.zeros((1, 8, 8, 3)), jnp.zeros((1, 4, 2)), jnp.full((1, 4, 2), 0.25)
  if keys == ("lr", "coords", "lr_size"):
    return jnp.zeros((1, 8, 8, 3)), jnp.zeros((1, 4, 3)), jnp.full((1, 2), 8)
  if hasattr(model, "example_inputs"):
    return model.example_inputs()
  raise ValueError(f"{type(model).__name__} has no known batch_keys and no example_inputs()")


def init_params(model, key):
  """Fresh parameters of a model: its module's `init_params(model, key)` when the module has one, else
  `model.init` on `example_inputs(model)`, jitted (one compiled program instead of op-by-op dispatch), with
  every Conv/Dense layer redrawn as PyTorch would when the model's `param_init` is "torch" (the ported models).

  Args:
    model: a registered flax module.
    key: a JAX PRNG key.

  Returns:
    The `params` pytree.
  """
  import jax  # pylint: disable=g-import-not-at-top

  own = getattr(importlib.import_module(type(model).__module__), "init_params", None)
  if own is not None:
    return own(model, key)
  params = jax.jit(lambda k, *xs: model.init(k, *xs)["params"])(key, *example_inputs(model))
  if getattr(model, "param_init", "flax") == "torch":
    from inrsr.models import torch_init  # pylint: disable=g-import-not-at-top

    params = torch_init.reinit(params, jax.random.fold_in(key, 1))
  return params
