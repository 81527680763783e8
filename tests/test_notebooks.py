"""The notebooks run top to bottom on a CPU, and are kept without outputs.

Each notebook reads its sizes from `PIXELBERT_NB_*` environment variables; the test
makes them tiny, so the quickstart's pre-training and VQA runs take a step or two.
The kernel is the `python3` kernel of the interpreter running the tests (ipykernel,
from the "test" extra, installs that kernelspec into the environment), checked below.
Outputs are not saved: a run's figures and numbers would make every diff noisy and
the stored numbers stale; Colab users run the cells themselves.
"""

import os
import sys

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import REPO

NOTEBOOKS = ("quickstart.ipynb", "data_inspection.ipynb")
CELL_TIMEOUT_S = 600
# Tiny runs: a world of 48 images at 64 px, two steps of each training run.
TINY = {
    "WORLD_IMAGES": 48, "IMAGE_SIDE": 64, "BATCH_SIZE": 8, "BACKBONE_STEPS": 2,
    "BACKBONE_SCENES": 8, "PRETRAIN_STEPS": 2, "VQA_STEPS": 2, "EVAL_BATCHES": 1,
    "SHOWN": 2,
}


def _read(name: str) -> nbformat.NotebookNode:
  return nbformat.read(os.path.join(REPO, "notebooks", name), as_version=4)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_saved_without_outputs(name):
  notebook = _read(name)
  nbformat.validate(notebook)
  for index, cell in enumerate(notebook.cells):
    if cell.cell_type == "code":
      assert not cell.outputs, f"{name}: cell {index} has saved outputs"
      assert cell.execution_count is None, f"{name}: cell {index} has an execution count"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_runs_top_to_bottom(name, tmp_path, monkeypatch):
  for setting, value in TINY.items():
    monkeypatch.setenv(f"PIXELBERT_NB_{setting}", str(value))
  monkeypatch.setenv("PIXELBERT_NB_WORKDIR", str(tmp_path / "workdir"))
  # One CPU device, as on a laptop or Colab's CPU (conftest asks the tests for 8).
  monkeypatch.setenv("XLA_FLAGS", "")
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  notebook = _read(name)
  # Not saved: checks that the kernel runs this interpreter, not another python3.
  notebook.cells.insert(0, nbformat.v4.new_code_cell(
      "import os, sys\n"
      f"assert os.path.realpath(sys.prefix) == {os.path.realpath(sys.prefix)!r}, "
      "sys.executable"))
  client = NotebookClient(notebook, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                          resources={"metadata": {"path": REPO}})
  client.execute()  # raises CellExecutionError, with the cell and its traceback
  if name == "quickstart.ipynb":
    workdir = tmp_path / "workdir"
    for run in ("pretrain", "vqa"):
      assert (workdir / run / "checkpoints" / "2").is_dir(), run
    assert (workdir / "attention" / "grid.png").is_file()
