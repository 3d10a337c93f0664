"""Fixtures of the finetune tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from finetune_testing import write_colour_set


@pytest.fixture()
def colour_set(tmp_path: Path) -> tuple[Path, Path]:
    """(train.json, image folder) with 24 one-square images."""
    return write_colour_set(tmp_path)


@pytest.fixture(autouse=True)
def one_thread():  # type: ignore[no-untyped-def]
    """Tiny models train faster on one thread, and far faster on a busy shared machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
