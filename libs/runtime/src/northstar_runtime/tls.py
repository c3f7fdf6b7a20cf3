"""Transport security: the gRPC server's TLS (optionally mutual) and the clients' contexts.

Certificates are PEM files named by settings (see config.py); nothing is generated here.
A server with a client CA requires every client to present a certificate that CA signed
(mutual TLS, for service-to-service traffic); API keys are still required on top.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import grpc


def server_credentials(
    cert_file: Path, key_file: Path, client_ca_file: Path | None = None
) -> grpc.ServerCredentials:
    """TLS credentials for a gRPC server; with `client_ca_file`, client certificates required."""
    return grpc.ssl_server_credentials(
        [(key_file.read_bytes(), cert_file.read_bytes())],
        root_certificates=client_ca_file.read_bytes() if client_ca_file else None,
        require_client_auth=client_ca_file is not None,
    )


def channel_credentials(
    ca_file: Path | None = None, cert_file: Path | None = None, key_file: Path | None = None
) -> grpc.ChannelCredentials:
    """TLS credentials for a gRPC client: a CA to trust (else the system's), a client cert."""
    return grpc.ssl_channel_credentials(
        root_certificates=ca_file.read_bytes() if ca_file else None,
        private_key=key_file.read_bytes() if key_file else None,
        certificate_chain=cert_file.read_bytes() if cert_file else None,
    )


def client_ssl_context(
    ca_file: Path | None = None, cert_file: Path | None = None, key_file: Path | None = None
) -> ssl.SSLContext:
    """An SSL context verifying the server (against `ca_file`, else the system's CAs),
    presenting a client certificate when given: for NATS and other TLS clients."""
    context = ssl.create_default_context(
        ssl.Purpose.SERVER_AUTH, cafile=str(ca_file) if ca_file else None
    )
    if cert_file is not None:
        context.load_cert_chain(str(cert_file), str(key_file) if key_file else None)
    return context
