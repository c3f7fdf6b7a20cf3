"""Settings validation: TLS and NATS credentials come in consistent sets of existing files."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from northstar_runtime.config import ServiceSettings
from northstar_runtime.log import NatsAuth


@pytest.fixture
def pem(tmp_path: Path) -> Path:
    path = tmp_path / "x.pem"
    path.write_text("not parsed by the settings")
    return path


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"grpc_tls_cert_file": "PEM"}, "GRPC_TLS_CERT_FILE and GRPC_TLS_KEY_FILE go together"),
        ({"grpc_tls_key_file": "PEM"}, "GRPC_TLS_CERT_FILE and GRPC_TLS_KEY_FILE go together"),
        ({"grpc_tls_client_ca_file": "PEM"}, "GRPC_TLS_CLIENT_CA_FILE needs GRPC_TLS_CERT_FILE"),
        ({"nats_tls_cert_file": "PEM"}, "NATS_TLS_CERT_FILE and NATS_TLS_KEY_FILE go together"),
        (
            {"nats_credentials_file": "PEM", "nats_nkey_seed_file": "PEM"},
            "NATS_CREDENTIALS_FILE and NATS_NKEY_SEED_FILE exclude each other",
        ),
        ({"nats_tls_ca_file": "MISSING"}, "NATS_TLS_CA_FILE: no such file"),
    ],
)
def test_inconsistent_security_settings_are_refused(
    pem: Path, fields: dict[str, str], message: str
) -> None:
    values = {k: (pem if v == "PEM" else pem.parent / "missing.pem") for k, v in fields.items()}
    with pytest.raises(ValidationError, match=message):
        ServiceSettings(**values)  # type: ignore[arg-type]


def test_a_complete_set_turns_tls_on(pem: Path) -> None:
    s = ServiceSettings(
        grpc_tls_cert_file=pem,
        grpc_tls_key_file=pem,
        grpc_tls_client_ca_file=pem,
        nats_tls_ca_file=pem,
        nats_nkey_seed_file=pem,
    )
    assert s.nats_tls
    auth = NatsAuth.from_settings(s)
    assert auth.nkey_seed_file == pem and auth.tls_ca_file == pem


def test_plain_settings_connect_without_tls() -> None:
    s = ServiceSettings()
    assert not s.nats_tls
    assert NatsAuth.from_settings(s).connect_options() == {}
