"""Fixtures of the finetune tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from finetune_testing import write_colour_set


@pytest.fixture()
def colour_set(tmp_path: Path) -> tuple[Path, Path]:
    """(train.json, image folder) with 24 one-square images."""
    return write_colour_set(tmp_path)
