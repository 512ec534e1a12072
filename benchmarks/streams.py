"""Deterministic synthetic access streams for tracker benchmarks and tests."""

from __future__ import annotations

import random
from collections import Counter
from itertools import accumulate


def zipf_stream(
    n_accesses: int = 1_000_000,
    n_keys: int = 200_000,
    s: float = 1.1,
    one_off_fraction: float = 0.3,
    seed: int = 1234,
) -> list[str]:
    """Return Zipf(s) draws over ``n_keys`` keys shuffled with unique one-off keys.

    ``round(n_accesses * one_off_fraction)`` accesses are keys seen exactly once ("once-<i>"); the
    rest are Zipf draws of "k<rank>" ("k1" is the most popular). Same arguments, same stream.
    """
    if not 0.0 <= one_off_fraction <= 1.0:
        raise ValueError(f"one_off_fraction must be within [0, 1], got {one_off_fraction!r}")
    rng = random.Random(seed)
    n_once = round(n_accesses * one_off_fraction)
    keys = [f"k{rank}" for rank in range(1, n_keys + 1)]
    cum_weights = list(accumulate(rank**-s for rank in range(1, n_keys + 1)))
    stream = rng.choices(keys, cum_weights=cum_weights, k=n_accesses - n_once)
    stream.extend(f"once-{i}" for i in range(n_once))
    rng.shuffle(stream)
    return stream


def true_top(stream: list[str], n: int = 100) -> set[str]:
    """Return the ``n`` most frequent keys of ``stream`` by exact count."""
    return {key for key, _ in Counter(stream).most_common(n)}
