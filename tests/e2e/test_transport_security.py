"""Transport security with certificates made here: gRPC TLS and mutual TLS, NATS TLS + auth.

A test CA signs a server certificate (SAN 127.0.0.1 and localhost) and a client certificate.
Ingest runs with them against its own NATS server that requires TLS and a user/password:

- TLS: a client trusting the CA gets through; a plaintext client and a client trusting
  another CA do not;
- mutual TLS: a client without a certificate, or with one from another CA, is refused
  during the handshake; with the CA's client certificate it gets through (the API key is
  still required on top);
- NATS: ingest connects over TLS with user and password and stores events; a wrong
  password or a missing CA fails to connect;
- PostgreSQL: a server with ssl=on and the test certificate; the experiments service,
  given `sslmode=verify-full` and the CA in DATABASE_URL, migrates and serves over TLS
  only; a client trusting another CA cannot connect.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import grpc
import nats
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from northstar.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from northstar_experiments.bootstrap import build_host as build_experiments
from northstar_experiments.settings import ExperimentsSettings
from northstar_harness.servers import NatsServer, PostgresServer
from northstar_ingest.bootstrap import build_host as build_ingest
from northstar_ingest.settings import IngestSettings
from northstar_runtime.log import LogClient, NatsAuth
from northstar_runtime.tls import channel_credentials, client_ssl_context
from northstar_runtime.topology import Topology

from .conftest import WRITER_KEY, auth, settings_env

NATS_USER, NATS_PASSWORD = "northstar", "s3cret-pass"


@dataclass(frozen=True)
class Pki:
    """A CA, a server and a client certificate signed by it, and a stranger CA's client."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path
    stranger_cert: Path
    stranger_key: Path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _ca(cn: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _leaf(
    issuer: tuple[ec.EllipticCurvePrivateKey, x509.Certificate], cn: str, *, server: bool
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer[1].subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return key, builder.sign(issuer[0], hashes.SHA256())


def _write(
    folder: Path, name: str, pair: tuple[ec.EllipticCurvePrivateKey, x509.Certificate]
) -> tuple[Path, Path]:
    key, cert = pair
    cert_path, key_path = folder / f"{name}.crt", folder / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """Certificates for this module's tests."""
    folder = tmp_path_factory.mktemp("pki")
    ca, other = _ca("northstar test CA"), _ca("stranger CA")
    ca_path, _ = _write(folder, "ca", ca)
    other_path, _ = _write(folder, "other-ca", other)
    server_cert, server_key = _write(folder, "server", _leaf(ca, "localhost", server=True))
    client_cert, client_key = _write(folder, "client", _leaf(ca, "metrics", server=False))
    stranger_cert, stranger_key = _write(folder, "stranger", _leaf(other, "x", server=False))
    return Pki(
        ca_path,
        server_cert,
        server_key,
        client_cert,
        client_key,
        other_path,
        stranger_cert,
        stranger_key,
    )


@pytest.fixture
def secure_nats(tmp_path: Path, pki: Pki) -> Iterator[NatsServer]:
    """A NATS server that requires TLS and a user/password."""
    server = NatsServer(
        tmp_path / "nats",
        extra_args=[
            "--tls",
            "--tlscert",
            str(pki.server_cert),
            "--tlskey",
            str(pki.server_key),
            "--user",
            NATS_USER,
            "--pass",
            NATS_PASSWORD,
        ],
    )
    with server:
        yield server


def _authed_url(server: NatsServer, password: str = NATS_PASSWORD) -> str:
    return f"nats://{NATS_USER}:{password}@127.0.0.1:{server.port}"


@dataclass
class SecureIngest:
    """Ingest serving TLS (optionally mutual), logging to the secure NATS."""

    port: int
    pki: Pki


async def _start(
    secure_nats: NatsServer, pki: Pki, database_url: str, namespace: str, *, mutual: bool
) -> AsyncIterator[SecureIngest]:
    env = settings_env(_authed_url(secure_nats), database_url, namespace)
    env.update(
        grpc_tls_cert_file=pki.server_cert,
        grpc_tls_key_file=pki.server_key,
        nats_tls_ca_file=pki.ca,
    )
    if mutual:
        env["grpc_tls_client_ca_file"] = pki.ca
    host = build_ingest(IngestSettings(**env), configure_process=False)  # type: ignore[arg-type]
    port = await host.start()
    try:
        yield SecureIngest(port, pki)
    finally:
        await host.stop()


@pytest.fixture
async def tls_ingest(
    secure_nats: NatsServer, pki: Pki, database_url: str, namespace: str
) -> AsyncIterator[SecureIngest]:
    """Ingest with server-side TLS."""
    async for running in _start(secure_nats, pki, database_url, namespace, mutual=False):
        yield running


@pytest.fixture
async def mtls_ingest(
    secure_nats: NatsServer, pki: Pki, database_url: str, namespace: str
) -> AsyncIterator[SecureIngest]:
    """Ingest requiring client certificates of the test CA."""
    async for running in _start(secure_nats, pki, database_url, namespace, mutual=True):
        yield running


def _track(event_id: str) -> ingest_pb2.TrackRequest:
    return ingest_pb2.TrackRequest(
        events=[ingest_pb2.Event(event_id=event_id, event="page.view", user_id="u-1")]
    )


async def _send(channel: grpc.aio.Channel, event_id: str) -> ingest_pb2.TrackResponse:
    async with channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        return await stub.Track(_track(event_id), metadata=auth(WRITER_KEY), timeout=5)


async def _refused(channel: grpc.aio.Channel) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _send(channel, "refused")
    return caught.value.code()


async def test_tls_accepts_a_client_trusting_the_ca_and_logs_through_secure_nats(
    tls_ingest: SecureIngest, secure_nats: NatsServer, namespace: str
) -> None:
    target = f"localhost:{tls_ingest.port}"
    answer = await _send(
        grpc.aio.secure_channel(target, channel_credentials(tls_ingest.pki.ca)), "tls-1"
    )
    assert [r.status for r in answer.results] == [ingest_pb2.EVENT_STATUS_ACCEPTED]
    # The event is in the log, read back over TLS with the same credentials.
    log = await LogClient.connect(
        _authed_url(secure_nats),
        Topology(namespace),
        name="tls-reader",
        auth=NatsAuth(tls_ca_file=tls_ingest.pki.ca),
    )
    try:
        info = await log.js.stream_info(Topology(namespace).events_stream)
        assert info.state.messages == 1
    finally:
        await log.close()


async def test_tls_refuses_plaintext_and_untrusted_servers(tls_ingest: SecureIngest) -> None:
    target = f"localhost:{tls_ingest.port}"
    assert await _refused(grpc.aio.insecure_channel(target)) is grpc.StatusCode.UNAVAILABLE
    untrusted = grpc.aio.secure_channel(target, channel_credentials(tls_ingest.pki.other_ca))
    assert await _refused(untrusted) is grpc.StatusCode.UNAVAILABLE


async def test_mutual_tls_needs_a_client_certificate_of_the_ca(mtls_ingest: SecureIngest) -> None:
    pki = mtls_ingest.pki
    target = f"localhost:{mtls_ingest.port}"
    no_cert = grpc.aio.secure_channel(target, channel_credentials(pki.ca))
    assert await _refused(no_cert) is grpc.StatusCode.UNAVAILABLE
    stranger = grpc.aio.secure_channel(
        target, channel_credentials(pki.ca, pki.stranger_cert, pki.stranger_key)
    )
    assert await _refused(stranger) is grpc.StatusCode.UNAVAILABLE
    trusted = grpc.aio.secure_channel(
        target, channel_credentials(pki.ca, pki.client_cert, pki.client_key)
    )
    answer = await _send(trusted, "mtls-1")
    assert [r.status for r in answer.results] == [ingest_pb2.EVENT_STATUS_ACCEPTED]
    # The certificate is transport security, not identity: the API key is still required.
    async with grpc.aio.secure_channel(
        target, channel_credentials(pki.ca, pki.client_cert, pki.client_key)
    ) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await ingest_pb2_grpc.IngestServiceStub(channel).Track(_track("no-key"), timeout=5)
        assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED


async def test_nats_refuses_a_wrong_password_and_an_unverified_server(
    secure_nats: NatsServer, pki: Pki
) -> None:
    with pytest.raises(nats.errors.Error):
        nc = await nats.connect(
            _authed_url(secure_nats, "wrong"),
            tls=client_ssl_context(pki.ca),
            connect_timeout=2,
            max_reconnect_attempts=0,
            allow_reconnect=False,
        )
        await nc.close()
    with pytest.raises((OSError, nats.errors.Error)):
        nc = await nats.connect(
            _authed_url(secure_nats),
            tls=client_ssl_context(pki.other_ca),
            connect_timeout=2,
            max_reconnect_attempts=0,
            allow_reconnect=False,
        )
        await nc.close()


def _postgres_with_ssl() -> Path:
    """PostgreSQL binaries built with OpenSSL: the embedded wheel's build has none."""
    for bin_dir in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        postgres = bin_dir / "postgres"
        # The server binary links libssl when built with it.
        if postgres.is_file() and b"libssl" in postgres.read_bytes():
            return bin_dir
    pytest.skip("no PostgreSQL built with SSL on this machine (Debian's postgresql has it)")


@pytest.fixture
def tls_postgres(tmp_path: Path, pki: Pki) -> Iterator[PostgresServer]:
    """A PostgreSQL server offering TLS with the test CA's server certificate."""
    folder = tmp_path / "pg-tls"
    folder.mkdir()
    cert, key = folder / "server.crt", folder / "server.key"
    shutil.copy(pki.server_cert, cert)
    shutil.copy(pki.server_key, key)
    server = PostgresServer(
        tmp_path / "pg",
        durable=False,
        bin_dir=_postgres_with_ssl(),
        settings={"ssl": "on", "ssl_cert_file": str(cert), "ssl_key_file": str(key)},
    )
    for path in (cert, key):
        server.give(path)
    server.start()
    try:
        yield server
    finally:
        server.stop(immediate=True)


def _verified(dsn: str, ca: Path) -> str:
    return f"{dsn}?sslmode=verify-full&sslrootcert={ca}"


async def test_services_reach_postgresql_over_verified_tls(
    tls_postgres: PostgresServer, pki: Pki, nats_url: str, namespace: str
) -> None:
    env = settings_env(nats_url, _verified(tls_postgres.dsn, pki.ca), namespace)
    host = build_experiments(ExperimentsSettings(**env), configure_process=False)  # type: ignore[arg-type]
    await host.start()
    try:
        # Every client connection but ours (plaintext, to look) is the service's, over TLS.
        conn = await asyncpg.connect(tls_postgres.dsn, ssl=False)
        try:
            rows = await conn.fetch(
                "SELECT s.ssl, s.version FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)"
                " WHERE a.backend_type = 'client backend' AND a.pid <> pg_backend_pid()"
            )
        finally:
            await conn.close()
        assert rows, "the service holds no connection"
        assert all(r["ssl"] for r in rows), rows
        assert {r["version"] for r in rows} <= {"TLSv1.2", "TLSv1.3"}
    finally:
        await host.stop()


async def test_postgresql_with_an_untrusted_certificate_is_refused(
    tls_postgres: PostgresServer, pki: Pki
) -> None:
    with pytest.raises(OSError, match="certificate verify failed"):
        await asyncpg.connect(_verified(tls_postgres.dsn, pki.other_ca), timeout=5)
