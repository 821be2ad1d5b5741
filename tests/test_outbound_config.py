"""Start-up refuses credentials over plain http to another machine, and HTTPS trusts a private CA
given as SSL_CERT_FILE / SSL_CERT_DIR.

The TLS test runs a minimal HTTPS endpoint on loopback with a certificate from a CA made for the
test (openssl), because the sandbox serves plain http only.
"""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from adapter.config import ConfigError, load_settings
from adapter.fhir.client import FhirError
from adapter.wiring import fhir_client
from tests.test_config_cli import run

TOKEN = "x" * 24


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        (
            {"fhir_base_url": "http://fhir.example.se/fhir", "fhir_auth": "bearer", "fhir_token": TOKEN},
            "MMR_FHIR_BASE_URL",
        ),
        (
            {"fhir_base_url": "http://10.1.2.3:8080/fhir", "fhir_auth": "bearer", "fhir_token": TOKEN},
            "MMR_FHIR_BASE_URL",
        ),
        (
            {
                "fhir_base_url": "https://fhir.example.se/fhir",
                "fhir_auth": "client-credentials",
                "oauth_token_url": "http://idp.example.se/token",
                "oauth_client_id": "mmr",
                "oauth_client_secret": TOKEN,
            },
            "MMR_OAUTH_TOKEN_URL",
        ),
        (
            {
                "fhir_base_url": "http://fhir.example.se/fhir",
                "fhir_auth": "client-credentials",
                "oauth_token_url": "https://idp.example.se/token",
                "oauth_client_id": "mmr",
                "oauth_client_secret": TOKEN,
            },
            "MMR_FHIR_BASE_URL",
        ),
    ],
)
def test_credentials_over_plain_http_to_another_host_are_refused(settings: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(**settings)
    assert str(info.value).startswith(named) and "MMR_ALLOW_INSECURE_HTTP" in str(info.value)
    assert TOKEN not in str(info.value)
    load_settings(**settings, allow_insecure_http=True)  # explicitly allowed


@pytest.mark.parametrize(
    "base",
    ["http://127.0.0.1:8080/fhir", "http://127.9.9.9/fhir", "http://[::1]:8080/fhir", "http://localhost:8080/fhir"],
)
def test_loopback_and_https_and_no_credentials_are_fine(base: str) -> None:
    load_settings(fhir_base_url=base, fhir_auth="bearer", fhir_token=TOKEN)
    load_settings(fhir_base_url="https://fhir.example.se/fhir", fhir_auth="bearer", fhir_token=TOKEN)
    load_settings(fhir_base_url="http://fhir.example.se/fhir")


def test_the_cli_says_so_in_one_line() -> None:
    result = run(
        "worker",
        env={"MMR_FHIR_BASE_URL": "http://fhir.example.se/fhir", "MMR_FHIR_AUTH": "bearer", "MMR_FHIR_TOKEN": TOKEN},
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "MMR_FHIR_BASE_URL" in lines[0], result.stderr


def test_a_ca_variable_pointing_at_nothing_stops_start_up(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "missing.pem"))
    with pytest.raises(ConfigError, match=r"^SSL_CERT_FILE"):
        load_settings(fhir_base_url="https://fhir.example.se/fhir")


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture
def private_https(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An HTTPS endpoint on loopback answering a CapabilityStatement, its certificate from a private CA."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl(
        "req",
        "-x509",
        *ec,
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=MMR test CA",
        cwd=tmp_path,
    )
    _openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1", cwd=tmp_path)
    (tmp_path / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        cwd=tmp_path,
    )

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            payload = json.dumps({"resourceType": "CapabilityStatement", "fhirVersion": "4.0.1"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/fhir+json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "server.pem", tmp_path / "server.key")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"https://127.0.0.1:{server.server_address[1]}/fhir", tmp_path / "ca.pem"
    server.shutdown()


def test_https_trusts_a_private_ca_given_as_ssl_cert_file(
    private_https: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    base, ca = private_https
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    with fhir_client(load_settings(fhir_base_url=base, fhir_retries=0)) as client, pytest.raises(FhirError) as info:
        client.capabilities()
    assert "certificate is not trusted" in info.value.message  # the public CAs do not know it

    monkeypatch.setenv("SSL_CERT_FILE", str(ca))
    with fhir_client(load_settings(fhir_base_url=base, fhir_retries=0)) as client:
        assert client.capabilities()["resourceType"] == "CapabilityStatement"
