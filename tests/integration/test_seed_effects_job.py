"""The seed-spread job puts each seed's comparison rows side by side, numbers unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from somprobe_testing import load_experiment

PAIRED = {  # (metric, layer) → effect per seed; significance alternates with the seed
    ("mass_object", 0): [0.10, 0.05, -0.02],
    ("mass_object", 1): [np.nan, 0.01, 0.03],
}


def _paired(seed: int) -> pd.DataFrame:
    rows = []
    for (metric, layer), effects in PAIRED.items():
        e = effects[seed]
        rows.append({
            "metric": metric, "mode": "teacher_forced", "layer": layer, "n_pairs": 10,
            "n_clusters": 5, "n_nan": 0, "n_unmatched_a": 0, "n_unmatched_b": 0,
            "mean_a": 0.2, "mean_b": 0.2 + e, "mean_diff": e, "ci_low": e - 0.01,
            "ci_high": e + 0.01, "statistic": 1.0, "p_value": 0.01, "p_adjusted": 0.02 + seed,
            "significant": seed != 1, "direction": "b>a",
        })  # fmt: skip
    return pd.DataFrame(rows)


def _intervals(seed: int) -> pd.DataFrame:
    diff = [0.2, -0.1, 0.05][seed]
    low = [0.1, -0.2, -0.01][seed]  # seed 2's interval holds 0
    high = [0.3, -0.05, 0.1][seed]
    return pd.DataFrame([{
        "task": "pope", "setting": "adversarial", "metric": "accuracy", "model_a": "baseline",
        "model_b": "SoM", "value_a": 0.5, "low_a": 0.4, "high_a": 0.6, "value_b": 0.5 + diff,
        "low_b": 0.4, "high_b": 0.9, "diff": diff, "low": low, "high": high, "n": 30,
        "items": 90,
    }])  # fmt: skip


def _write(root: Path) -> list[str]:
    specs = []
    for seed in range(3):
        folder = root / f"s{seed}"
        for job, table in (("attn_alignment", _paired(seed)), ("listing_eval", _intervals(seed))):
            (folder / job).mkdir(parents=True)
            table.to_csv(folder / job / "comparison.csv", index=False)
        specs += ["--seed", f"{seed}={folder}"]
    return specs


def test_effects_and_spread_equal_the_inputs(tmp_path: Path) -> None:
    job = load_experiment("seed_effects")
    specs = _write(tmp_path)
    out = tmp_path / "out"
    assert job.main([*specs, "--jobs", "attn_alignment", "listing_eval", "--out", str(out)]) == 0
    effects = pd.read_csv(out / "seed_effects.csv")
    assert len(effects) == 3 * (len(PAIRED) + 1)
    for (metric, layer), values in PAIRED.items():
        mine = effects[(effects["metric"] == metric) & (effects["layer"] == layer)]
        np.testing.assert_array_equal(mine.sort_values("seed")["effect"], values)
        assert mine.sort_values("seed")["significant"].tolist() == [True, False, True]
    pope = effects[effects["job"] == "listing_eval"].sort_values("seed")
    assert pope["effect"].tolist() == [0.2, -0.1, 0.05]
    assert pope["significant"].tolist() == [True, True, False]  # interval excludes 0 or not
    assert pope["p_adjusted"].isna().all()

    table = pd.read_csv(out / "seed_spread.csv")
    first = table[(table["metric"] == "mass_object") & (table["layer"] == 0)].iloc[0]
    values = np.array(PAIRED[("mass_object", 0)])
    assert first["seeds"] == 3 and first["defined"] == 3
    assert first["mean"] == pytest.approx(values.mean())
    assert first["sd"] == pytest.approx(values.std(ddof=1))
    assert (first["min"], first["max"]) == (values.min(), values.max())
    assert (first["significant_up"], first["significant_down"]) == (1, 1)
    undefined = table[(table["metric"] == "mass_object") & (table["layer"] == 1)].iloc[0]
    assert undefined["defined"] == 2  # NA in seed 0 stays NA, not 0
    assert undefined["mean"] == pytest.approx(0.02)
    pope_row = table[table["job"] == "listing_eval"].iloc[0]
    assert (pope_row["significant_up"], pope_row["significant_down"]) == (1, 1)

    # the headline table: the README's rows that exist here, one column per seed
    text = (out / "seed_headline.md").read_text()
    assert text.splitlines()[0].startswith("| comparison | layer | seed 0 | seed 1 | seed 2 |")
    assert (
        "| POPE adversarial accuracy, SoM − baseline | — | +0.200 [+0.100, +0.300]* | "
        "-0.100 [-0.200, -0.050]* | +0.050 [-0.010, +0.100] | +0.050 (0.150) | 1↑ 1↓ of 3 |"
    ) in text
    assert "mark-free" not in text  # rows absent from every seed are left out
    assert len(text.strip().splitlines()) == 3


def test_a_rerun_of_a_seed_is_a_column_of_its_own_in_the_order_given(tmp_path: Path) -> None:
    """A second training run of one seed (e.g. another thread count) gets its own label;
    columns follow the command line, not a sort."""
    job = load_experiment("seed_effects")
    _write(tmp_path)  # s0, s1, s2
    relabelled = ["--seed", f"3-rerun={tmp_path / 's2'}", "--seed", f"3={tmp_path / 's0'}"]
    out = tmp_path / "out"
    assert job.main([*relabelled, "--jobs", "listing_eval", "--out", str(out)]) == 0
    header = (out / "seed_headline.md").read_text().splitlines()[0]
    assert header.startswith("| comparison | layer | seed 3-rerun | seed 3 |"), header
    effects = pd.read_csv(out / "seed_effects.csv", dtype={"seed": str})
    assert effects.set_index("seed")["effect"].to_dict() == {"3-rerun": 0.05, "3": 0.2}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--seed", "seed 0={tmp}/s0"], "the label must be"),
        (["--seed", "={tmp}/s0"], "the label must be"),
        (["--seed", "0"], "SEED=FOLDER"),
        (["--seed", "0={tmp}/s0", "--seed", "0={tmp}/s1"], "once"),
        (["--seed", "0={tmp}/s0", "--jobs", "attn_alignment", "probe_tags"], "unknown job"),
        (["--seed", "0={tmp}/s0", "--jobs", "untagged_attention"], "no "),
        (["--seed", "0={tmp}/broken", "--jobs", "attn_alignment"], "not a comparison table"),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path: Path, capsys, args, message) -> None:  # type: ignore[no-untyped-def]
    _write(tmp_path)
    (tmp_path / "broken" / "attn_alignment").mkdir(parents=True)
    pd.DataFrame({"metric": ["x"], "value": [1.0]}).to_csv(
        tmp_path / "broken" / "attn_alignment" / "comparison.csv", index=False
    )
    job = load_experiment("seed_effects")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    assert job.main([*args, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("seed_effects: error:") and message in err, err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_committed_seed_tables_hold_every_job_with_its_provenance() -> None:
    """``models/seed_tables/seed<N>/<job>/``: what seed_effects needs, for seeds trained in
    different sittings (the training folders are not committed)."""
    job = load_experiment("seed_effects")
    root = Path(__file__).resolve().parents[2] / "models" / "seed_tables"
    folders = sorted(root.glob("seed*"))
    assert folders, f"no seed tables under {root}"
    seeds = [(f.name.removeprefix("seed"), f) for f in folders]
    table = job.collect(seeds, job.JOBS)
    for seed, folder in seeds:
        assert set(table.loc[table["seed"] == seed, "job"]) == set(job.JOBS)
        for name in job.JOBS:
            assert any((folder / name / f).is_file() for f in ("summary.json", "run.json"))
    assert table["effect"].notna().any() and table["significant"].dtype == bool
