from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import somprobe.data.llava_json as lj
from somprobe.data.llava_json import (
    LlavaRecord,
    Turn,
    iter_json_objects,
    iter_records,
    make_record,
    read_records,
    validate_file,
    validate_record,
    write_records,
)
from somprobe.errors import DataFormatError, InputError


def rec(rid: str, image: str | None = "a.png", answer: str = "1. cat") -> dict:
    first = "<image>\nList the items." if image is not None else "Hello?"
    out: dict = {"id": rid}
    if image is not None:
        out["image"] = image
    out["conversations"] = [{"from": "human", "value": first}, {"from": "gpt", "value": answer}]
    return out


def write_raw(path: Path, records: list) -> Path:
    path.write_text(json.dumps(records, indent=1), encoding="utf-8")
    return path


# ----------------------------------------------------------------- round trips


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_write_read_round_trip_keeps_extra_keys_and_text_only(tmp_path: Path, suffix: str) -> None:
    records = [rec("a"), {**rec("b", None), "model": "x"}, rec("c", answer="naïve \u2028 ✓")]
    path = tmp_path / f"d{suffix}"
    assert write_records(records, path) == 3
    back = read_records(path)
    assert [r.to_dict() for r in back] == records
    # the file is plain JSON the standard library reads the same way
    if suffix == ".json":
        assert json.loads(path.read_text(encoding="utf-8")) == records
    else:
        lines = path.read_text(encoding="utf-8").split("\n")[:-1]
        assert [json.loads(x) for x in lines] == records


text = st.text(alphabet=st.characters(codec="utf-8"), max_size=30)
record_strategy = st.builds(
    lambda rid, q, a, n: rec(f"id{rid}", answer=a) | {"n": n, "q": q},
    st.integers(0, 10**6),
    text,
    text,
    st.one_of(st.integers(), st.floats(allow_nan=False)),
)


@settings(max_examples=40, deadline=None)
@given(st.lists(record_strategy, max_size=8), st.integers(1, 9))
def test_stream_reader_equals_json_load_at_any_chunk_size(records: list, chunk: int) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.json"
        path.write_text(json.dumps(records, indent=2, ensure_ascii=False), encoding="utf-8")
        old = lj._CHUNK_CHARS
        lj._CHUNK_CHARS = chunk
        try:
            got = [obj for _, _, obj in iter_json_objects(path)]
        finally:
            lj._CHUNK_CHARS = old
    assert got == json.loads(json.dumps(records))


def test_numbers_cut_at_chunk_boundary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lj, "_CHUNK_CHARS", 3)
    path = tmp_path / "n.json"
    path.write_text("[1, 23456, 7.25e3, true, null]")
    assert [o for _, _, o in iter_json_objects(path)] == [1, 23456, 7250.0, True, None]


def test_empty_array(tmp_path: Path) -> None:
    assert read_records(write_raw(tmp_path / "e.json", [])) == []


def test_make_record_puts_image_token_first() -> None:
    r = make_record("q", "im.png", [("Q1?", "A1"), ("Q2?", "A2")])
    assert r.conversations[0] == Turn("human", "<image>\nQ1?")
    assert [t.role for t in r.conversations] == ["human", "gpt", "human", "gpt"]
    assert "<image>" not in r.conversations[2].value


# ----------------------------------------------------------------- bad input


def test_malformed_json_names_the_record_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    good = json.dumps(rec("first"))
    path.write_text(f"[\n{good},\n{good[:-1]}, \n]\n".replace('"first"', '"first"', 1))
    with pytest.raises(DataFormatError, match=r"record #1 \(line 3, after record id='first'\)"):
        list(iter_records(path))


def test_truncated_file(tmp_path: Path) -> None:
    path = tmp_path / "cut.json"
    path.write_text("[" + json.dumps(rec("a")) + ", " + json.dumps(rec("b"))[:20])
    with pytest.raises(DataFormatError, match=r"record #1 .*not valid JSON"):
        list(iter_records(path))


def test_garbage_after_array(tmp_path: Path) -> None:
    path = tmp_path / "g.json"
    path.write_text("[" + json.dumps(rec("a")) + "] x")
    with pytest.raises(DataFormatError, match="after the closing"):
        list(iter_records(path))


def test_missing_comma(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text("[" + json.dumps(rec("a")) + " " + json.dumps(rec("b")) + "]")
    with pytest.raises(
        DataFormatError, match=r"expected ',' or '\]' after record #0, after record id='a'"
    ):
        list(iter_records(path))


def test_not_json_at_all(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    path.write_text("hello")
    with pytest.raises(DataFormatError, match="starts with 'h'"):
        list(iter_records(path))


def test_bad_jsonl_line(tmp_path: Path) -> None:
    path = tmp_path / "b.jsonl"
    path.write_text(json.dumps(rec("a")) + "\n{oops\n")
    with pytest.raises(DataFormatError, match=r"record #1 \(line 2\)"):
        list(iter_records(path))


def test_missing_file() -> None:
    with pytest.raises(InputError, match="no such file"):
        list(iter_records("/nonexistent/x.json"))


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda r: r["conversations"][0].update(value="List the items."), "conversations[0].value"),
        (lambda r: r["conversations"][1].update(value="<image> 1. cat"), "conversations[1].value"),
        (lambda r: r["conversations"][1].update({"from": "human"}), "conversations[1].from"),
        (lambda r: r.update(conversations=[]), "conversations"),
        (lambda r: r.update(image=""), "image"),
        (lambda r: r.update(id=""), "id"),
        (lambda r: r["conversations"][0].update(value=3), "conversations[0].value"),
    ],
)
def test_invalid_record_names_id_and_field(mutate, field: str) -> None:  # type: ignore[no-untyped-def]
    r = rec("rec-7")
    mutate(r)
    with pytest.raises(DataFormatError) as err:
        validate_record(r)
    msg = str(err.value)
    assert f"field '{field}'" in msg
    assert "rec-7" in msg or field == "id"


def test_missing_image_token_in_a_file_names_record(tmp_path: Path) -> None:
    bad = rec("no-token")
    bad["conversations"][0]["value"] = "List them."
    path = write_raw(tmp_path / "x.json", [rec("ok"), bad])
    with pytest.raises(
        DataFormatError,
        match=r"record id='no-token' \(#1, line \d+ of x.json\).*"
        r"conversations\[0\]\.value.*<image>",
    ):
        list(iter_records(path))


def test_text_only_record_must_not_hold_image_token() -> None:
    r = rec("t", None)
    r["conversations"][0]["value"] = "<image>\nhi"
    with pytest.raises(DataFormatError, match="has no 'image'"):
        validate_record(r)


def test_missing_id() -> None:
    r = rec("x")
    del r["id"]
    with pytest.raises(DataFormatError, match=r"record without id.*field 'id' is missing"):
        validate_record(r)


def test_duplicate_ids(tmp_path: Path) -> None:
    path = write_raw(tmp_path / "d.json", [rec("a"), rec("b"), rec("a")])
    with pytest.raises(DataFormatError, match=r"record id='a' \(#2.*duplicates record #0"):
        validate_file(path)


def test_missing_image_files(tmp_path: Path) -> None:
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.png").write_bytes(b"x")
    path = write_raw(tmp_path / "d.json", [rec("r1", "a.png"), rec("r2", "gone.png")])
    with pytest.raises(DataFormatError, match=r"record id='r2'.*field 'image'.*gone.png"):
        validate_file(path, image_root=tmp_path / "imgs")
    summary = validate_file(path)  # without an image root only the format is checked
    assert (summary.records, summary.with_image, summary.turns) == (2, 2, 4)


def test_write_rejects_invalid_dict_and_leaves_no_file(tmp_path: Path) -> None:
    path = tmp_path / "out.json"
    bad = rec("b")
    bad["conversations"][0]["value"] = "no token"
    with pytest.raises(DataFormatError, match="record id='b'"):
        write_records([rec("a"), bad], path)
    assert list(tmp_path.iterdir()) == []


def test_record_validate_roundtrip() -> None:
    r = LlavaRecord("x", "a.png", [Turn("human", "<image>\nq"), Turn("gpt", "a")])
    r.validate()
    assert LlavaRecord.from_dict(r.to_dict()) == r
