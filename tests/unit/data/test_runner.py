from __future__ import annotations

import json
from pathlib import Path

import pytest

from somprobe.data.runner import Journal, journal_path, parse_shard, shard_keys
from somprobe.errors import DataFormatError, InputError


def test_parse_shard() -> None:
    assert parse_shard(None) == (0, 1)
    assert parse_shard("3/4") == (3, 4)
    for bad in ["4/4", "-1/2", "1", "a/b", "1/0"]:
        with pytest.raises(InputError, match="--shard"):
            parse_shard(bad)


def test_shards_partition_the_keys() -> None:
    keys = [f"k{i}" for i in range(23)]
    parts = [shard_keys(keys, i, 4) for i in range(4)]
    assert sorted(k for p in parts for k in p) == sorted(keys)
    assert sum(len(p) for p in parts) == len(keys)
    assert max(len(p) for p in parts) - min(len(p) for p in parts) <= 1


def test_journal_resume_cuts_torn_line_and_orders_output(tmp_path: Path) -> None:
    out = tmp_path / "o.json"
    j = Journal(journal_path(out), {"seed": 1})
    j.add("b", '{"id": "B"}')
    j.add("a", None, note="no tags")
    j.close()
    with open(journal_path(out), "ab") as fh:
        fh.write(b'{"key": "c", "li')  # killed mid-write
    j = Journal(journal_path(out), {"seed": 1})
    assert "a" in j and "b" in j and "c" not in j and len(j) == 2
    j.add("c", '{"id": "C"}')
    assert j.notes() == {"no tags": 1}
    assert j.finish(out, ["a", "b", "c"]) == 2
    assert json.loads(out.read_text()) == [{"id": "B"}, {"id": "C"}]
    assert not journal_path(out).exists()


def test_journal_refuses_other_settings_and_damage(tmp_path: Path) -> None:
    path = tmp_path / "j.partial.jsonl"
    Journal(path, {"seed": 1}).close()
    # nothing finished yet (e.g. the first image failed): other settings simply start afresh
    Journal(path, {"seed": 2}).close()
    assert json.loads(path.read_text()) == {"settings": {"seed": 2}}
    j = Journal(path, {"seed": 2})
    j.add("a", None)
    j.close()
    with pytest.raises(InputError, match="same options"):
        Journal(path, {"seed": 1})
    path.write_text(json.dumps({"settings": {"seed": 1}}) + "\n{bad\n" + '{"key": "x"}\n')
    with pytest.raises(DataFormatError, match="line 2 is damaged"):
        Journal(path, {"seed": 1})


def test_finish_needs_every_key(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j", {})
    with pytest.raises(InputError, match="not done"):
        j.finish(tmp_path / "o.json", ["zz"])
    j.close()
