"""Atomic writes: the destination is the old file or the whole new one, never a part."""

from __future__ import annotations

from pathlib import Path

import pytest

from somprobe.io import atomic_path, atomic_write


def test_atomic_writer_keeps_old_file_on_error(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(path) as fh:
        fh.write("new")
        raise RuntimeError("boom")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_atomic_path_replaces_on_success_and_cleans_up_on_error(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "table.csv"
    with atomic_path(path) as tmp:
        assert tmp.parent == path.parent and tmp.name.endswith(".tmp")
        assert not path.exists()  # nothing visible until the block succeeds
        tmp.write_text("a,b\n")
    assert path.read_text() == "a,b\n"
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    with pytest.raises(KeyError), atomic_path(path) as tmp:
        tmp.write_text("half")
        raise KeyError("killed")
    assert path.read_text() == "a,b\n"
    assert [p.name for p in path.parent.iterdir()] == ["table.csv"]


def test_binary_mode_writes_bytes(tmp_path: Path) -> None:
    path = tmp_path / "b.bin"
    with atomic_write(path, "wb") as fh:
        fh.write(b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
