"""The model registry: `config.model.name` -> the module file under inrsr/models that builds it.

Every registered model is a flax.linen module with a class attribute `batch_keys`, the batch entries its
`__call__` takes in order: ("lr", "coords", "lr_size") for SR-INR/VR-INR (fitting models queried at (x, y, t)),
("lr", "coords", "cells") for the generalising models (LIIF, HIIF, LIT/CLIT), which also expose `encode(lr)`
and `query(feats, coords, cells)` so inference runs the encoder once and the queries in chunks. Each model file
has `from_config(model_config)`, and may have `init_params(model, key)` (fresh parameters without running the
model; `init_params` below uses it). Imports are lazy, so importing one model does not import the others.

A generalising model may state a test-time cell rule, a method `cell_scale(lr_hw, out_hw)` returning the factor
its query cell (2 / W, 2 / H) is multiplied by for that upscale (HIIF: the official clipping x max(s / 4, 1));
`cell_scale` below reads it (1.0, no change, for every other model) and `inrsr.infer.inference` applies it by default.
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol

import ml_collections

# name -> module path; the module has `from_config`.
REGISTRY = {
    "srinr": "inrsr.models.srinr",
    "liif": "inrsr.models.liif",
    "hiif": "inrsr.models.hiif",
    "clit": "inrsr.models.clit",
    "bvsr_ik": "inrsr.models.bvsr_ik",
}
DEFAULT_NAME = "srinr"  # a `model` section without a name (the first model of the project)
# The names results carry (`results_key`) and the labels tables and plots print for them.
LABELS = {"srinr": "SR-INR", "liif": "LIIF", "hiif": "HIIF", "lit": "LIT", "clit": "CLIT", "bvsr_ik": "BVSR-IK"}
FITTING = ("srinr",)  # Fitted per image set or clip; queried at (x, y, t).
GENERALISING = ("liif", "hiif", "clit")  # Trained once on patches; queried at (x, y) with a cell.


class ModelHooks(Protocol):
  """What a registered model declares beyond flax.linen's `init`/`apply`: `batch_keys`, and the optional hooks.

  Callers read the optional ones through `hook(model, name)` (a method or attribute of the model) and
  `module_hook(model, name)` (a function of the model's module), which return the default of `HOOK_DEFAULTS`
  / `MODULE_HOOK_DEFAULTS` when the model does not define it; a name declared in neither is an error, so no
  caller probes for an undeclared hook.

  Attributes:
    batch_keys: the batch entries `__call__` takes, in order (required): ("lr", "coords", "lr_size") for the
      fitting models, ("lr", "coords", "cells") for the generalising ones, ("lrs",) for whole-clip video models.
    queries_independent: False when a `query` call's outputs depend on every query of the call (HIIF's
      attention statistics); inference then computes the one-call result (default True).
    band_decoding: decodes whole rows with `query_band` (LIT/CLIT; default False).
    param_init: "torch" redraws Conv/Dense layers as PyTorch initialises them (the ports; default "flax").
    scale: the fixed integer scale of a whole-clip video model (BVSR-IK; default None).
  """

  batch_keys: tuple[str, ...]
  queries_independent: bool
  band_decoding: bool
  param_init: str
  scale: int | None

  def query_kwargs(self, lr_hw, out_hw) -> dict:
    """Static keyword arguments of `query` for an (h, w) -> (H, W) upscale (CLIT's stage scales)."""

  def cell_scale(self, lr_hw, out_hw) -> float:
    """The factor the test-time query cell is multiplied by (HIIF's official clipping)."""

  def training_loss(self, outputs: dict, batch: dict) -> tuple[Any, Any]:
    """(loss, prediction for the PSNR) of a model that trains on its own loss (`train.loss="model"`)."""

  def example_inputs(self) -> tuple:
    """Small inputs for `init`, for batch keys `example_inputs` below does not know."""


HOOK_DEFAULTS = {"queries_independent": True, "band_decoding": False, "param_init": "flax", "scale": None,
                 "query_kwargs": None, "cell_scale": None, "training_loss": None, "example_inputs": None}
# Functions a model's module may define: init_params(model, key) (fresh parameters without running the model);
# decode_global(model, variables, feats, chunks, queries) (every chunk's output, the statistics every query
# shares computed over all chunks first, for `queries_independent = False`); stream_clip(model, params, frames) (a
# whole-clip model's HR frames, yielded one at a time); kept_bytes(model, queries) (what decode_global holds
# between its passes).
MODULE_HOOK_DEFAULTS = {"init_params": None, "decode_global": None, "kept_bytes": None, "stream_clip": None}


def hook(model, name: str):
  """A model's optional hook `name` (declared in `ModelHooks`), or its declared default.

  Args:
    model: a registered model (a flax module, bound or not).
    name: a key of HOOK_DEFAULTS, or "batch_keys" (default ()).

  Returns:
    The model's attribute or bound method, or the default (None for an undefined method).
  """
  if name == "batch_keys":
    return tuple(getattr(model, "batch_keys", ()))
  if name not in HOOK_DEFAULTS:
    raise KeyError(f"{name!r} is not a declared model hook; declared: {sorted(HOOK_DEFAULTS)} (ModelHooks)")
  return getattr(model, name, HOOK_DEFAULTS[name])


def module_hook(model, name: str):
  """A function `name` of the model's module (declared in MODULE_HOOK_DEFAULTS), or None."""
  if name not in MODULE_HOOK_DEFAULTS:
    raise KeyError(f"{name!r} is not a declared module hook; declared: {sorted(MODULE_HOOK_DEFAULTS)}")
  return getattr(importlib.import_module(type(model).__module__), name, MODULE_HOOK_DEFAULTS[name])


def model_name(model_config) -> str:
  """The registered name of a config's `model` section ("srinr" when the section has no name)."""
  name = model_config.get("name", DEFAULT_NAME) if hasattr(model_config, "get") else DEFAULT_NAME
  if name not in REGISTRY:
    raise ValueError(f"model.name={name!r} is not a registered model; expected one of {sorted(REGISTRY)}")
  return name


def results_key(model_config) -> str:
  """The model name results carry: `lit` for a one-stage CLIT (LIT, the cascade's first stage), else model.name."""
  name = model_config.get("name", DEFAULT_NAME)
  return "lit" if name == "clit" and int(model_config.get("num_stages", 1)) == 1 else name


def label(key: str) -> str:
  """The name tables and plots print for a results `model` key (e.g. "lit" -> "LIT"; an unknown key as is)."""
  return LABELS.get(key, key)


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
  return hook(model, "batch_keys") == ("lr", "coords", "cells")


def cell_scale(model, lr_hw, out_hw) -> float:
  """The factor a model's test-time query cell is multiplied by for an (h, w) -> (H, W) upscale.

  The model's own rule (its `cell_scale(lr_hw, out_hw)` method, HIIF's official clipping), else 1.0: the cell
  stays (2 / W, 2 / H). The one place the rule is looked up; `inrsr.infer.inference` applies it on every path.

  Args:
    model: a registered model.
    lr_hw: (h, w) of the LR.
    out_hw: (H, W) of the output.

  Returns:
    The factor (1.0 for models without a rule).
  """
  rule = hook(model, "cell_scale")
  return 1.0 if rule is None else float(rule(tuple(lr_hw), tuple(out_hw)))


def example_inputs(model) -> tuple:
  """Small inputs for `model.init` (parameter shapes do not depend on their sizes)."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  keys = hook(model, "batch_keys")
  if keys == ("lr", "coords", "cells"):
    return jnp.zeros((1, 8, 8, 3)), jnp.zeros((1, 4, 2)), jnp.full((1, 4, 2), 0.25)
  if keys == ("lr", "coords", "lr_size"):
    return jnp.zeros((1, 8, 8, 3)), jnp.zeros((1, 4, 3)), jnp.full((1, 2), 8)
  own = hook(model, "example_inputs")
  if own is not None:
    return own()
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

  own = module_hook(model, "init_params")
  if own is not None:
    return own(model, key)
  params = jax.jit(lambda k, *xs: model.init(k, *xs)["params"])(key, *example_inputs(model))
  if hook(model, "param_init") == "torch":
    from inrsr.models import torch_init  # pylint: disable=g-import-not-at-top

    params = torch_init.reinit(params, jax.random.fold_in(key, 1))
  return params
