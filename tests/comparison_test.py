"""Tests for inrsr.comparison: rows from run results and zero-shot results, union of scales, errors."""

import json

import pytest

from inrsr import comparison


def run_results(model, step, cells):
  """An evaluate_run results dict for protocol heldout:Set14, {scale: (model PSNR, bicubic PSNR)}."""
  by_scale = {s: {"benchmark": {"model": {"psnr": m, "ssim": 0.9}, "bicubic": {"psnr": b, "ssim": 0.8}}}
              for s, (m, b) in cells.items()}
  return {"model": model, "step": step, "protocols": {"heldout:Set14": by_scale}}


def test_compare_writes_every_row_over_the_union_of_scales(tmp_path):
  (tmp_path / "liif").mkdir()
  (tmp_path / "liif" / "results.json").write_text(json.dumps(run_results("liif", 4000, {"2.0": (31.5, 30.3),
                                                                                        "3.0": (28.4, 27.6)})))
  (tmp_path / "hiif.json").write_text(json.dumps(run_results("hiif", 2400, {"2.0": (31.8, 30.3),
                                                                            "6.0": (24.1, 23.9)})))
  zs = {"Set14": {"2": {"model": {"psnr": 30.9}, "bicubic": {"psnr": 30.3}, "per_image": {}},
                  "4": {"model": {"psnr": 25.0}, "bicubic": {"psnr": 26.1}, "per_image": {}}},
        "Set5": {"2": {"model": {"psnr": 1.0}, "bicubic": {"psnr": 1.0}, "per_image": {}}}}
  (tmp_path / "zs.json").write_text(json.dumps(comparison.zero_shot_results(zs, metric="benchmark", budget="300")))
  table = comparison.compare([tmp_path / "liif", tmp_path / "hiif.json", tmp_path / "zs.json"],
                             tmp_path / "cmp.png", protocol="heldout:Set14")
  assert table.splitlines() == [
      "| method | x2 | x3 | x4 | x6 |", "|---|---|---|---|---|",
      "| bicubic | 30.30 | 27.60 | 26.10 | 23.90 |",
      "| LIIF (4000 steps) | 31.50 | 28.40 | - | - |",
      "| HIIF (2400 steps) | 31.80 | - | - | 24.10 |",
      "| SR-INR zero-shot (300 steps per image) | 30.90 | - | 25.00 | - |"]
  assert (tmp_path / "cmp.png").stat().st_size > 1000


def test_compare_merges_one_run_evaluated_at_other_scales(tmp_path):
  low, high = tmp_path / "x2_x4.json", tmp_path / "x6.json"
  low.write_text(json.dumps(run_results("hiif", 2400, {"2.0": (31.8, 30.3), "4.0": (27.7, 26.1)})))
  high.write_text(json.dumps(run_results("hiif", 2400, {"6.0": (24.9, 24.3)})))
  table = comparison.compare([(low, high)], tmp_path / "cmp.png", protocol="heldout:Set14")
  assert table.splitlines()[2:] == ["| bicubic | 30.30 | 26.10 | 24.30 |", "| HIIF (2400 steps) | 31.80 | 27.70 | 24.90 |"]
  with pytest.raises(ValueError, match="a second row labelled 'HIIF \\(2400 steps\\)'"):  # two runs, one label
    comparison.compare([low, high], tmp_path / "cmp.png", protocol="heldout:Set14")
  with pytest.raises(ValueError, match="scales \\['2', '4'\\] are already in its group's row"):
    comparison.compare([(low, low)], tmp_path / "cmp.png", protocol="heldout:Set14")
  other = tmp_path / "liif.json"
  other.write_text(json.dumps(run_results("liif", 2400, {"6.0": (24.5, 24.3)})))
  with pytest.raises(ValueError, match="labelled 'LIIF \\(2400 steps\\)', but its group is one run labelled 'HIIF"):
    comparison.compare([(low, other)], tmp_path / "cmp.png", protocol="heldout:Set14")


def test_a_cumulative_schedule_is_labelled_by_every_stage_steps(tmp_path):
  clit = run_results("clit", 185, {"2.0": (30.9, 30.3)})
  clit["init_steps"] = [440, 175]
  (tmp_path / "clit.json").write_text(json.dumps(clit))
  table = comparison.compare([tmp_path / "clit.json"], tmp_path / "cmp.png", protocol="heldout:Set14")
  assert table.splitlines()[-1] == "| CLIT (440 + 175 + 185 steps) | 30.90 |"
  clit["init_steps"] = None  # evaluated after the earlier stages' folders were deleted
  (tmp_path / "clit.json").write_text(json.dumps(clit))
  table = comparison.compare([tmp_path / "clit.json"], tmp_path / "cmp.png", protocol="heldout:Set14")
  assert table.splitlines()[-1] == "| CLIT (? + 185 steps) | 30.90 |"


def test_compare_names_what_is_missing(tmp_path):
  run = tmp_path / "run.json"
  run.write_text(json.dumps(run_results("liif", 10, {"2.0": (30.0, 29.0)})))
  with pytest.raises(ValueError, match="no protocol 'heldout:Set5'"):
    comparison.compare([run], tmp_path / "a.png", protocol="heldout:Set5")
  with pytest.raises(ValueError, match="no metric 'rgb'"):
    comparison.compare([run], tmp_path / "a.png", protocol="heldout:Set14", metric="rgb")
  with pytest.raises(ValueError, match="a second row labelled 'LIIF \\(10 steps\\)'"):
    comparison.compare([run, run], tmp_path / "a.png", protocol="heldout:Set14")
  with pytest.raises(FileNotFoundError, match="expected a run folder holding results.json"):
    comparison.compare([tmp_path], tmp_path / "a.png", protocol="heldout:Set14")
  zs = tmp_path / "zs.json"
  zs.write_text(json.dumps(comparison.zero_shot_results({"Set5": {}}, metric="y", budget="60s")))
  with pytest.raises(ValueError, match="no set 'Set14'"):
    comparison.compare([zs], tmp_path / "a.png", protocol="heldout:Set14")
  with pytest.raises(ValueError, match="scored with metric 'y', not 'benchmark'"):
    comparison.compare([zs], tmp_path / "a.png", protocol="heldout:Set5")
  assert not (tmp_path / "a.png").exists()
