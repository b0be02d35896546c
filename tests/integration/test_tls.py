"""HTTPS on the token server, with a throwaway CA (trustme): tokens, the admin API and the
``clients`` command over TLS, checked against that CA only."""

from __future__ import annotations

import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import jwt
import pytest
import trustme

from swarm_oauth.admin_client import AdminAPIUnreachable, AdminClient, ca_context


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_files(ca, tmp_path) -> dict[str, Path]:
    cert = ca.issue_cert("127.0.0.1", "localhost")
    files = {"ca": tmp_path / "ca.pem", "cert": tmp_path / "cert.pem", "key": tmp_path / "key.pem"}
    ca.cert_pem.write_to_path(str(files["ca"]))
    cert.cert_chain_pems[0].write_to_path(str(files["cert"]))
    for extra in cert.cert_chain_pems[1:]:
        extra.write_to_path(str(files["cert"]), append=True)
    cert.private_key_pem.write_to_path(str(files["key"]))
    return files


@pytest.fixture
def https_server(server_factory, tls_files):
    return server_factory(
        env={
            "SWARM_OAUTH_TLS_CERT_FILE": str(tls_files["cert"]),
            "SWARM_OAUTH_TLS_KEY_FILE": str(tls_files["key"]),
        },
        scheme="https",
        verify=ca_context(tls_files["ca"]),
    )


def test_tokens_over_https_name_an_https_issuer(https_server):
    secret = https_server.add_client("svc")["client_secret"]
    token = https_server.token("svc", secret).json()["access_token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["iss"] == https_server.url
    assert https_server.url.startswith("https://")
    metadata = httpx.get(
        https_server.url + "/.well-known/oauth-authorization-server",
        verify=https_server.verify,
        timeout=10,
    ).json()
    assert metadata["token_endpoint"] == https_server.url + "/api/token"


def test_nothing_is_served_in_clear_or_to_a_client_that_trusts_another_ca(https_server):
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://{https_server.host}:{https_server.port}/healthz", timeout=5)
    other = ssl.create_default_context()
    trustme.CA().configure_trust(other)
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(https_server.url + "/healthz", verify=other, timeout=5)


def test_admin_client_and_clients_command_use_the_ca_bundle(https_server, tls_files):
    with AdminClient(
        https_server.url, https_server.admin_token, ca_bundle=tls_files["ca"]
    ) as admin:
        assert admin.add("svc") is not None
        assert [c["client_id"] for c in admin.list()] == ["svc"]
    with (
        AdminClient(https_server.url, https_server.admin_token) as system_trust,
        pytest.raises(AdminAPIUnreachable, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        system_trust.list()
    command = [sys.executable, "-m", "swarm_oauth", "clients", "--url", https_server.url]
    env = {"SWARM_OAUTH_ADMIN_TOKEN": https_server.admin_token, "PATH": "/usr/bin:/bin"}
    listed = subprocess.run(
        [*command, "--ca-bundle", str(tls_files["ca"]), "list"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    assert '"svc"' in listed.stdout


def test_a_key_that_does_not_match_fails_the_start_with_a_reason(ca, tls_files, tmp_path):
    other_key = tmp_path / "other-key.pem"
    ca.issue_cert("127.0.0.1").private_key_pem.write_to_path(str(other_key))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "swarm_oauth",
            "serve",
            "--data-dir",
            str(tmp_path / "data"),
            "--tls-cert-file",
            str(tls_files["cert"]),
            "--tls-key-file",
            str(other_key),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "not a PEM certificate with its key" in result.stderr
    assert "Traceback" not in result.stderr
