"""Executes notebooks/model_surgery.ipynb top to bottom on CPU (nbclient) at `:small` size.

The notebook loads the run in $INRSR_NOTEBOOK_WORKDIR when it holds a checkpoint: the test points it at a copy of
conftest's `trained_run` (the same `srinr_demo:small` config the notebook trains), so no second training runs.
"""

import json
import re
import sys

import pytest

NOTEBOOK_PATH = ("notebooks", "model_surgery.ipynb")


def _outputs(cell) -> tuple[str, list[str]]:
  """A code cell's printed text (stdout and results) and the MIME types of its display outputs."""
  text, mimes = [], []
  for out in cell.get("outputs", []):
    if out.output_type == "stream" and out.name == "stdout":
      text.append(out.text)
    elif out.output_type in ("execute_result", "display_data"):
      text.append(out.data.get("text/plain", ""))
      mimes.extend(out.data)
  return "".join(text), mimes


def test_model_surgery_notebook_runs_on_cpu(tmp_path, monkeypatch, request, repo_root, trained_run_copy):
  nbformat = pytest.importorskip("nbformat", reason="nbformat is not installed (pip install -e .[test])")
  nbclient = pytest.importorskip("nbclient", reason="nbclient is not installed (pip install -e .[test])")
  pytest.importorskip("ipykernel", reason="ipykernel is not installed (pip install -e .[test])")
  # The optional converted-model cell reads the LIIF fixture under $INRSR_SHARED_DIR: the `shared` folder when
  # there is one; without it the rest of the notebook still runs, except under CI, where `shared` fails the test.
  try:
    shared = request.getfixturevalue("shared")
    monkeypatch.setenv("INRSR_SHARED_DIR", str(shared))
  except pytest.skip.Exception:
    shared = None

  # The stored notebook carries no outputs.
  notebook = repo_root.joinpath(*NOTEBOOK_PATH)
  nb = nbformat.read(notebook, as_version=4)
  assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code")

  # A kernelspec "python3" that starts this interpreter, found first (JUPYTER_PATH precedes the user's and the
  # environment's kernel folders): the kernel runs in the test's environment whatever else is registered.
  spec = tmp_path / "jupyter" / "kernels" / "python3"
  spec.mkdir(parents=True)
  (spec / "kernel.json").write_text(json.dumps({
      "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
      "display_name": "Python 3 (inrsr test)", "language": "python"}))
  monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))

  workdir = trained_run_copy  # a srinr_demo:small run of 20 steps: the notebook loads it instead of training
  before = sorted(p.relative_to(workdir) for p in workdir.rglob("*"))
  monkeypatch.setenv("INRSR_NOTEBOOK_WORKDIR", str(workdir))
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=900,
                                   resources={"metadata": {"path": str(notebook.parent)}})
  client.execute()  # Raises CellExecutionError (with the cell and traceback) on any error.

  code = [c for c in nb.cells if c.cell_type == "code"]
  assert all(c.execution_count for c in code)
  assert not any(o.output_type == "error" for c in code for o in c.outputs)
  texts, mimes = zip(*(_outputs(c) for c in code))
  printed = "\n".join(texts)
  assert "frozen check passed" in printed
  assert "'hash': {'tables': (4, 16384, 2)" in printed  # The parameter pytree's shapes.
  assert f"loading the run in {workdir}" in printed and "trained 20 steps" not in printed
  assert "SRINR restored at step 20" in printed
  # The PSNR table: bicubic and the three variants at x4.
  assert re.search(r"^x4(\s+\d+\.\d\d){4}\s*$", printed, re.M), printed
  figures = [i for i, m in enumerate(mimes) if "image/png" in m]
  assert len(figures) >= 2, f"expected the before/after images and the PSNR plot, got PNGs in cells {figures}"
  # The run was read where the test asked (not from the checkout's workdirs/) and left as it was.
  assert f"run folder: {workdir}" in printed
  assert sorted(p.relative_to(workdir) for p in workdir.rglob("*")) == before
  # The optional converted-model cell runs with the LIIF fixture; without ../shared, it says it skipped.
  if shared is not None:
    assert "LIIF is a flax module like SRINR: True; generalising: True" in printed
    assert len(figures) >= 3
  else:
    assert "skipped: no converted-model checkpoint" in printed
