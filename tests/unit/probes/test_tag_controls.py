"""Controls that mean something at a tag token, on synthetic hidden states.

Every image has four tagged objects, numbered 1..4 smallest first (so area rises with the
tag number, as in Set-of-Mark), each with a category and a colour drawn independently.
The hidden states are built so that the answer is known:

* ``bound``: the state carries its own object's colour → task high, binding near chance;
* ``misbound``: the state carries the *next* object's colour → binding high, task at chance
  (the binding control can fail);
* ``number``: the state carries only the tag number → area is decoded exactly as well as
  from the number alone (the number baseline catches it), and the number-keyed control is
  trivially decodable while the category-keyed one is at chance;
* ``category``: the state carries the category → the category-keyed control is decodable
  (it fails), which it is not for ``bound``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from somprobe.errors import ProbeError
from somprobe.probes import (
    CONTROLS,
    ProbeDataset,
    binding_partners,
    control_labels,
    listing_order,
    number_features,
    run_probes,
)

N_IMG, PER, L, D = 100, 4, 2, 16
COLOURS = np.array(["red", "green", "blue"])
CATEGORIES = np.array([f"c{i}" for i in range(12)])
FAST = {"n_folds": 3, "n_boot": 300, "lambdas": [1e-3, 1e-2, 1e-1], "seed": 0}


def _world(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = N_IMG * PER
    area = np.sort(rng.uniform(0.01, 0.5, (N_IMG, PER)), axis=1).reshape(-1)
    return pd.DataFrame(
        {
            "sample": np.arange(n),
            "batch": np.repeat(np.arange(N_IMG), PER),
            "position": np.tile(10 + 4 * np.arange(PER), N_IMG),
            "image_id": np.repeat([f"img{i}" for i in range(N_IMG)], PER),
            "tag_id": np.tile(np.arange(1, PER + 1), N_IMG),
            "category": rng.choice(CATEGORIES, n),
            "colour": rng.choice(COLOURS, n),
            "area": area,
        }
    )


def _onehot(values: np.ndarray, vocab: np.ndarray) -> np.ndarray:
    return (np.asarray(values)[:, None] == np.asarray(vocab)[None, :]).astype(np.float32)


def _next_in_image(s: pd.DataFrame) -> np.ndarray:
    """Index of the next tag's sample in the same image (cyclically)."""
    return np.asarray([(i // PER) * PER + (i % PER + 1) % PER for i in range(len(s))])


def _dataset(
    s: pd.DataFrame, signal: np.ndarray, strength: float = 3.0, seed: int = 1
) -> ProbeDataset:
    """Layer 0 is noise; layer 1 is noise plus ``strength × signal`` in its first columns."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(L, len(s), D, generator=g)
    X[1, :, : signal.shape[1]] += strength * torch.as_tensor(signal)
    return ProbeDataset(X, s, [0, 1], ("category", "colour", "area"))


def _scores(res) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    return res.scores.set_index(["target", "probe", "layer"])


ALL = ("control", "control_number", "binding", "number_baseline")


# --------------------------------------------------------------------------------------
# the building blocks


def test_binding_partners_are_other_objects_of_the_same_image() -> None:
    groups = np.array(["a", "a", "a", "b", "b", "a"])
    objects = np.array([1, 2, 3, 7, 9, 1])  # tag 1 of image a is mentioned twice
    nxt = binding_partners(groups, objects)
    # next object by tag id, cyclically; a repeated mention shares its object's partner
    assert objects[nxt].tolist() == [2, 3, 1, 9, 7, 2]
    assert (groups[nxt] == groups).all()
    rnd = binding_partners(groups, objects, mode="random", seed=3)
    assert (groups[rnd] == groups).all() and (objects[rnd] != objects).all()
    np.testing.assert_array_equal(rnd, binding_partners(groups, objects, mode="random", seed=3))
    many = binding_partners(np.zeros(50), np.arange(50), mode="random", seed=0)
    assert len(set(many.tolist())) > 25  # random, not the next one


def test_number_features_and_listing_order() -> None:
    s = pd.DataFrame(
        {"image_id": ["a", "a", "a", "b"], "batch": [0, 0, 0, 1], "position": [30, 10, 20, 5]}
    )
    np.testing.assert_array_equal(listing_order(s), [2, 0, 1, 0])
    F = number_features(np.array([3, 1, 2, 1]), listing_order(s))
    assert F.shape == (4, 3 + 3)  # one-hot tag number (1, 2, 3) ⊕ one-hot list position
    np.testing.assert_array_equal(F.sum(1), 2.0)
    assert (F[1] == F[3]).all()  # same number, same list position → same features


def test_scores_table_names_every_control_and_its_chance_level() -> None:
    s = _world()
    res = run_probes(_dataset(s, _onehot(s["colour"], COLOURS)), ["colour", "area"],
                     controls=ALL, **FAST)  # fmt: skip
    sc = res.scores
    assert set(CONTROLS) == set(ALL)
    assert set(sc["probe"]) == {
        "task", "baseline", *ALL, "selectivity",
        "task_minus_control_number", "task_minus_binding", "task_minus_number_baseline",
    }  # fmt: skip
    assert "chance" in sc.columns
    assert not sc.duplicated(["layer", "target", "probe"]).any()
    t = _scores(res)
    # chance: the majority class / training mean of each probe's own labels
    for probe in ("task", "baseline", "number_baseline"):
        assert t.loc[("colour", probe, 1), "chance"] == t.loc[("colour", "baseline", 1), "value"]
    assert t.loc[("area", "task", 1), "chance"] == pytest.approx(
        t.loc[("area", "baseline", 1), "value"]
    )
    colour = sc[sc["target"] == "colour"].set_index(["probe", "layer"])["value"]
    for diff, other in (("selectivity", "control"), ("task_minus_binding", "binding")):
        np.testing.assert_allclose(colour[diff], colour["task"] - colour[other])  # paired
    # the number baseline does not depend on the layer
    nb = sc.query("probe == 'number_baseline'").groupby("target")["value"].nunique()
    assert (nb == 1).all()


def test_default_control_is_keyed_on_the_object_category() -> None:
    s = _world()
    res = run_probes(_dataset(s, _onehot(s["colour"], COLOURS)), ["colour"], **FAST)
    assert set(res.scores["probe"]) == {"task", "control", "selectivity", "baseline"}
    ps = res.per_sample.query("probe == 'control' and layer == 0")
    cat = s.set_index(s["image_id"] + "/" + s["tag_id"].astype(str) + "/0")["category"]
    per_cat = ps.assign(category=cat.loc[ps["sample_id"]].to_numpy()).groupby("category")["y"]
    assert (per_cat.nunique() == 1).all()  # one label per category ...
    per_tag = ps.assign(tag=ps["sample_id"].str.split("/").str[1]).groupby("tag")["y"]
    assert (per_tag.nunique() > 1).all()  # ... not one per tag number


# --------------------------------------------------------------------------------------
# (ii) binding


def test_bound_state_gives_high_task_and_binding_at_chance() -> None:
    s = _world()
    res = run_probes(_dataset(s, _onehot(s["colour"], COLOURS)), ["colour"],
                     controls=("binding",), **FAST)  # fmt: skip
    t = _scores(res)
    assert t.loc[("colour", "task", 1), "value"] > 0.85
    binding = t.loc[("colour", "binding", 1)]
    # near chance: within a tolerance for ~80 test samples (3 standard errors ≈ 0.16)
    assert abs(binding["value"] - binding["chance"]) < 0.16
    assert binding["ci_low"] < binding["chance"] + 0.05
    assert t.loc[("colour", "task_minus_binding", 1), "ci_low"] > 0.4


def test_misbound_state_fails_the_binding_control() -> None:
    # the state at tag k carries the colour of tag k+1: a bag of image features, not bound
    s = _world()
    signal = _onehot(s["colour"].to_numpy()[_next_in_image(s)], COLOURS)
    res = run_probes(_dataset(s, signal), ["colour"], controls=("binding",), **FAST)
    t = _scores(res)
    assert t.loc[("colour", "binding", 1), "value"] > 0.85
    assert t.loc[("colour", "task", 1), "value"] < t.loc[("colour", "task", 1), "chance"] + 0.16
    assert t.loc[("colour", "task_minus_binding", 1), "ci_high"] < -0.4


# --------------------------------------------------------------------------------------
# (i) the number baseline


def test_number_only_state_is_no_better_than_the_number_baseline() -> None:
    # the token's identity is written clearly into its state (a noisy copy of the number
    # would carry less than the number itself: the baseline would then beat the probe)
    s = _world()
    number = _onehot(s["tag_id"], np.arange(1, PER + 1))
    res = run_probes(_dataset(s, number, strength=10.0), ["area"],
                     controls=("number_baseline",), **FAST)  # fmt: skip
    t = _scores(res)
    task, nb = t.loc[("area", "task", 1)], t.loc[("area", "number_baseline", 1)]
    assert task["value"] > 0.4  # area is readable from the number: tags go smallest first
    # equal within the interval: the probe is no better than the number alone (a little
    # worse, from the noise dimensions it has to fit), and the control says so
    assert task["ci_low"] <= nb["ci_high"] and nb["ci_low"] <= task["ci_high"]
    gap = t.loc[("area", "task_minus_number_baseline", 1)]
    assert abs(gap["value"]) < 0.1 and gap["ci_low"] <= 0.0


def test_area_state_beats_the_number_baseline() -> None:
    s = _world()
    signal = (s[["area"]].to_numpy(np.float32) - 0.25) * 8
    res = run_probes(_dataset(s, signal), ["area"], controls=("number_baseline",), **FAST)
    t = _scores(res)
    assert t.loc[("area", "task", 1), "value"] > 0.8
    assert t.loc[("area", "task_minus_number_baseline", 1), "ci_low"] > 0.1


# --------------------------------------------------------------------------------------
# (iii) the category-keyed control


def test_category_control_is_decodable_only_from_a_state_that_encodes_category() -> None:
    s = _world()
    kw = {"controls": ("control", "control_number"), **FAST}
    encodes_cat = _scores(run_probes(_dataset(s, _onehot(s["category"], CATEGORIES), 5.0),
                                     ["colour"], **kw))  # fmt: skip
    encodes_colour = _scores(run_probes(_dataset(s, _onehot(s["colour"], COLOURS)),
                                        ["colour"], **kw))  # fmt: skip
    ctrl = encodes_cat.loc[("colour", "control", 1)]
    assert ctrl["ci_low"] > ctrl["chance"] + 0.2  # the control fails: decodable
    ctrl = encodes_colour.loc[("colour", "control", 1)]
    assert ctrl["value"] < ctrl["chance"] + 0.1  # it passes: no better than a constant guess
    assert encodes_colour.loc[("colour", "selectivity", 1), "ci_low"] > 0.0


def test_number_keyed_control_is_trivial_at_a_number_token_category_control_is_not() -> None:
    # the reviewer's point: a state that is the tag number decodes the number-keyed control
    s = _world()
    number = _onehot(s["tag_id"], np.arange(1, PER + 1))
    res = run_probes(_dataset(s, number, strength=10.0), ["colour"],
                     controls=("control", "control_number"), **FAST)  # fmt: skip
    t = _scores(res)
    assert t.loc[("colour", "control_number", 1), "value"] > 0.95
    ctrl = t.loc[("colour", "control", 1)]
    assert ctrl["value"] < ctrl["chance"] + 0.1


def test_control_labels_keyed_on_category_follow_the_category() -> None:
    s = _world()
    ctrl = control_labels(s["category"].to_numpy(), s["colour"].to_numpy(), seed=2)
    assert (pd.Series(ctrl).groupby(s["category"]).nunique() == 1).all()


def test_controls_option_checks() -> None:
    s = _world()
    ds = _dataset(s, _onehot(s["colour"], COLOURS))
    with pytest.raises(ProbeError, match="unknown control"):
        run_probes(ds, ["colour"], controls=("contorl",), **FAST)
    with pytest.raises(ProbeError, match="control=False"):
        run_probes(ds, ["colour"], control=False, controls=("binding",), **FAST)
    res = run_probes(ds, ["colour"], control=False, **{**FAST, "n_boot": 0})
    assert set(res.scores["probe"]) == {"task", "baseline"}
