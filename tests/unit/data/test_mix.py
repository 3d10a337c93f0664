from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from somprobe.data.llava_json import make_record, write_records
from somprobe.data.mix import MixSource, mix_files
from somprobe.errors import DataFormatError, InputError


def make_file(path: Path, prefix: str, n: int, image: bool = True) -> Path:
    recs = [make_record(f"{prefix}{i}", f"{prefix}/{i}.png" if image else None, [("q", "a")])
            for i in range(n)]  # fmt: skip
    write_records(recs, path)
    return path


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    return {
        "base": make_file(tmp_path / "base.json", "b", 60),
        "listing": make_file(tmp_path / "listing.jsonl", "l", 30),
        "qa": make_file(tmp_path / "qa.json", "q", 40),
    }


def ids(path: Path) -> list[str]:
    return [r["id"] for r in json.loads(path.read_text())]


def test_composition_and_content(tmp_path: Path, files: dict[str, Path]) -> None:
    out = tmp_path / "mix.json"
    report = mix_files(
        [MixSource("base", files["base"]), MixSource("listing", files["listing"], 10),
         MixSource("qa", files["qa"], 25, image_prefix="som/")],
        out, seed=3, bucket_records=7,
    )  # fmt: skip
    assert list(report["source"]) == ["base", "listing", "qa"]
    assert list(report["available"]) == [60, 30, 40]
    assert list(report["taken"]) == [60, 10, 25]
    assert report["share"].sum() == pytest.approx(1.0)
    got = ids(out)
    assert len(got) == len(set(got)) == 95
    assert Counter(i[0] for i in got) == {"b": 60, "l": 10, "q": 25}
    assert set(got) >= {f"b{i}" for i in range(60)}
    recs = {r["id"]: r for r in json.loads(out.read_text())}
    assert all(r["image"].startswith("som/q/") for k, r in recs.items() if k[0] == "q")
    assert recs["b5"]["image"] == "b/5.png"
    # shuffled: the base records are not all first, in order
    assert got[:60] != [f"b{i}" for i in range(60)]


def test_same_seed_same_bytes_other_seed_other_order(tmp_path: Path, files: dict) -> None:
    srcs = [MixSource("base", files["base"], 50), MixSource("qa", files["qa"], 20)]
    mix_files(srcs, tmp_path / "a.json", seed=1, bucket_records=16)
    mix_files(srcs, tmp_path / "b.json", seed=1, bucket_records=16)
    mix_files(srcs, tmp_path / "c.json", seed=2, bucket_records=16)
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert ids(tmp_path / "a.json") != ids(tmp_path / "c.json")


def test_shuffle_is_roughly_uniform(tmp_path: Path) -> None:
    src = make_file(tmp_path / "s.json", "s", 10)
    out = tmp_path / "o.json"
    first = Counter()
    for seed in range(300):
        mix_files([MixSource("s", src)], out, seed=seed, bucket_records=3)
        first[ids(out)[0]] += 1
    # every record leads sometimes; none leads more than 3x its fair share (30)
    assert set(first) == {f"s{i}" for i in range(10)}
    assert max(first.values()) < 90


def test_no_shuffle_keeps_source_order(tmp_path: Path, files: dict) -> None:
    mix_files([MixSource("qa", files["qa"], 5), MixSource("l", files["listing"])],
              tmp_path / "o.json", seed=0, shuffle=False)  # fmt: skip
    got = ids(tmp_path / "o.json")
    assert [int(i[1:]) for i in got[:5]] == sorted(int(i[1:]) for i in got[:5])
    assert got[5:] == [f"l{i}" for i in range(30)]


def test_errors(tmp_path: Path, files: dict) -> None:
    with pytest.raises(InputError, match="has 30 records but 31"):
        mix_files([MixSource("l", files["listing"], 31)], tmp_path / "o.json")
    with pytest.raises(InputError, match="unique"):
        mix_files([MixSource("l", files["listing"]), MixSource("l", files["qa"])], tmp_path / "o")
    with pytest.raises(InputError, match="no sources"):
        mix_files([], tmp_path / "o.json")
    dup = make_file(tmp_path / "dup.json", "l", 3)
    with pytest.raises(DataFormatError, match=r"record id='l\d'.*also used in source 'l'"):
        mix_files([MixSource("l", files["listing"]), MixSource("d", dup)], tmp_path / "o.json")
    assert not (tmp_path / "o.json").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
