"""Assignment parity with GrowthBook's own Python SDK (the `growthbook` package)."""

from __future__ import annotations

import random

import pytest
from growthbook import Experiment, GrowthBook
from growthbook.core import chooseVariation, gbhash, getBucketRanges

from northstar_experiments.domain.assignment import (
    assign,
    assign_many,
    bucket_ranges,
    hash_v2,
    hash_v2_many,
)

CONFIGS = [
    ("checkout-button", "checkout-button", 1.0, [0.5, 0.5]),
    ("pricing_page", "pricing_page", 0.5, [0.5, 0.5]),
    ("onboarding-v3", "custom-seed-42", 0.8, [0.34, 0.33, 0.33]),
    ("search", "search", 0.25, [0.1, 0.2, 0.3, 0.4]),
    ("emails", "emails", 0.99, [0.2] * 5),
]


def user_ids(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    ids = [f"user-{i}" for i in range(count // 2)]
    ids += [str(rng.getrandbits(64)) for _ in range(count // 4)]
    alphabet = "abcXYZ019_-éü中文😀"
    while len(ids) < count:
        ids.append("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 20))))
    return ids


@pytest.mark.parametrize(("key", "seed", "coverage", "weights"), CONFIGS)
def test_100k_ids_match_the_sdk_algorithm(
    key: str, seed: str, coverage: float, weights: list[float]
) -> None:
    ranges = getBucketRanges(len(weights), coverage, weights)
    assert bucket_ranges(weights, coverage) == ranges
    mismatches = 0
    for uid in user_ids(100_000, hash(key) & 0xFFFF):
        n = gbhash(seed, uid, 2)
        variant, ours = assign(seed, uid, weights, coverage)
        mismatches += ours != n or variant != chooseVariation(n, ranges)
    assert mismatches == 0


@pytest.mark.parametrize(("key", "seed", "coverage", "weights"), CONFIGS)
def test_sdk_run_puts_users_where_we_do(
    key: str, seed: str, coverage: float, weights: list[float]
) -> None:
    experiment = Experiment(
        key=key,
        variations=list(range(len(weights))),
        weights=weights,
        coverage=coverage,
        hashVersion=2,
        seed=seed,
    )
    for uid in user_ids(4_000, 7):
        result = GrowthBook(attributes={"id": uid}).run(experiment)
        variant, _n = assign(seed, uid, weights, coverage)
        if variant < 0:
            assert not result.inExperiment, uid
        else:
            assert result.inExperiment, uid
            assert result.variationId == variant, uid


def test_hash_v2_edge_strings_match_the_sdk() -> None:
    for seed, value in [("", ""), ("", "a"), ("seed", "😀"), ("é", "\ud83d"), ("k", "x" * 500)]:
        assert hash_v2(seed, value) == gbhash(seed, value, 2)


@pytest.mark.parametrize(("key", "seed", "coverage", "weights"), CONFIGS)
def test_the_batch_path_matches_the_sdk_on_100k_ids(
    key: str, seed: str, coverage: float, weights: list[float]
) -> None:
    ids = user_ids(100_000, hash(key) & 0xFFFF)
    ranges = getBucketRanges(len(weights), coverage, weights)
    variants, hashes = assign_many(seed, ids, weights, coverage)
    expected = [gbhash(seed, uid, 2) for uid in ids]
    assert hashes == expected
    assert variants == [chooseVariation(n, ranges) for n in expected]


def test_batch_hash_edge_strings_match_the_sdk() -> None:
    values = ["", "a", "😀", "\ud83d", "x" * 500, "0", "é中"]
    for seed in ["", "seed", "é"]:
        assert hash_v2_many(seed, values).tolist() == [gbhash(seed, v, 2) for v in values]
    assert hash_v2_many("seed", []).tolist() == []
