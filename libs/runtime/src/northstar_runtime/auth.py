"""API keys: hashed at rest, compared in constant time, reloaded without a restart.

A key file is JSON::

    {"keys": [{"id": "k1", "tenant": "acme", "scopes": ["ingest", "read"],
               "sha256": "<hex digest of the key>", "revoked": false}]}

`northstar-keys` (see keys_cli.py) adds and revokes keys in such a file; every
service notices the change within a second. Inline keys (`NORTHSTAR_API_KEYS`,
`tenant:scope+scope:key,...`) are hashed as they are read and never kept plain.

A key with the `service` scope (held by a Northstar service, e.g. alerts, that reads many
tenants' numbers) may send metadata `x-northstar-tenant: <tenant>`; it is then served as
that tenant with the `read` scope only. Any other key sending that header is refused.
`admin` does not imply `service`: a tenant's admin must never act for another tenant.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import structlog

from northstar_runtime.errors import FieldViolation, InvalidArgument, PermissionDenied

log = structlog.get_logger("northstar.auth")

TENANT_ALPHABET = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")
TENANT_HEADER = "x-northstar-tenant"


class Scope(StrEnum):
    """What a key may do."""

    INGEST = "ingest"
    READ = "read"
    ADMIN = "admin"
    SERVICE = "service"


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller: its tenant and scopes."""

    tenant: str
    scopes: frozenset[Scope]
    key_id: str

    def has(self, scope: Scope) -> bool:
        """True when the caller holds `scope`; `admin` implies every scope but `service`."""
        if scope is Scope.SERVICE:
            return Scope.SERVICE in self.scopes
        return scope in self.scopes or Scope.ADMIN in self.scopes

    def acting_for(self, tenant: str) -> Principal:
        """This service caller served as `tenant` with `read` only; else PERMISSION_DENIED."""
        if not self.has(Scope.SERVICE):
            raise PermissionDenied(
                f"metadata '{TENANT_HEADER}' needs a key with the 'service' scope",
                reason="SERVICE_SCOPE_REQUIRED",
            )
        try:
            validate_tenant(tenant)
        except ValueError as e:
            raise InvalidArgument(
                "invalid tenant in metadata",
                reason="INVALID_TENANT",
                violations=(FieldViolation(TENANT_HEADER, str(e)),),
            ) from e
        return Principal(tenant=tenant, scopes=frozenset({Scope.READ}), key_id=self.key_id)


@dataclass(frozen=True, slots=True)
class _StoredKey:
    digest: bytes
    principal: Principal
    revoked: bool


def hash_key(key: str) -> str:
    """The hex SHA-256 of a key: what a key file stores."""
    return hashlib.sha256(key.encode()).hexdigest()


def validate_tenant(tenant: str) -> str:
    """Tenants are lower-case letters, digits and `_`, 1-64 long (they name NATS subjects)."""
    if not 1 <= len(tenant) <= 64 or not set(tenant) <= TENANT_ALPHABET:
        raise ValueError(f"tenant {tenant!r}: 1-64 characters of a-z, 0-9 and _")
    return tenant


def parse_inline_keys(text: str) -> list[tuple[str, frozenset[Scope], str]]:
    """Parse `tenant:scope+scope:key,...` into (tenant, scopes, plain key) triples."""
    keys: list[tuple[str, frozenset[Scope], str]] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        tenant, sep1, rest = item.partition(":")
        scopes, sep2, key = rest.partition(":")
        if not (sep1 and sep2 and key):
            raise ValueError(f"inline API key {item.split(':')[0]!r}: expected tenant:scopes:key")
        keys.append((validate_tenant(tenant), frozenset(Scope(s) for s in scopes.split("+")), key))
    return keys


class ApiKeyStore:
    """Resolves bearer keys to principals; re-reads its file when it changes."""

    def __init__(self, *, file: Path | None = None, inline: str = "") -> None:
        self._file = file
        self._inline: dict[str, _StoredKey] = {}
        for n, (tenant, scopes, key) in enumerate(parse_inline_keys(inline)):
            digest = hashlib.sha256(key.encode()).digest()
            principal = Principal(tenant=tenant, scopes=scopes, key_id=f"inline-{n}")
            self._inline[digest.hex()] = _StoredKey(digest, principal, revoked=False)
        self._from_file: dict[str, _StoredKey] = {}
        self._file_stamp: tuple[int, int] | None = None
        self._checked_at = 0.0
        self._reload(force=True)

    def authenticate(self, key: str) -> Principal | None:
        """The principal of `key`, or None when it is unknown or revoked."""
        self._reload()
        digest = hashlib.sha256(key.encode()).digest()
        stored = self._from_file.get(digest.hex()) or self._inline.get(digest.hex())
        # The dict lookup finds the candidate; the constant-time compare decides.
        if stored is None or not hmac.compare_digest(stored.digest, digest):
            return None
        return None if stored.revoked else stored.principal

    def tenants(self) -> set[str]:
        """Tenants holding a live key for their own data (a service-only key names none)."""
        self._reload()
        return {
            k.principal.tenant
            for k in (*self._from_file.values(), *self._inline.values())
            if not k.revoked and k.principal.scopes - {Scope.SERVICE}
        }

    def _reload(self, *, force: bool = False) -> None:
        if self._file is None:
            return
        now = time.monotonic()
        if not force and now - self._checked_at < 1.0:
            return
        self._checked_at = now
        try:
            st = self._file.stat()
        except FileNotFoundError:
            if self._from_file:
                log.warning("api key file vanished; file keys disabled", path=str(self._file))
            self._from_file, self._file_stamp = {}, None
            return
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._file_stamp:
            return
        try:
            self._from_file = load_key_file(self._file)
        except (ValueError, KeyError, TypeError) as e:
            # A half-written or broken file keeps the previous keys in force.
            log.error("api key file unreadable; keeping previous keys", error=str(e))
            return
        self._file_stamp = stamp
        log.info("api keys loaded", path=str(self._file), keys=len(self._from_file))


def load_key_file(path: Path) -> dict[str, _StoredKey]:
    """Read a key file into stored keys by hex digest."""
    data = json.loads(path.read_text())
    keys: dict[str, _StoredKey] = {}
    for entry in data["keys"]:
        digest_hex = str(entry["sha256"]).lower()
        digest = bytes.fromhex(digest_hex)
        if len(digest) != 32:
            raise ValueError(f"key {entry.get('id')!r}: sha256 must be 64 hex digits")
        principal = Principal(
            tenant=validate_tenant(str(entry["tenant"])),
            scopes=frozenset(Scope(s) for s in entry["scopes"]),
            key_id=str(entry["id"]),
        )
        keys[digest_hex] = _StoredKey(digest, principal, revoked=bool(entry.get("revoked")))
    return keys
