"""A probe dataset from a trace store, gathered record by record.

Each record's hidden states at its captured tag mentions (the last token of each tag
label) become samples, with ``image_id`` = the record id, so splits keep a record's
mentions together. Only the mention rows are kept in memory, never a record's whole
capture beyond the one being read.

Example:
    >>> ds = probe_dataset_from_store(TraceStore("runs/capture"), processor)  # doctest: +SKIP
    >>> result = run_probes(ds, targets=["category"])  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import torch

from somprobe.capture.store import TraceStore
from somprobe.errors import InputError, TagMentionError
from somprobe.measure.stored import TagSetFor, iter_store_inputs, tagset_beside_image
from somprobe.probes.dataset import ProbeDataset, build_probe_dataset


def probe_dataset_from_store(
    store: TraceStore, processor: Any, tagset_for: TagSetFor = tagset_beside_image
) -> ProbeDataset:
    """:func:`~somprobe.probes.build_probe_dataset` over every record of a store, joined.

    Returns:
        One sample per captured tag mention, in store order; ``samples`` has
        ``record_id`` (also the ``image_id``) and ``batch`` 0.

    Raises:
        InputError: a store captured without hidden states.
        TagMentionError: no record has a captured tag mention.
    """
    if not store.settings["hidden_states"]:
        raise InputError(f"the trace store at {store.root} holds no hidden states to probe")
    parts: list[ProbeDataset] = []
    for inputs in iter_store_inputs(store, processor, tagset_for):
        if not len(inputs.mentions):
            continue
        rid = inputs.record.record_id
        parts.append(
            build_probe_dataset(inputs.record.trace, inputs.mentions, [inputs.tagset], [rid])
        )
    if not parts:
        raise TagMentionError(f"no record of the trace store at {store.root} has a tag mention")
    samples = pd.concat([p.samples for p in parts], ignore_index=True)
    samples["sample"] = range(len(samples))
    samples.insert(samples.columns.get_loc("image_id") + 1, "record_id", samples["image_id"])
    targets: list[str] = []
    for p in parts:
        targets += [c for c in p.target_columns if c not in targets]
    features = torch.cat([p.features for p in parts], dim=1)
    return ProbeDataset(features, samples, list(store.layers), tuple(targets))


__all__ = ["probe_dataset_from_store"]
