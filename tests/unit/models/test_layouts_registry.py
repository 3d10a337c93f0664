"""The layout registry, and per-token boxes/coverage on the LLaVA-1.5 family."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from PIL import Image
from transformers import AutoProcessor

from somprobe.errors import UnsupportedModelError
from somprobe.models import ImageLayout, build_prompt, build_tiny_llava, prepare_inputs
from somprobe.models.adapters import ADAPTERS
from somprobe.models.layouts import FAMILIES, family_for, family_for_model_type
from somprobe.models.loading import SUPPORTED_MODEL_TYPES


def test_every_supported_model_type_has_a_layout_and_an_adapter() -> None:
    assert set(FAMILIES) == {"llava", "llava_next", "qwen2_vl"}
    for model_type in SUPPORTED_MODEL_TYPES:
        assert family_for_model_type(model_type).name in FAMILIES
        assert model_type in ADAPTERS
    with pytest.raises(UnsupportedModelError, match="llava_next"):
        family_for_model_type("gpt2")


def test_family_for_processor_classes() -> None:
    for family in FAMILIES.values():
        for name in family.processor_classes:
            assert family_for(type(name, (), {})()).name == family.name
    subclass = type("MyLlava", (type("LlavaProcessor", (), {}),), {})
    assert family_for(subclass()).name == "llava"
    with pytest.raises(UnsupportedModelError, match="Qwen2_5_VLProcessor"):
        family_for(object())


@pytest.fixture(scope="module")
def full_processor(tmp_path_factory: pytest.TempPathFactory) -> Any:
    path = build_tiny_llava(tmp_path_factory.mktemp("full"), vision_feature_select_strategy="full")
    return AutoProcessor.from_pretrained(path)


def test_llava_tokens_cls_has_no_box(full_processor: Any) -> None:
    image = Image.new("RGB", (90, 60))
    inputs = prepare_inputs(full_processor, [image], [build_prompt(full_processor, "x")])
    layout = ImageLayout.from_inputs(full_processor, inputs, images=[image])
    assert layout.family == "llava" and layout.num_grids(0) == 1
    tokens = layout.image_token_positions(0)
    assert layout.images[0].cls_position == tokens[0]
    assert layout.token_grid(0).tolist() == [-1] + [0] * 64
    boxes = layout.token_boxes(0)
    assert np.isnan(boxes[0]).all()
    np.testing.assert_allclose(boxes[1:], np.array([layout.patch_box(i) for i in range(64)]))
    mask = np.zeros((60, 90), bool)
    mask[10:30, 20:70] = True
    per_token = layout.mask_to_tokens(mask)
    assert np.isnan(per_token[0])
    np.testing.assert_allclose(per_token[1:], layout.mask_to_patches(mask).ravel())
    np.testing.assert_allclose(
        layout.box_to_tokens((20, 10, 70, 30))[1:], layout.box_to_patches((20, 10, 70, 30)).ravel()
    )
    clipped = layout.token_boxes(0, clip=True)[1:]
    assert (clipped[:, 0::2] >= 0).all() and (clipped[:, 0::2] <= 90).all()
