"""Per-item random streams: the same seed and item key always give the same draws.

Each image's text is drawn from its own generator, seeded by ``(seed, key)``, so an
image's output does not depend on which other images were processed before it: shards,
resumed runs and full runs agree byte for byte.

Example:
    >>> a = rng_for(0, "000000139.jpg").integers(1000)
    >>> b = rng_for(0, "000000139.jpg").integers(1000)
    >>> bool(a == b)
    True
"""

from __future__ import annotations

import hashlib

import numpy as np

from somprobe.errors import InputError


def check_seed(seed: object, name: str = "seed") -> int:
    """``seed`` as an int when it is a whole number ≥ 0.

    Raises:
        InputError: anything else (numpy refuses negative seeds).
    """
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise InputError(f"{name}={seed!r}: give a whole number ≥ 0")
    return int(seed)


def key_entropy(key: str) -> int:
    """A stable 64-bit integer from a string (unlike ``hash``, the same in every process)."""
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "big")


def rng_for(seed: int, key: str) -> np.random.Generator:
    """A generator that depends only on ``seed`` and ``key``.

    Raises:
        InputError: ``seed`` is not a whole number ≥ 0.
    """
    return np.random.default_rng([check_seed(seed), key_entropy(key)])


__all__ = ["check_seed", "key_entropy", "rng_for"]
