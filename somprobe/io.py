"""File I/O in one place: atomic writes, temporary work that cleans up after a kill, and
the mapping of file-system and file-format failures to somprobe errors.

* Every writer goes through :func:`atomic_write` / :func:`atomic_path`: the new content
  goes to a temporary file in the destination's own folder (so the final rename stays on
  one file system) and is renamed over the destination when the ``with`` block succeeds,
  removed when it fails. A file is either its old self or completely written, never half.
* Temporary names carry the writing process's id (``.<name>.<pid>-<random>.tmp``,
  ``.<prefix><pid>-<random>/``). A process killed with ``kill -9`` cannot remove its
  own; the next writer of the same destination (:func:`atomic_path`: the leftovers a
  process finds when it first writes into the folder, which it lists once, so writing
  many files into one folder stays linear) or the next run of the same work
  (:func:`work_dir`) removes every leftover whose process is gone.
* A folder that cannot be created or written raises :class:`~somprobe.errors.WriteError`
  (a ``SomprobeError`` and an ``OSError``) naming the path; a truncated or corrupt
  safetensors file read by :func:`read_safetensors` raises
  :class:`~somprobe.errors.DataFormatError`.

Example:
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "out.txt")
    >>> with atomic_write(path) as fh:
    ...     _ = fh.write("hello")
    >>> open(path).read()
    'hello'
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from somprobe.errors import DataFormatError, WriteError

_STAMP = re.compile(r"(\d+)-[^./]+")
#: ``.<target>.<pid>-<random>.tmp``: a temporary file of :func:`atomic_path`.
_TEMP = re.compile(r"\.(?P<target>.+)\.(?P<pid>\d+)-[^./]+\.tmp")
#: Per folder (path, device, inode): its temporaries when this process first wrote there,
#: by target name; listing a folder of N files once instead of at every write keeps
#: writing N files into it linear in N.
_TEMPS: dict[tuple[str, int, int], dict[str, list[tuple[str, int]]]] = {}


def _stamp() -> str:
    return f"{os.getpid()}-"


def _alive(pid: int) -> bool:
    """Whether a process with this id runs (one of ours, or anyone's we cannot signal)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_entry(path: Path) -> None:
    """Delete a leftover file or folder (a link is unlinked, never followed)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def remove_stale(folder: str | os.PathLike[str], prefix: str, suffix: str = "") -> list[Path]:
    """Remove ``folder/<prefix><pid>-<random><suffix>`` files and folders whose process is
    gone (left by a killed run); return what was removed.

    Example:
        >>> remove_stale("out/", ".mix-")  # doctest: +SKIP
        [PosixPath('out/.mix-4242-x1y2')]
    """
    removed: list[Path] = []
    base = Path(folder)
    if not base.is_dir():
        return removed
    for entry in base.iterdir():
        name = entry.name
        if not (name.startswith(prefix) and name.endswith(suffix)):
            continue
        middle = name[len(prefix) : len(name) - len(suffix)]
        match = _STAMP.fullmatch(middle)
        if match is None or _alive(int(match.group(1))):
            continue
        _remove_entry(entry)
        removed.append(entry)
    return removed


def _remove_stale_temps(folder: Path, target: str) -> None:
    """Remove the temporaries of ``folder/target`` left by processes that are gone.

    The folder is listed once per process (the first write into it); a temporary left by
    a writer killed later is removed by the next process that writes there.
    """
    info = folder.stat()
    key = (str(folder), info.st_dev, info.st_ino)
    temps = _TEMPS.get(key)
    if temps is None:
        temps = {}
        with os.scandir(folder) as entries:
            for entry in entries:
                match = _TEMP.fullmatch(entry.name)
                if match is not None:
                    temps.setdefault(match["target"], []).append((entry.name, int(match["pid"])))
        _TEMPS[key] = temps
    kept = []
    for name, pid in temps.pop(target, []):
        if _alive(pid):
            kept.append((name, pid))
            continue
        _remove_entry(folder / name)
    if kept:
        temps[target] = kept


def _writable_folder(folder: Path, target: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise WriteError(
            f"cannot write {target}: its folder {folder} cannot be created ({err.strerror or err})"
        ) from err


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside ``path``, renamed to ``path`` on success.

    For writers that want a file name rather than a file object (``savefig``,
    ``safetensors.save_file``). The temporary name is ``.<name>.<pid>-<random>.tmp``, so
    a writer that infers a format from the suffix must be told the format. Parent
    folders are created; the file ends with mode 0644; leftovers of killed writers of
    the same destination are removed first.

    Raises:
        WriteError: the folder cannot be created or written, or the rename fails.

    Example:
        >>> with atomic_path("figure.png") as tmp:  # doctest: +SKIP
        ...     fig.savefig(tmp, format="png")
    """
    target = Path(path)
    _writable_folder(target.parent, target)
    _remove_stale_temps(target.parent, target.name)
    try:
        fd, name = tempfile.mkstemp(
            prefix=f".{target.name}.{_stamp()}", suffix=".tmp", dir=target.parent
        )
    except OSError as err:
        raise WriteError(f"cannot write {target}: {err.strerror or err}") from err
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        try:
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        except OSError as err:
            raise WriteError(f"cannot write {target}: {err.strerror or err}") from err
    finally:
        if tmp.exists():
            tmp.unlink()


@contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "w") -> Iterator[IO[Any]]:
    """An open file (text: UTF-8, newlines as written) that replaces ``path`` on success.

    Raises:
        WriteError: as :func:`atomic_path`.

    Example:
        >>> with atomic_write("out.json") as fh:  # doctest: +SKIP
        ...     fh.write("{}")
    """
    kwargs: dict[str, Any] = {} if "b" in mode else {"encoding": "utf-8", "newline": ""}
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as fh:
        yield fh
        fh.flush()
        os.fsync(fh.fileno())


@contextmanager
def work_dir(folder: str | os.PathLike[str], prefix: str) -> Iterator[Path]:
    """A temporary working folder ``folder/<prefix><pid>-<random>/``, removed afterwards;
    the folders of killed earlier runs with the same prefix are removed first.

    Example:
        >>> with work_dir("out/", ".mix-") as tmp:  # doctest: +SKIP
        ...     (tmp / "bucket0.jsonl").write_text("...")
    """
    base = Path(folder)
    _writable_folder(base, base / prefix)
    remove_stale(base, prefix)
    try:
        name = tempfile.mkdtemp(prefix=f"{prefix}{_stamp()}", dir=base)
    except OSError as err:
        raise WriteError(
            f"cannot create a working folder in {base}: {err.strerror or err}"
        ) from err
    try:
        yield Path(name)
    finally:
        shutil.rmtree(name, ignore_errors=True)


def check_writable(path: str | os.PathLike[str]) -> Path:
    """Fail now, not after the work, when ``path`` could not be written (its folder cannot
    be created, or is not writable). Creates the folder; writes nothing else.

    Raises:
        WriteError: naming the path and the reason.
    """
    target = Path(path)
    if target.is_dir():
        raise WriteError(f"cannot write {target}: it is a folder")
    _writable_folder(target.parent, target)
    if not os.access(target.parent, os.W_OK | os.X_OK):
        raise WriteError(f"cannot write {target}: its folder {target.parent} is not writable")
    return target


def read_safetensors(path: str | os.PathLike[str]) -> dict[str, Any]:
    """All tensors of a safetensors file (on the CPU).

    Raises:
        DataFormatError: the file is missing, truncated or not safetensors.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise DataFormatError(
            f"{path} is not a readable safetensors file (truncated or corrupt?): {err}"
        ) from err


__all__ = [
    "atomic_path",
    "atomic_write",
    "check_writable",
    "read_safetensors",
    "remove_stale",
    "work_dir",
]
