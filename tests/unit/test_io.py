"""Atomic writes: the destination is the old file or the whole new one, never a part."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from somprobe.errors import DataFormatError, WriteError
from somprobe.io import atomic_path, atomic_write, check_writable, read_safetensors, work_dir


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


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_leftovers_of_killed_writers_are_removed_by_the_next_write(tmp_path: Path) -> None:
    dead, alive = _dead_pid(), os.getpid()
    (tmp_path / f".out.json.{dead}-k1ll3d.tmp").write_text("half")
    (tmp_path / f".out.json.{alive}-w0rk1n.tmp").write_text("a writer still at work")
    (tmp_path / f".other.json.{dead}-k1ll3d.tmp").write_text("another file's")
    with atomic_write(tmp_path / "out.json") as fh:
        fh.write("{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["out.json", f".out.json.{alive}-w0rk1n.tmp", f".other.json.{dead}-k1ll3d.tmp"]
    )


def test_work_dir_is_stamped_removed_and_cleans_killed_runs(tmp_path: Path) -> None:
    stale = tmp_path / f".mix-{_dead_pid()}-abcd1234"
    stale.mkdir()
    (stale / "bucket.jsonl").write_text("x")
    with work_dir(tmp_path, ".mix-") as work:
        assert work.name.startswith(f".mix-{os.getpid()}-") and not stale.exists()
        (work / "b.jsonl").write_text("y")
    assert list(tmp_path.iterdir()) == []


def test_unwritable_destinations_are_write_errors(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    for call in (
        lambda: atomic_write(blocker / "out.json").__enter__(),
        lambda: atomic_path(blocker / "sub" / "out.png").__enter__(),
        lambda: check_writable(blocker / "out.csv"),
        lambda: check_writable(tmp_path),
        lambda: work_dir(blocker, ".mix-").__enter__(),
    ):
        with pytest.raises(WriteError, match="cannot"):
            call()
    assert issubclass(WriteError, OSError)


def test_truncated_safetensors_is_a_data_format_error(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    path = tmp_path / "t.safetensors"
    save_file({"x": torch.arange(100.0)}, str(path))
    assert torch.equal(read_safetensors(path)["x"], torch.arange(100.0))
    path.write_bytes(path.read_bytes()[:-60])
    with pytest.raises(DataFormatError, match="truncated or corrupt"):
        read_safetensors(path)
    with pytest.raises(DataFormatError):
        read_safetensors(tmp_path / "missing.safetensors")


def test_a_folder_is_listed_once_per_process_and_leftovers_still_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead, alive = _dead_pid(), os.getpid()
    (tmp_path / f".late.json.{dead}-k1ll3d.tmp").write_text("half")
    (tmp_path / f".busy.json.{alive}-w0rk1n.tmp").write_text("a writer still at work")
    listed: list[str] = []
    real = os.scandir

    def counting(path: Any) -> Any:
        listed.append(str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", counting)
    for i in range(5):
        with atomic_write(tmp_path / f"f{i}.txt") as fh:
            fh.write("x")
    for _ in range(2):
        with atomic_write(tmp_path / "busy.json") as fh:
            fh.write("{}")
    assert listed == [str(tmp_path)]
    assert (tmp_path / f".late.json.{dead}-k1ll3d.tmp").exists()  # not its destination
    assert (tmp_path / f".busy.json.{alive}-w0rk1n.tmp").exists()  # its writer is alive
    with atomic_write(tmp_path / "late.json") as fh:  # found in the first listing
        fh.write("{}")
    assert not (tmp_path / f".late.json.{dead}-k1ll3d.tmp").exists()
    assert listed == [str(tmp_path)]


def test_a_leftover_made_after_the_listing_goes_with_the_next_process(tmp_path: Path) -> None:
    with atomic_write(tmp_path / "a.txt") as fh:
        fh.write("x")
    stale = tmp_path / f".a.txt.{_dead_pid()}-k1ll3d.tmp"
    stale.write_text("half")
    with atomic_write(tmp_path / "a.txt") as fh:  # this process listed the folder already
        fh.write("y")
    assert stale.exists()
    code = (
        "import sys; from somprobe.io import atomic_write\n"
        "with atomic_write(sys.argv[1]) as fh: fh.write('z')"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "a.txt")], check=True)
    assert not stale.exists() and (tmp_path / "a.txt").read_text() == "z"
