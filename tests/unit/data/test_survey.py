from __future__ import annotations

import json
from pathlib import Path

import pytest

from somprobe.data.llava_json import make_record, write_records
from somprobe.data.survey import classify_answer, is_listing_style, numbered_items, survey_file

LISTING = "1. person\n2. cat\n3. red cup on the table"
LISTING_PARENS = "Here they are:\n(1) dog\n(2) frisbee"
LISTING_MD = "1) **Paris**\n2) **Rome**\n3) **Oslo**"
RECIPE = (
    "1. Preheat the oven to 200 degrees and line a baking tray with paper.\n"
    "2. Whisk the eggs with the sugar until the mixture turns pale and thick.\n"
    "3. Fold in the flour gently, then pour the batter into the prepared tray."
)
SHORT_STEPS = "1. Mix.\n2. Bake.\n3. Serve."
PROSE = "A cat sits on a mat. It is 3 years old."
ONE_ITEM = "1. person"
WRONG_ORDER = "2. cat\n3. dog"
SKIPS = "1. cat\n3. dog"


@pytest.mark.parametrize(
    ("text", "style"),
    [
        (LISTING, "item_listing"),
        (LISTING_PARENS, "item_listing"),
        (LISTING_MD, "item_listing"),
        (RECIPE, "numbered_other"),
        (SHORT_STEPS, "item_listing"),  # documented: form, not meaning
        (PROSE, "none"),
        (ONE_ITEM, "none"),
        (WRONG_ORDER, "none"),
        (SKIPS, "none"),
        ("", "none"),
    ],
)
def test_classify(text: str, style: str) -> None:
    assert classify_answer(text) == style
    assert is_listing_style(text) == (style == "item_listing")


def test_numbered_items_and_thresholds() -> None:
    assert numbered_items("x\n1. a\nnote\n2. b\n 3) c\n5. e") == ["a", "b", "c"]
    assert classify_answer(ONE_ITEM, min_items=1) == "item_listing"
    assert classify_answer(RECIPE, max_item_words=20) == "item_listing"


def test_survey_counts_on_a_hand_made_file(tmp_path: Path) -> None:
    answers = [
        [LISTING],                      # item_listing
        [LISTING_PARENS],               # item_listing
        [RECIPE],                       # numbered_other
        [PROSE],                        # none
        [PROSE, LISTING_MD],            # record: item_listing (best turn)
        [RECIPE, PROSE],                # record: numbered_other
        [ONE_ITEM],                     # none
    ]  # fmt: skip
    records = [
        make_record(f"r{i}", "x.png", [(f"Q{k}", a) for k, a in enumerate(ans)])
        for i, ans in enumerate(answers)
    ]
    path = tmp_path / "hand.json"
    write_records(records, path)
    table = survey_file(path)
    got = {(r.unit, r.style): (r.count, r.total) for r in table.itertuples()}
    assert got == {
        ("record", "item_listing"): (3, 7),
        ("record", "numbered_other"): (2, 7),
        ("record", "none"): (2, 7),
        ("turn", "item_listing"): (3, 9),
        ("turn", "numbered_other"): (2, 9),
        ("turn", "none"): (4, 9),
    }
    assert set(table["dataset"]) == {"hand.json"}
    share = table.set_index(["unit", "style"])["share"]
    assert share[("record", "item_listing")] == pytest.approx(3 / 7)
    assert json.loads(path.read_text())[0]["id"] == "r0"


@pytest.mark.parametrize(
    ("min_items", "max_item_words"), [(-3, 8), (0, 8), (2, 0), (2, -1), (1.5, 8), (True, 8)]
)
def test_thresholds_below_one_are_refused(
    tmp_path: Path, min_items: object, max_item_words: object
) -> None:
    """``min_items=-3`` used to count every answer (even prose) as a listing: share 1.0."""
    from somprobe.data.survey import survey_records
    from somprobe.errors import InputError

    kwargs = {"min_items": min_items, "max_item_words": max_item_words}
    with pytest.raises(InputError, match=r"(min_items|max_item_words)=.*≥ 1"):
        classify_answer(PROSE, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="≥ 1"):
        is_listing_style(PROSE, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="≥ 1"):
        survey_records([], **kwargs)  # type: ignore[arg-type]
    path = tmp_path / "d.json"
    write_records([make_record("a", None, [("Q?", PROSE)])], path)
    with pytest.raises(InputError, match="≥ 1"):
        survey_file(path, **kwargs)  # type: ignore[arg-type]
