"""GrowthBook-compatible deterministic assignment: hash version 2 and bucket ranges.

Follows the published algorithm of GrowthBook's SDKs (`gbhash`, `getBucketRanges`,
`chooseVariation` in the Python SDK's `core.py`): the user's hash over `seed + user_id`
falls in [0, 1); variant i owns `[start_i, start_i + coverage * weight_i)` where
`start_i` is the cumulative weight before it. A hash outside every range is "not in
the experiment". FNV-1a runs over UTF-16 code units, as the JS SDK's `charCodeAt` loop
does and the Python SDK copies, so non-ASCII user ids land where every SDK puts them.
"""

from __future__ import annotations

from collections.abc import Sequence

_FNV_OFFSET = 0x811C9DC5
_FNV_PRIME = 0x01000193


def fnv1a32(text: str) -> int:
    """FNV-1a 32-bit over the UTF-16 code units of `text`."""
    h = _FNV_OFFSET
    if text.isascii():
        for b in text.encode():
            h = ((h ^ b) * _FNV_PRIME) & 0xFFFFFFFF
        return h
    data = text.encode("utf-16-le", "surrogatepass")
    for i in range(0, len(data), 2):
        h = ((h ^ (data[i] | (data[i + 1] << 8))) * _FNV_PRIME) & 0xFFFFFFFF
    return h


def hash_v2(seed: str, value: str) -> float:
    """GrowthBook hash version 2: a value in [0, 1) with four decimals."""
    return (fnv1a32(str(fnv1a32(seed + value))) % 10000) / 10000


def bucket_ranges(weights: Sequence[float], coverage: float) -> list[tuple[float, float]]:
    """Each variant's [start, end) of the hash: cumulative weights, scaled by coverage."""
    coverage = min(max(coverage, 0.0), 1.0)
    cumulative = 0.0
    ranges = []
    for w in weights:
        start = cumulative
        cumulative += w
        ranges.append((start, start + coverage * w))
    return ranges


def choose_variant(n: float, ranges: Sequence[tuple[float, float]]) -> int:
    """The index of the range holding `n`, or -1."""
    for i, (start, end) in enumerate(ranges):
        if start <= n < end:
            return i
    return -1


def assign(seed: str, user_id: str, weights: Sequence[float], coverage: float) -> tuple[int, float]:
    """The variant index (-1: not in the experiment) and the hash value of a user."""
    n = hash_v2(seed, user_id)
    return choose_variant(n, bucket_ranges(weights, coverage)), n
