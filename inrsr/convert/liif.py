"""Official LIIF checkpoints (yinboc/liif `train_liif.py` format) -> inrsr LIIF config and flax params.

Choices:
  * Sizes come from the state_dict, never from presets: EDSR's blocks and width, RDN's D (number of
    `encoder.RDBs.{i}`), C (number of `encoder.RDBs.0.convs.{j}`), G (out-channels of the first dense conv), G0
    and the SFENet kernel size, and the MLP's hidden widths. `res_scale` (not visible in shapes) comes from the
    encoder args, with the official factory's default (1 for 'edsr-baseline', 0.1 for 'edsr').
  * The official 'edsr' encoder (32 blocks, 256 wide) has the same layout as 'edsr-baseline' and becomes
    encoder "edsr-baseline" with its sizes and res_scale.
  * EDSR's unused MeanShift keys (`encoder.sub_mean.*`, `encoder.add_mean.*`) are dropped; any other key the
    model does not use, and any shape that differs from the model built from the inferred config, is a
    ValueError naming it.
"""

from __future__ import annotations

from inrsr.convert import common
from inrsr.models import liif

ARG_KEYS = {"encoder_spec", "imnet_spec", "local_ensemble", "feat_unfold", "cell_decode"}


def convert(checkpoint: dict) -> tuple[dict, dict]:
  """An official LIIF checkpoint -> (inrsr model config, flax params).

  Args:
    checkpoint: the loaded `.pth` (`inrsr.convert.pth.load`): {'model': {'name': 'liif', 'args', 'sd'}, ...}.

  Returns:
    (config, params): config is a plain dict of `inrsr.models.liif.LIIF` fields plus "name": "liif"; params is
    the flax params pytree (float32 NumPy arrays) for `model.apply({"params": params}, ...)`.

  Raises:
    ValueError: not a LIIF checkpoint, an unsupported encoder or an encoder with an upsampler, missing or
      unexpected keys, or shapes that do not fit together.
  """
  args, sd = common.official_spec(checkpoint, "liif", "LIIF")
  unknown = sorted(set(args) - ARG_KEYS)
  if unknown:
    raise ValueError(f"unknown LIIF args {unknown}; expected encoder_spec, imnet_spec and the three flags")
  encoder, enc_params, enc_fields = common.encoder(args, sd, "LIIF")

  n_linear = common.count_indexed(sd, r"imnet\.layers\.(\d+)\.weight")
  if n_linear == 0 or n_linear % 2 != 1:
    raise ValueError("state_dict has no imnet.layers.{0,2,...}.weight ending on a Linear: not LIIF's MLP")
  linears = [common.dense(sd, f"imnet.layers.{j}", "LIIF MLP") for j in range(0, n_linear, 2)]
  hidden = [int(p["kernel"].shape[1]) for p in linears[:-1]]
  imnet_args = (args.get("imnet_spec") or {}).get("args") or {}
  if "hidden_list" in imnet_args and list(imnet_args["hidden_list"]) != hidden:
    raise ValueError(f"imnet args hidden_list {imnet_args['hidden_list']} differs from the weights' {hidden}")

  config = {"name": "liif", "encoder": encoder, "encoder_args": enc_fields, "hidden_list": hidden}
  for flag in ("local_ensemble", "feat_unfold", "cell_decode"):
    config[flag] = bool(args.get(flag, True))
  params = {"encoder_net": enc_params, **{f"imnet_{j}": p for j, p in enumerate(linears)}}

  used = common.encoder_prefixes(encoder, enc_fields) | {f"imnet.layers.{2 * j}" for j in range(len(linears))}
  common.check_unused(sd, used, f"{encoder} LIIF")
  common.check_shapes(liif.from_config(config), params, "LIIF")
  return config, params
