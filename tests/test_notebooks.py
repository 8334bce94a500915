"""The example notebooks run from top to bottom (so they cannot rot)."""

from __future__ import annotations

import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_viewpoint_editing_notebook_runs(monkeypatch, tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    pytest.importorskip("matplotlib")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("RAYCOND_DETECTOR_URL_VGG16", "file://" + str(tmp_path / "no-vgg16.pkl"))  # offline path
    nb = nbformat.read(os.path.join(ROOT, "notebooks", "viewpoint_editing.ipynb"), as_version=4)
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": os.path.join(ROOT, "notebooks")}})
    client.execute()
    outputs = "".join(o.get("text", "") for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs)
    assert "estimated camera: yaw" in outputs and "PSNR vs true views" in outputs
