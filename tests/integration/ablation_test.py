"""The papers' ablations (`tools.ablation`): the plan of runs, the variations applied, resume, the extrapolation."""

import json
import pathlib

import numpy as np
import pytest

from experiments.configs import common, srinr_celeba_ablation
from inrsr import evaluators
from inrsr.train import checkpoints
from tools import ablation


def _tiny_config():
  c = common.shrink(common.base())
  c.model.update(num_levels=2, log2_table_size=8, n_min=4, n_max=8, hidden=8)
  c.data.update(source="bundled", names=("astronaut",), center_crop=32, scale=4.0, limit=0, batch_size=1,
                pixels_per_frame=64)
  c.train.update(steps=3, log_every=1, checkpoint_every=3, learning_rate=1e-2)
  c.eval.metrics = ("full",)
  return c


def test_plan_shares_the_base_run_and_adds_the_base_value():
  c = srinr_celeba_ablation.get_config("cpu")
  plan = ablation.planned_runs(c, ["table_size", "n_min", "attention"])
  assert [v for _, v, _ in plan["table_size"]] == [14, 16, 18, 20]
  assert [n for _, v, n in plan["table_size"] if v == 18] == ["base"]  # cpu_model's T = 2^18
  assert [n for _, v, n in plan["n_min"] if v == 16] == ["base"]
  assert [n for _, v, n in plan["attention"]] == ["base", "model.top_down_attention=False"]
  c.model.n_min = 3  # a base value outside the table's values is added as the base run
  assert [(v, n) for _, v, n in ablation.planned_runs(c, ["n_min"])["n_min"]][-1] == (3, "base")


def test_unknown_table_and_field_are_named():
  c = _tiny_config()
  with pytest.raises(ValueError, match=r"'colour'.*known: \['weight_norm'"):
    ablation.planned_runs(c, ["colour"])
  with pytest.raises(ValueError, match=r"model.widht"):
    ablation.variant(c, "model.widht", 3)
  c.data.protocol = "internal"
  with pytest.raises(ValueError, match="data.protocol='internal'"):
    ablation.run_ablation(c, "/nonexistent/never/made", ["loss"])


def test_variant_changes_one_field_of_a_copy():
  c = _tiny_config()
  v = ablation.variant(c, "model.features", 4)
  assert v.model.features == 4 and c.model.features == 2
  v.model.features = 2
  assert v.to_dict() == c.to_dict()


def test_extrapolation_hand_worked():
  # The last three points lie on 24 + (x - 16): 32 dB at 24. The first two are off the line and not used.
  x = [14, 15, 16, 17, 18]
  y = [10.0, 30.0, 24.0, 25.0, 26.0]
  assert ablation.extrapolate(x, y, 24.0) == pytest.approx(32.0)
  assert ablation.extrapolate(list(reversed(x)), list(reversed(y)), 24.0) == pytest.approx(32.0)
  with pytest.raises(ValueError, match="at least 2"):
    ablation.extrapolate([14], [20.0], 24.0)


def test_ablation_runs_each_value_scores_it_and_resumes(tmp_path, monkeypatch):
  title, field, _ = ablation.TABLES["table_size"]
  monkeypatch.setitem(ablation.TABLES, "table_size", (title, field, (8, 10, 11)))
  c = _tiny_config()
  results = ablation.run_ablation(c, tmp_path, ["table_size", "loss"], progress=False)
  sizes = {r["value"]: r for r in results["tables"]["table_size"]}
  assert sorted(sizes) == [8, 10, 11]
  # Only the hash tables grow with T: L levels x (T' - T) rows x F features more parameters.
  for log2_t, r in sizes.items():
    assert r["params"] - sizes[8]["params"] == 2 * (2 ** log2_t - 2 ** 8) * 2
  assert sizes[8]["run"] == "base"
  loss_rows = {r["value"]: r for r in results["tables"]["loss"]}
  assert loss_rows["pea"]["run"] == "base" and loss_rows["pea"] == {**sizes[8], "field": "train.loss",
                                                                  "value": "pea"}
  assert checkpoints.load_config(tmp_path / "train.loss=mse").train.loss == "mse"
  assert checkpoints.load_config(tmp_path / "base").train.loss == "pea"
  # The row is the run's own evaluation at the trained scale, protocol fit.
  stored = json.loads((tmp_path / "train.loss=mse" / evaluators.RESULTS_JSON).read_text())
  assert loss_rows["mse"]["psnr"] == stored["protocols"]["fit"]["4"]["full"]["model"]["psnr"]
  assert loss_rows["mse"]["step"] == 3 and np.isfinite(loss_rows["mse"]["psnr"])
  assert loss_rows["mse"]["psnr"] != loss_rows["pea"]["psnr"]  # two trainings, not one scored twice
  assert (tmp_path / ablation.CAPACITY_PNG).stat().st_size > 0
  md = (tmp_path / ablation.RESULTS_MD).read_text()
  best = max(r["psnr"] for r in sizes.values())
  assert f"**{best:.2f} / " in md and "| 8 (base) |" in md
  # Started again, nothing trains: the checkpoints are untouched and the results are the same.
  stamps = {p: p.stat().st_mtime_ns for p in pathlib.Path(tmp_path).rglob("*") if p.is_file()}
  again = ablation.run_ablation(c, tmp_path, ["table_size", "loss"], progress=False)
  assert again == results
  changed = [p for p, t in stamps.items() if p.stat().st_mtime_ns != t]
  assert all(p.parent == tmp_path for p in changed), changed  # only the ablation's own summary files
