"""Tests for the evaluator registry (`inrsr.evaluators`): lookup, model -> evaluator, kind of old files, rendering."""

import json
import pathlib

import pytest

from experiments.configs import bvsr_ik_train291, liif_train291, srinr_demo
from inrsr import evaluators, models
from inrsr.evaluators import compare, schema

RUNS = pathlib.Path(__file__).resolve().parents[2] / "results" / "runs"


def test_an_unknown_evaluator_names_the_known_ones():
  with pytest.raises(ValueError, match=r"evaluator 'nope' is not registered; expected one of \['blind', 'frames', "
                                       r"'zero_shot'\]"):
    evaluators.get("nope")
  for kind in evaluators.EVALUATORS:
    assert evaluators.get(kind).KIND == kind


@pytest.mark.parametrize("get_config,kind", [(bvsr_ik_train291.get_config, "blind"),
                                             (liif_train291.get_config, "frames"),
                                             (srinr_demo.get_config, "frames")])
def test_a_model_is_scored_by_the_evaluator_of_its_kind(get_config, kind):
  assert evaluators.for_model(models.from_config(get_config("small").model)) == kind


@pytest.mark.parametrize("name,kind,first_line", [
    ("bvsr_ik_train291_1k.json", "blind", "| method | "),  # written before `kind`: `protocol: "blind"`
    ("liif_train291.json", "frames", "### protocol `heldout:Set14` (14 frames, step 4000)"),
    ("zeroshot_srinr_set14_x2_300steps.json", "zero_shot", "Zero-shot upscaling (protocol `internal`)")])
def test_kept_results_are_read_and_rendered_by_their_kind(name, kind, first_line):
  results = compare.load_results(RUNS / name)
  assert schema.kind_of(results) == kind
  assert evaluators.markdown(results).startswith(first_line)
  assert schema.kind_of({**results, "kind": kind}) == kind  # the new field, where a file has it, is what counts


def test_compare_refuses_blind_results(tmp_path):
  assert "kind" not in json.loads((RUNS / "bvsr_ik_train291_1k.json").read_text())  # an old file, read by `protocol`
  with pytest.raises(ValueError, match="blind results .* have no per-scale rows"):
    compare.compare([RUNS / "bvsr_ik_train291_1k.json"], tmp_path / "a.png", protocol="heldout:Set14")
