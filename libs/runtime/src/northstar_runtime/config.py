"""Configuration from environment variables, validated once at start."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TypeVar

import structlog
from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    """Settings every service reads; a service subclasses it to add its own.

    Every field maps to an upper-case environment variable of the same name
    (`grpc_address` ← `GRPC_ADDRESS`).
    """

    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    grpc_address: str = Field(
        default="127.0.0.1:50051", description="host:port the gRPC server binds; port 0 picks one"
    )
    nats_url: str = Field(default="nats://127.0.0.1:4222", description="NATS server URL(s)")
    database_url: str = Field(
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        description="PostgreSQL DSN",
    )
    northstar_namespace: str = Field(
        default="",
        description="prefix of streams, subjects, consumers and schemas; isolates tests",
    )
    northstar_partitions: int = Field(
        default=16, ge=1, le=4096, description="partitions of the EVENTS stream"
    )
    northstar_api_keys_file: Path | None = Field(
        default=None, description="JSON file of hashed API keys, reloaded when it changes"
    )
    northstar_api_keys: str = Field(
        default="",
        description="inline keys `tenant:scope+scope:key,...`, for the local suite and tests",
    )
    grpc_tls_cert_file: Path | None = Field(
        default=None, description="PEM certificate chain of the gRPC server: turns TLS on"
    )
    grpc_tls_key_file: Path | None = Field(
        default=None, description="PEM private key of GRPC_TLS_CERT_FILE"
    )
    grpc_tls_client_ca_file: Path | None = Field(
        default=None,
        description="PEM CA bundle; when set, every client must present a certificate it"
        " signed (mutual TLS)",
    )
    nats_tls_ca_file: Path | None = Field(
        default=None, description="PEM CA that signed the NATS server's certificate: turns TLS on"
    )
    nats_tls_cert_file: Path | None = Field(
        default=None, description="PEM client certificate for NATS (TLS client auth)"
    )
    nats_tls_key_file: Path | None = Field(default=None, description="its private key")
    nats_credentials_file: Path | None = Field(
        default=None, description="NATS user credentials file (JWT and NKey seed)"
    )
    nats_nkey_seed_file: Path | None = Field(
        default=None, description="NATS NKey seed file (NKey authentication)"
    )
    northstar_stream_replicas: int = Field(default=1, ge=1, le=5)
    northstar_stream_sync_always: bool = Field(
        default=False, description="fsync every JetStream write (single-server durability)"
    )
    metrics_address: str = Field(
        default="", description="host:port of the Prometheus /metrics endpoint; empty: off"
    )
    log_level: str = Field(default="INFO")
    log_format: str = Field(default="json", description="json or console")
    shutdown_grace_seconds: float = Field(default=10.0, ge=0)
    northstar_tenant_max_in_flight: int = Field(
        default=64,
        ge=0,
        description="RPCs one tenant may have in flight on one replica; beyond, "
        "RESOURCE_EXHAUSTED with a retry delay (0: no limit)",
    )
    grpc_max_concurrent_rpcs: int = Field(
        default=1024,
        ge=1,
        description="RPCs one replica serves at once, all tenants together; beyond, "
        "RESOURCE_EXHAUSTED",
    )

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR")
        return level

    @model_validator(mode="after")
    def _tls_pairs(self) -> ServiceSettings:
        if (self.grpc_tls_cert_file is None) != (self.grpc_tls_key_file is None):
            raise ValueError("GRPC_TLS_CERT_FILE and GRPC_TLS_KEY_FILE go together")
        if self.grpc_tls_client_ca_file is not None and self.grpc_tls_cert_file is None:
            raise ValueError("GRPC_TLS_CLIENT_CA_FILE needs GRPC_TLS_CERT_FILE (mutual TLS)")
        if (self.nats_tls_cert_file is None) != (self.nats_tls_key_file is None):
            raise ValueError("NATS_TLS_CERT_FILE and NATS_TLS_KEY_FILE go together")
        if self.nats_credentials_file is not None and self.nats_nkey_seed_file is not None:
            raise ValueError("NATS_CREDENTIALS_FILE and NATS_NKEY_SEED_FILE exclude each other")
        for name in (
            "grpc_tls_cert_file",
            "grpc_tls_key_file",
            "grpc_tls_client_ca_file",
            "nats_tls_ca_file",
            "nats_tls_cert_file",
            "nats_tls_key_file",
            "nats_credentials_file",
            "nats_nkey_seed_file",
        ):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                raise ValueError(f"{name.upper()}: no such file {str(path)!r}")
        return self

    @property
    def nats_tls(self) -> bool:
        """Whether the log connection uses TLS (a CA or a client certificate is set)."""
        return self.nats_tls_ca_file is not None or self.nats_tls_cert_file is not None

    @field_validator("northstar_namespace")
    @classmethod
    def _safe_namespace(cls, value: str) -> str:
        if value and not value.replace("_", "").isalnum():
            raise ValueError("letters, digits and underscores only")
        return value.lower()


S = TypeVar("S", bound=ServiceSettings)


def load_settings(cls: type[S]) -> S:
    """Read settings from the environment or exit with one clear line per problem."""
    try:
        return cls()
    except ValidationError as e:
        log = structlog.get_logger("northstar.config")
        for err in e.errors():
            field = ".".join(str(p) for p in err["loc"]).upper()
            log.error("invalid configuration", variable=field, problem=err["msg"])
        sys.exit(2)
