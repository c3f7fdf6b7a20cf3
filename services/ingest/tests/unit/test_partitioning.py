"""Partition keys and partition numbers for the event log."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from northstar_ingest.domain.partitioning import partition_key, partition_of


@pytest.mark.parametrize(
    ("user_id", "org_id", "event_id", "expected"),
    [
        ("u-1", "o-1", "e-1", "u-1"),
        ("u-1", "", "e-1", "u-1"),
        ("", "o-1", "e-1", "o-1"),
        ("", "", "e-1", "e-1"),
    ],
)
def test_partition_key_prefers_user_then_org_then_event(
    user_id: str, org_id: str, event_id: str, expected: str
) -> None:
    assert partition_key(user_id, org_id, event_id) == expected


@pytest.mark.parametrize(
    ("key", "partitions", "expected"),
    [
        # CRC-32/ISO-HDLC check value: crc32("123456789") == 0xCBF43926.
        ("123456789", 2**32, 0xCBF43926),
        ("123456789", 16, 0xCBF43926 % 16),
        ("user-42", 12, 7),
        ("é", 1_000_000_000, 235_179_326),
        ("", 7, 0),
        ("anything", 1, 0),
    ],
)
def test_partition_of_is_crc32_of_utf8_modulo_partitions(
    key: str, partitions: int, expected: int
) -> None:
    assert partition_of(key, partitions) == expected


@given(key=st.text(), partitions=st.integers(min_value=1, max_value=10_000))
def test_partition_of_is_in_range_and_deterministic(key: str, partitions: int) -> None:
    partition = partition_of(key, partitions)
    assert 0 <= partition < partitions
    assert partition_of(key, partitions) == partition
    assert partition_of(str(key), partitions) == partition
