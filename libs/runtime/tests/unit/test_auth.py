"""API keys: hashed, scoped, revocable and reloaded without a restart."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import grpc
import pytest

from northstar_runtime.auth import TENANT_HEADER, ApiKeyStore, Scope, hash_key, parse_inline_keys
from northstar_runtime.errors import InvalidArgument, PermissionDenied
from northstar_runtime.grpc_server import ServerInterceptor, TenantInFlight
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


def _interceptor(inline: str) -> ServerInterceptor:
    return ServerInterceptor(ApiKeyStore(inline=inline), {}, TenantInFlight(0))


def test_a_service_key_acts_for_a_tenant_with_read_only() -> None:
    auth = _interceptor("northstar:service:svc")
    md = {"authorization": "Bearer svc", TENANT_HEADER: "acme"}
    principal = auth._authenticate(md, Scope.READ)
    assert (principal.tenant, principal.scopes) == ("acme", frozenset({Scope.READ}))
    with pytest.raises(PermissionDenied) as err:
        auth._authenticate(md, Scope.ADMIN)
    assert err.value.reason == "MISSING_SCOPE"
    with pytest.raises(PermissionDenied):
        auth._authenticate(md, Scope.INGEST)
    # Without the header a service key is just its own tenant's key: no read there.
    with pytest.raises(PermissionDenied) as err:
        auth._authenticate({"authorization": "Bearer svc"}, Scope.READ)
    assert err.value.reason == "MISSING_SCOPE"


@pytest.mark.parametrize("scopes", ["read", "admin", "ingest+read+admin"])
def test_keys_without_the_service_scope_may_not_send_the_tenant_header(scopes: str) -> None:
    auth = _interceptor(f"acme:{scopes}:k1")
    md = {"authorization": "Bearer k1", TENANT_HEADER: "globex"}
    with pytest.raises(PermissionDenied) as err:
        auth._authenticate(md, Scope.READ)
    assert (err.value.code, err.value.reason) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "SERVICE_SCOPE_REQUIRED",
    )
    # Even naming its own tenant: the header is for service keys only.
    with pytest.raises(PermissionDenied):
        auth._authenticate({**md, TENANT_HEADER: "acme"}, Scope.READ)


def test_admin_does_not_imply_service() -> None:
    admin = ApiKeyStore(inline="acme:admin:k1").authenticate("k1")
    assert admin is not None
    assert admin.has(Scope.READ)
    assert not admin.has(Scope.SERVICE)


@pytest.mark.parametrize("tenant", ["", "Acme", "a.b", "x" * 65])
def test_an_invalid_tenant_header_is_invalid_argument(tenant: str) -> None:
    auth = _interceptor("northstar:service:svc")
    with pytest.raises(InvalidArgument) as err:
        auth._authenticate({"authorization": "Bearer svc", TENANT_HEADER: tenant}, Scope.READ)
    assert [v.field for v in err.value.violations] == [TENANT_HEADER]


def test_tenants_are_those_with_a_live_key_of_their_own(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    assert main(["--file", str(path), "add", "globex", "--scope", "read", "--id", "g1"]) == 0
    assert main(["--file", str(path), "add", "umbrella", "--scope", "read", "--id", "u1"]) == 0
    assert main(["--file", str(path), "revoke", "u1"]) == 0
    store = ApiKeyStore(
        file=path, inline="acme:ingest:k1,initech:admin+read:k2,northstar:service:k3"
    )
    assert store.tenants() == {"acme", "initech", "globex"}
