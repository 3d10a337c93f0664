"""Atomic file writes: a file is either its old self or completely written, never half.

Every writer in somprobe goes through here: data files, tables, figures, TagSets,
traces, model cards. The new content goes to a temporary file in the destination's own
folder (so the final rename stays on one file system), which is flushed and renamed over
the destination when the ``with`` block succeeds and removed when it fails.

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
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside ``path``, renamed to ``path`` on success.

    For writers that want a file name rather than a file object (``savefig``,
    ``safetensors.save_file``). The temporary name is ``.<name>.<random>.tmp``, so a
    writer that infers a format from the suffix must be told the format. Parent folders
    are created; the file ends with mode 0644.

    Example:
        >>> with atomic_path("figure.png") as tmp:  # doctest: +SKIP
        ...     fig.savefig(tmp, format="png")
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "w") -> Iterator[IO[Any]]:
    """An open file (text: UTF-8, newlines as written) that replaces ``path`` on success.

    Example:
        >>> with atomic_write("out.json") as fh:  # doctest: +SKIP
        ...     fh.write("{}")
    """
    kwargs: dict[str, Any] = {} if "b" in mode else {"encoding": "utf-8", "newline": ""}
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as fh:
        yield fh
        fh.flush()
        os.fsync(fh.fileno())


__all__ = ["atomic_path", "atomic_write"]
