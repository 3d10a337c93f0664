"""The figure scripts write under results/<job>/figures by default, never into figures/."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from somprobe_testing import EXPERIMENTS, load_experiment

SHIPPED = EXPERIMENTS.parent / "figures"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("job", "figure"),
    [("figure_tagging", "tagging_astronaut.png"), ("figure_toy_scenes", "toy_scenes.png")],
)
def test_default_figures_go_under_results_not_the_shipped_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, job: str, figure: str
) -> None:
    shipped = _digest(SHIPPED / figure)
    monkeypatch.chdir(tmp_path)
    assert load_experiment(job).main([]) == 0
    assert (tmp_path / "results" / job / "figures" / figure).stat().st_size > 1000
    assert _digest(SHIPPED / figure) == shipped


@pytest.mark.slow
@pytest.mark.parametrize("job", ["figure_tagging", "figure_toy_scenes"])
def test_a_figure_folder_under_a_file_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], job: str
) -> None:
    (tmp_path / "file.txt").write_text("x")
    assert load_experiment(job).main(["--figures", str(tmp_path / "file.txt" / "f")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{job}: error:") and "file.txt is a file" in err
