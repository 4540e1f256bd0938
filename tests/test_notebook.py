"""notebooks/review.ipynb runs end to end on the offline policy (fetch, run, report, review)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "review.ipynb"


def test_notebook_is_stored_without_outputs():
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None


@pytest.mark.slow
def test_review_notebook_runs(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipywidgets")
    pytest.importorskip("ipykernel")
    try:
        from proteus.datasets._loaders import _package_dir

        _package_dir("cptac", "cptac==0.4.1")
    except Exception as ex:  # the dataset's source package is missing
        pytest.skip(str(ex))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=1200, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError with the failing cell's traceback

    run = tmp_path / "runs" / "ucec"
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "finished" and info["policy"] == "heuristic"
    assert (run / "report.html").exists()
    hyps = [line for line in (run / "hypotheses.jsonl").read_text().splitlines() if line.strip()]
    if hyps:
        recs = [json.loads(line) for line in (run / "reviews.jsonl").read_text().splitlines()]
        assert [r["action"] for r in recs] == ["accept", "score", "comment"]
        assert all(r["reviewer"] == "tutorial" for r in recs)
    # the Review cell displayed a widget, not an error
    review_cell = next(c for c in nb.cells if c.cell_type == "code" and c.source.strip().endswith("\nrv"))
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in review_cell.outputs)
