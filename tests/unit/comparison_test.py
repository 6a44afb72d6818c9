"""Tests for inrsr.evaluators.compare: rows from run and zero-shot results, union of scales, PSNR or SSIM, errors."""

import json

import numpy as np
import pytest

from inrsr.evaluators import compare, zero_shot


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
  (tmp_path / "zs.json").write_text(json.dumps(zero_shot.results(zs, metric="benchmark", budget="300")))
  table = compare.compare([tmp_path / "liif", tmp_path / "hiif.json", tmp_path / "zs.json"],
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
  table = compare.compare([(low, high)], tmp_path / "cmp.png", protocol="heldout:Set14")
  assert table.splitlines()[2:] == ["| bicubic | 30.30 | 26.10 | 24.30 |", "| HIIF (2400 steps) | 31.80 | 27.70 | 24.90 |"]
  with pytest.raises(ValueError, match="a second row labelled 'HIIF \\(2400 steps\\)'"):  # two runs, one label
    compare.compare([low, high], tmp_path / "cmp.png", protocol="heldout:Set14")
  with pytest.raises(ValueError, match="scales \\['2', '4'\\] are already in its group's row"):
    compare.compare([(low, low)], tmp_path / "cmp.png", protocol="heldout:Set14")
  other = tmp_path / "liif.json"
  other.write_text(json.dumps(run_results("liif", 2400, {"6.0": (24.5, 24.3)})))
  with pytest.raises(ValueError, match="labelled 'LIIF \\(2400 steps\\)', but its group is one run labelled 'HIIF"):
    compare.compare([(low, other)], tmp_path / "cmp.png", protocol="heldout:Set14")


def test_a_cumulative_schedule_is_labelled_by_every_stage_steps(tmp_path):
  clit = run_results("clit", 185, {"2.0": (30.9, 30.3)})
  clit["init_steps"] = [440, 175]
  (tmp_path / "clit.json").write_text(json.dumps(clit))
  table = compare.compare([tmp_path / "clit.json"], tmp_path / "cmp.png", protocol="heldout:Set14")
  assert table.splitlines()[-1] == "| CLIT (440 + 175 + 185 steps) | 30.90 |"
  clit["init_steps"] = None  # evaluated after the earlier stages' folders were deleted
  (tmp_path / "clit.json").write_text(json.dumps(clit))
  table = compare.compare([tmp_path / "clit.json"], tmp_path / "cmp.png", protocol="heldout:Set14")
  assert table.splitlines()[-1] == "| CLIT (? + 185 steps) | 30.90 |"


def test_compare_names_what_is_missing(tmp_path):
  run = tmp_path / "run.json"
  run.write_text(json.dumps(run_results("liif", 10, {"2.0": (30.0, 29.0)})))
  with pytest.raises(ValueError, match="no protocol 'heldout:Set5'"):
    compare.compare([run], tmp_path / "a.png", protocol="heldout:Set5")
  with pytest.raises(ValueError, match="no metric 'rgb'"):
    compare.compare([run], tmp_path / "a.png", protocol="heldout:Set14", metric="rgb")
  with pytest.raises(ValueError, match="a second row labelled 'LIIF \\(10 steps\\)'"):
    compare.compare([run, run], tmp_path / "a.png", protocol="heldout:Set14")
  with pytest.raises(FileNotFoundError, match="expected a run folder holding results.json"):
    compare.compare([tmp_path], tmp_path / "a.png", protocol="heldout:Set14")
  zs = tmp_path / "zs.json"
  zs.write_text(json.dumps(zero_shot.results({"Set5": {}}, metric="y", budget="60s")))
  with pytest.raises(ValueError, match="no set 'Set14'"):
    compare.compare([zs], tmp_path / "a.png", protocol="heldout:Set14")
  with pytest.raises(ValueError, match="scored with metric 'y', not 'benchmark'"):
    compare.compare([zs], tmp_path / "a.png", protocol="heldout:Set5")
  assert not (tmp_path / "a.png").exists()


def test_quantity_ssim_tables_the_mean_ssim_of_every_source(tmp_path):
  rng = np.random.default_rng(0)
  draw = lambda: {"psnr": float(rng.uniform(20, 35)), "ssim": float(rng.uniform(0.4, 1))}
  per_image = lambda: {f"im{i}.png": {"model": draw(), "bicubic": draw()} for i in range(3)}
  mean = lambda images, method, q: float(np.mean([im[method][q] for im in images.values()]))
  cell = lambda images: {"per_image": images, **{m: {q: mean(images, m, q) for q in ("psnr", "ssim")}
                                                  for m in ("model", "bicubic")}}
  run_images = {"2.0": per_image(), "6.0": per_image()}
  run = {"model": "hiif", "step": 2400,
         "protocols": {"heldout:Set14": {s: {"benchmark": cell(ims)} for s, ims in run_images.items()}}}
  zs_images = {"2": per_image(), "4": per_image()}
  zs = zero_shot.results({"Set14": {s: cell(ims) for s, ims in zs_images.items()}}, metric="benchmark",
                         budget="120s", model="liif")
  (tmp_path / "run.json").write_text(json.dumps(run))
  (tmp_path / "zs.json").write_text(json.dumps(zs))
  sources = [tmp_path / "run.json", tmp_path / "zs.json"]
  for quantity, fmt in (("ssim", "{:.4f}"), ("psnr", "{:.2f}")):
    want = lambda images, method: fmt.format(mean(images, method, quantity))  # pylint: disable=cell-var-from-loop
    table = compare.compare(sources, tmp_path / f"{quantity}.png", protocol="heldout:Set14", quantity=quantity)
    assert table.splitlines()[2:] == [  # bicubic from the first source with each scale: the run's x2 and x6
        f"| bicubic | {want(run_images['2.0'], 'bicubic')} | {want(zs_images['4'], 'bicubic')} | "
        f"{want(run_images['6.0'], 'bicubic')} |",
        f"| HIIF (2400 steps) | {want(run_images['2.0'], 'model')} | - | {want(run_images['6.0'], 'model')} |",
        f"| LIIF zero-shot (120s per image) | {want(zs_images['2'], 'model')} | {want(zs_images['4'], 'model')} | - |"]
  assert table == compare.compare(sources, tmp_path / "default.png", protocol="heldout:Set14")  # psnr by default


def test_quantity_is_checked_and_must_be_in_every_cell(tmp_path):
  run = tmp_path / "run.json"
  run.write_text(json.dumps(run_results("liif", 10, {"2.0": (30.0, 29.0)})))
  with pytest.raises(ValueError, match="quantity='lpips' is not one of \\['psnr', 'ssim'\\]"):
    compare.compare([run], tmp_path / "a.png", protocol="heldout:Set14", quantity="lpips")
  zs = tmp_path / "zs.json"  # zero-shot cells without SSIM
  zs.write_text(json.dumps(zero_shot.results(
      {"Set14": {"4": {"model": {"psnr": 25.0}, "bicubic": {"psnr": 26.1}, "per_image": {}}}},
      metric="benchmark", budget="300")))
  with pytest.raises(ValueError, match="zs.json: no 'ssim' at scales \\['4'\\] of 'heldout:Set14'"):
    compare.compare([run, zs], tmp_path / "a.png", protocol="heldout:Set14", quantity="ssim")
  assert not (tmp_path / "a.png").exists()
