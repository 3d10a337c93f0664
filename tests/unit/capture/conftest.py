from __future__ import annotations

import pytest
from somprobe_testing import load_pair

from somprobe.models import build_tiny_llava


@pytest.fixture(scope="session")
def pair(tiny_llava_path):  # type: ignore[no-untyped-def]
    return load_pair(tiny_llava_path)


@pytest.fixture(scope="session")
def gqa_pair(tmp_path_factory):  # type: ignore[no-untyped-def]
    return load_pair(build_tiny_llava(tmp_path_factory.mktemp("gqa"), num_key_value_heads=2))


@pytest.fixture(scope="session")
def full_pair(tmp_path_factory):  # type: ignore[no-untyped-def]
    path = build_tiny_llava(tmp_path_factory.mktemp("full"), vision_feature_select_strategy="full")
    return load_pair(path)
