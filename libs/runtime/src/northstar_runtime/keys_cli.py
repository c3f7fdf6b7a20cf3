"""`northstar-keys`: add, revoke and list API keys in a key file, without a restart.

Every service re-reads the file within a second of a change. The file stores
only SHA-256 digests; a new key is printed once and never written in clear.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import tempfile
from pathlib import Path
from typing import Any

from northstar_runtime.auth import Scope, hash_key, validate_tenant


def _read(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {"keys": []}
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _write(path: Path, data: dict[str, Any]) -> None:
    # Atomic replace: a service reading concurrently sees the old or the new file, never half.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".keys-")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
    Path(tmp).chmod(0o600)
    Path(tmp).replace(path)


def add_key(
    path: Path, tenant: str, scopes: list[str], key_id: str | None = None
) -> tuple[str, str]:
    """Add a new random key; returns (key id, the key in clear, shown once)."""
    validate_tenant(tenant)
    checked = sorted({Scope(s).value for s in scopes})
    data = _read(path)
    key_id = key_id or f"{tenant}-{secrets.token_hex(4)}"
    if any(k["id"] == key_id for k in data["keys"]):
        raise ValueError(f"a key with id {key_id!r} exists")
    key = f"ns_{secrets.token_urlsafe(32)}"
    data["keys"].append(
        {
            "id": key_id,
            "tenant": tenant,
            "scopes": checked,
            "sha256": hash_key(key),
            "revoked": False,
        }
    )
    _write(path, data)
    return key_id, key


def revoke_key(path: Path, key_id: str) -> None:
    """Mark a key revoked (kept for the record)."""
    data = _read(path)
    for k in data["keys"]:
        if k["id"] == key_id:
            k["revoked"] = True
            _write(path, data)
            return
    raise KeyError(f"no key with id {key_id!r}")


def main(argv: list[str] | None = None) -> int:
    """Entry point of `northstar-keys`."""
    parser = argparse.ArgumentParser(prog="northstar-keys", description=__doc__)
    parser.add_argument("--file", type=Path, default=os.environ.get("NORTHSTAR_API_KEYS_FILE"))
    sub = parser.add_subparsers(dest="command", required=True)
    add = sub.add_parser("add", help="create a key and print it once")
    add.add_argument("tenant")
    add.add_argument("--scope", action="append", required=True, choices=[s.value for s in Scope])
    add.add_argument("--id")
    revoke = sub.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("key_id")
    sub.add_parser("list", help="list key ids, tenants, scopes and state")
    args = parser.parse_args(argv)
    if args.file is None:
        parser.error("--file or NORTHSTAR_API_KEYS_FILE is required")
    try:
        if args.command == "add":
            key_id, key = add_key(args.file, args.tenant, args.scope, args.id)
            sys.stdout.write(f"id: {key_id}\nkey: {key}\n(store it now: it is not kept in clear)\n")
        elif args.command == "revoke":
            revoke_key(args.file, args.key_id)
            sys.stdout.write(f"revoked {args.key_id}\n")
        else:
            for k in _read(args.file)["keys"]:
                state = "revoked" if k.get("revoked") else "active"
                sys.stdout.write(f"{k['id']}\t{k['tenant']}\t{'+'.join(k['scopes'])}\t{state}\n")
    except (ValueError, KeyError) as e:
        sys.stderr.write(f"northstar-keys: {e}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
