"""The notebooks run top to bottom in a fresh kernel of this interpreter and show results.

Each notebook is executed as Jupyter would (working directory ``notebooks/``) with
``SOMPROBE_NOTEBOOK_OUT`` pointing at a temporary folder, so nothing is written into the
checkout. The kernel must be this interpreter: a first, injected cell reports
``sys.executable``; a last one reports the kernel's CPU time, which is what the budget
limits (wall time on a shared machine says more about the neighbours than the notebook).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import nbclient
import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
BUDGET_S = 120  # CPU seconds per notebook: under two minutes on an idle 2-core machine
CELL_TIMEOUT_S = 900  # wall clock per cell, generous for a busy machine


def _execute(name: str, out: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[object, float]:
    """Run a notebook; return it (injected cells removed) and the kernel's CPU seconds."""
    from jupyter_client.kernelspec import NATIVE_KERNEL_NAME

    monkeypatch.setenv("SOMPROBE_NOTEBOOK_OUT", str(out))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    assert nb.metadata.kernelspec.name == NATIVE_KERNEL_NAME == "python3"
    probe = nbformat.v4.new_code_cell("import sys; print(sys.executable)")
    probe.id = "test-kernel-probe"
    nb.cells.insert(0, probe)
    clock = nbformat.v4.new_code_cell("import os; t = os.times(); print(t.user + t.system)")
    clock.id = "test-kernel-clock"
    nb.cells.append(clock)
    client = nbclient.NotebookClient(
        nb,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    started = time.perf_counter()
    client.execute()  # raises CellExecutionError on the first failing cell
    wall = time.perf_counter() - started
    printed = "".join(o.get("text", "") for o in nb.cells.pop(0).outputs)
    assert Path(printed.strip()).resolve() == Path(sys.executable).resolve(), printed
    cpu = float("".join(o.get("text", "") for o in nb.cells.pop().outputs))
    print(f"{name}: wall {wall:.1f} s, kernel CPU {cpu:.1f} s")
    return nb, cpu


def _outputs(nb: object, mime: str) -> list[str]:
    found = []
    for cell in nb.cells:  # type: ignore[attr-defined]
        for output in cell.get("outputs", []):
            assert output.output_type != "error", output
            if mime in output.get("data", {}):
                found.append(output.data[mime])
    return found


def _run(name: str, out: Path, monkeypatch: pytest.MonkeyPatch, figures: int) -> list[str]:
    """Execute within the CPU budget, check the figures shown; return the DataFrames' HTML."""
    nb, cpu = _execute(name, out, monkeypatch)
    assert cpu < BUDGET_S
    assert len(_outputs(nb, "image/png")) >= figures
    return [t for t in _outputs(nb, "text/html") if 'class="dataframe' in t]


@pytest.mark.slow
def test_quickstart_runs_and_shows_figures_and_tables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # figures: tagged image, top patches, layer curves, layer x head map
    tables = _run("quickstart.ipynb", tmp_path, monkeypatch, figures=4)
    assert len(tables) >= 4
    assert any("share_object" in t and "lift_object" in t for t in tables)
    assert (tmp_path / "tagged.png").stat().st_size > 1000
    assert (tmp_path / "quickstart_layer_curves.png").stat().st_size > 1000


@pytest.mark.slow
def test_paper_figures_runs_and_writes_each_figure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tables = _run("paper_figures.ipynb", tmp_path, monkeypatch, figures=4)
    assert any("p_adjusted" in t for t in tables)  # paired statistics
    assert any("list_accuracy" in t for t in tables)  # listing accuracy of both models
    assert all("baseline" in t and "SoM" in t for t in tables[-2:])
    for name in ("layer_curves", "layer_head_diff", "top_patches", "probe_colour"):
        assert (tmp_path / f"paper_{name}.png").stat().st_size > 1000, name
