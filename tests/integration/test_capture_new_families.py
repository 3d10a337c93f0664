"""Teacher-forced capture on tiny LLaVA-NeXT and Qwen2.5-VL: the Recorder's image keys are
the layout's image tokens, and per-token coverage lines up with them."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from somprobe.capture.teacher import teacher_force
from somprobe.models import build_tiny_llava_next, build_tiny_qwen2_5_vl, load_model

pytestmark = pytest.mark.integration
torch.set_num_threads(1)

BUILDERS = {"llava_next": build_tiny_llava_next, "qwen2_vl": build_tiny_qwen2_5_vl}


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def family_model(request: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    path = BUILDERS[request.param](tmp_path_factory.mktemp(request.param))
    return request.param, *load_model(path)


def test_capture_keys_are_the_layout_image_tokens(family_model: Any) -> None:
    family, model, processor = family_model
    images = [Image.new("RGB", (150, 70), "red"), Image.new("RGB", (40, 120), "blue")]
    result = teacher_force(
        model, processor, images, ["Describe.", "List the items."], [" 1. red", " 2. blue"]
    )
    layout = result.layout
    assert layout.family == family
    for b in range(2):
        keys = result.trace.key_positions(b).tolist()
        assert keys == layout.image_token_positions(layout.images_in(b)[0]).tolist()
        position = result.answer_spans[b][0]
        attention = result.trace.attention(b, position)
        assert attention.shape[-1] == len(keys)
        assert torch.isfinite(attention).all()
        width, height = images[b].size
        coverage = layout.mask_to_tokens(np.ones((height, width), bool), layout.images_in(b)[0])
        assert coverage.shape == (len(keys),)
