"""A user's erasure in the experiments read model: the policy's pure parts.

After a `UserErased` log entry the results are as if the user's exposures and events
that came before it had never been accepted. A later-arriving event of the same
user_id timestamped at or before the erasure is erased history retried and is dropped;
one with a later timestamp is a new history (the user came back and was exposed again).
The metrics service applies the same rule to its read models.
"""

from __future__ import annotations

import hashlib

__all__ = ["is_erased_history", "user_digest"]


def user_digest(tenant: str, user_id: str) -> bytes:
    """The key an erased user is remembered by: a digest, never the id itself."""
    return hashlib.blake2b(f"{tenant}\x1f{user_id}".encode(), digest_size=16).digest()


def is_erased_history(timestamp_us: int, erased_at_us: int | None) -> bool:
    """Whether an event of an erased user belongs to the erased history (and is dropped)."""
    return erased_at_us is not None and timestamp_us <= erased_at_us
