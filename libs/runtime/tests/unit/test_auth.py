"""API keys: hashed, scoped, revocable and reloaded without a restart."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from northstar_runtime.auth import ApiKeyStore, Scope, hash_key, parse_inline_keys
from northstar_runtime.keys_cli import add_key, main, revoke_key


def test_inline_keys_resolve_to_tenant_and_scopes() -> None:
    store = ApiKeyStore(inline="acme:ingest+read:k1,globex:admin:k2")
    acme = store.authenticate("k1")
    assert acme is not None
    assert acme.tenant == "acme"
    assert acme.scopes == frozenset({Scope.INGEST, Scope.READ})
    assert not acme.has(Scope.ADMIN)
    globex = store.authenticate("k2")
    assert globex is not None
    assert globex.has(Scope.READ) and globex.has(Scope.INGEST)  # admin implies all
    assert store.authenticate("k3") is None
    assert store.authenticate("") is None


@pytest.mark.parametrize(
    "text", ["acme", "acme:read", "Bad Tenant:read:k", "acme:write:k", "acme::k"]
)
def test_malformed_inline_keys_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        parse_inline_keys(text)


def test_key_file_holds_only_digests_and_reloads_on_change(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    key_id, key = add_key(path, "acme", ["read"])
    assert key not in path.read_text()
    assert hash_key(key) in path.read_text()
    store = ApiKeyStore(file=path)
    principal = store.authenticate(key)
    assert principal is not None and principal.tenant == "acme" and principal.key_id == key_id

    _, second = add_key(path, "acme", ["ingest"])
    revoke_key(path, key_id)
    # The store re-reads at most once a second; make the check due.
    store._checked_at = time.monotonic() - 2
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 1_000_000))
    assert store.authenticate(key) is None
    assert store.authenticate(second) is not None


def test_a_broken_key_file_keeps_the_previous_keys(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    _, key = add_key(path, "acme", ["read"])
    store = ApiKeyStore(file=path)
    path.write_text("{not json")
    store._checked_at = time.monotonic() - 2
    assert store.authenticate(key) is not None


def test_cli_add_list_revoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "keys.json"
    assert main(["--file", str(path), "add", "acme", "--scope", "read", "--id", "k1"]) == 0
    assert "key: ns_" in capsys.readouterr().out
    assert main(["--file", str(path), "revoke", "k1"]) == 0
    assert main(["--file", str(path), "list"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "k1\tacme\tread\trevoked"
    assert main(["--file", str(path), "revoke", "nope"]) == 2
    assert json.loads(path.read_text())["keys"][0]["revoked"] is True
