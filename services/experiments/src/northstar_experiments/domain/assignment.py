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

import numpy as np

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


def _fnv_columns(h: np.ndarray, units: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """FNV-1a continued from states `h` over each row's first `lengths` code units."""
    for j in range(units.shape[1]):
        live = lengths > j
        h = np.where(live, (h ^ units[:, j]) * np.uint32(_FNV_PRIME), h)
    return h


def hash_v2_many(seed: str, values: Sequence[str]) -> np.ndarray:
    """`hash_v2(seed, v)` for every value at once (float64), bit for bit the same."""
    count = len(values)
    if count == 0:
        return np.zeros(0, dtype=np.float64)
    joined = "".join(values)
    if joined.isascii():
        flat = np.frombuffer(joined.encode(), dtype=np.uint8).astype(np.uint32)
        lengths = np.fromiter((len(v) for v in values), dtype=np.int64, count=count)
    else:
        flat = np.frombuffer(joined.encode("utf-16-le", "surrogatepass"), dtype="<u2").astype(
            np.uint32
        )
        lengths = np.fromiter(
            (len(v.encode("utf-16-le", "surrogatepass")) // 2 for v in values),
            dtype=np.int64,
            count=count,
        )
    # Every value shares the seed: hash it once and continue from its state.
    seed_state = np.uint32(fnv1a32(seed)) if seed else np.uint32(_FNV_OFFSET)
    width = int(lengths.max()) if count else 0
    offsets = np.cumsum(lengths) - lengths
    index = offsets[:, None] + np.arange(max(width, 1))[None, :]
    units = (
        flat[np.minimum(index, max(len(flat) - 1, 0))]
        if len(flat)
        else np.zeros((count, 1), dtype=np.uint32)
    )
    first = _fnv_columns(np.full(count, seed_state, dtype=np.uint32), units, lengths)
    # Second round over the decimal digits of the first hash (no leading zeros).
    powers = np.array([10**k for k in range(9, -1, -1)], dtype=np.uint64)
    wide = first.astype(np.uint64)
    digits_n = 1 + (wide[:, None] >= powers[None, :-1]).sum(axis=1)
    digits = (wide[:, None] // powers[None, :]) % 10  # ten digits, leading zeros first
    shift = 10 - digits_n
    cols = np.arange(10)[None, :] + shift[:, None]
    units2 = (np.take_along_axis(digits, np.minimum(cols, 9), axis=1) + 48).astype(np.uint32)
    second = _fnv_columns(np.full(count, _FNV_OFFSET, dtype=np.uint32), units2, digits_n)
    return (second % np.uint32(10000)).astype(np.float64) / 10000


def assign_many(
    seed: str, user_ids: Sequence[str], weights: Sequence[float], coverage: float
) -> tuple[list[int], list[float]]:
    """`assign` for many users of one experiment: variant indexes (-1: out) and hashes."""
    n = hash_v2_many(seed, user_ids)
    chosen = np.full(len(user_ids), -1, dtype=np.int64)
    for i, (start, end) in reversed(list(enumerate(bucket_ranges(weights, coverage)))):
        chosen = np.where((n >= start) & (n < end), i, chosen)
    return chosen.tolist(), n.tolist()
