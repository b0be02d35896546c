"""The SDK against a token server that serves HTTPS with a private CA (trustme): with the
CA as ``ca_bundle`` (or ``SWARM_OAUTH_CA_BUNDLE``) tokens are fetched and verified, keys and
revocations included; with another CA, or the system's, every request fails with an error
that names the URL."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme

from swarm_oauth.sdk import (
    ConfigurationError,
    IssuerConfigurationError,
    KeySetUnavailable,
    RevocationsUnavailable,
    TokenRequestError,
    TokenSource,
    Verifier,
)
from tests.support.requirements import unavailable
from tests.support.server import ServerProcess


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture
def other_ca_file(tmp_path: Path) -> Path:
    path = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(path))
    return path


@pytest.fixture
def https_server(server_factory: Any, ca: trustme.CA, ca_file: Path, tmp_path: Path) -> Any:
    issued = ca.issue_cert("127.0.0.1")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    for index, pem in enumerate(issued.cert_chain_pems):
        pem.write_to_path(str(cert), append=index > 0)
    issued.private_key_pem.write_to_path(str(key))
    return server_factory(
        env={"SWARM_OAUTH_TLS_CERT_FILE": str(cert), "SWARM_OAUTH_TLS_KEY_FILE": str(key)},
        scheme="https",
        verify=ssl.create_default_context(cafile=str(ca_file)),
    )


@pytest.fixture
def secret_file(https_server: ServerProcess, tmp_path: Path) -> Path:
    body = https_server.add_client("orders", scopes=["read"], audiences=["inventory"])
    path = tmp_path / "secret"
    path.write_text(body["client_secret"])
    return path


def source(server: ServerProcess, secret_file: Path, **options: Any) -> TokenSource:
    return TokenSource(
        "orders", f"{server.url}/api/token", client_secret_file=secret_file, **options
    )


def verifier(server: ServerProcess, **options: Any) -> Verifier:
    return Verifier(issuer=server.url, audience="inventory", check_revocations=True, **options)


def test_with_the_ca_bundle_tokens_are_fetched_and_verified_over_https(
    https_server: ServerProcess, secret_file: Path, ca_file: Path
) -> None:
    assert https_server.url.startswith("https://")
    token = source(https_server, secret_file, ca_bundle=ca_file).token()
    trusting = verifier(https_server, ca_bundle=ca_file)
    claims = trusting.verify(token)  # metadata, JWKS and revocation list, all over HTTPS
    assert claims["iss"] == https_server.url
    assert trusting.keys.published is not None
    environ = {
        "OAUTH_CLIENT_ID": "orders",
        "OAUTH_TOKEN_URL": f"{https_server.url}/api/token",
        "OAUTH_CLIENT_SECRET_FILE": str(secret_file),
        "SWARM_OAUTH_CA_BUNDLE": str(ca_file),
    }
    from_env = TokenSource.from_env(environ)

    async def main() -> dict[str, Any]:
        return await verifier(https_server, ca_bundle=str(ca_file)).averify(await from_env.atoken())

    assert asyncio.run(main())["sub"] == "orders"


def test_another_ca_fails_every_request_naming_its_url(
    https_server: ServerProcess, secret_file: Path, other_ca_file: Path
) -> None:
    token_url = f"{https_server.url}/api/token"
    for untrusting in (source(https_server, secret_file, ca_bundle=other_ca_file),
                       source(https_server, secret_file)):  # fmt: skip
        with pytest.raises(TokenRequestError) as refused:
            untrusting.token()
        message = str(refused.value)
        assert f"token endpoint {token_url} unreachable" in message
        assert "CERTIFICATE_VERIFY_FAILED" in message
        assert "ca_bundle" in message and "SWARM_OAUTH_CA_BUNDLE" in message  # the way out
        assert refused.value.status_code is None

    # A token to verify, fetched by a client that does trust the server.
    token = httpx.post(
        token_url,
        data={"grant_type": "client_credentials", "audience": "inventory"},
        auth=("orders", secret_file.read_text()),
        verify=https_server.verify,
    ).json()["access_token"]
    revocations = re.escape(f"{https_server.url}/api/revocations")
    with pytest.raises(RevocationsUnavailable, match=f"{revocations}.*CERTIFICATE_VERIFY_FAILED"):
        verifier(https_server, ca_bundle=other_ca_file).verify(token)
    metadata = re.escape(f"{https_server.url}/.well-known/oauth-authorization-server")
    with pytest.raises(IssuerConfigurationError, match=f"{metadata}.*CERTIFICATE_VERIFY_FAILED"):
        Verifier(issuer=https_server.url, audience="inventory", ca_bundle=other_ca_file).verify(
            token
        )
    jwks = f"{https_server.url}/.well-known/jwks.json"
    with pytest.raises(
        KeySetUnavailable, match=f"JWKS at {re.escape(jwks)}.*CERTIFICATE_VERIFY_FAILED"
    ):
        Verifier(https_server.url, "inventory", jwks, ca_bundle=other_ca_file).verify(token)


def test_a_ca_bundle_that_cannot_work_is_refused_at_once(tmp_path: Path) -> None:
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("not a certificate")
    for path in (tmp_path / "missing.pem", not_pem):
        named = re.escape(f"ca_bundle {path}: not a readable PEM file of CA certificates")
        with pytest.raises(ConfigurationError, match=named):
            Verifier(issuer="https://i", audience="a", ca_bundle=path)
        with pytest.raises(ConfigurationError, match=named):
            TokenSource("c", "https://i/api/token", client_secret="s", ca_bundle=path)
    both = {"http_client": httpx.Client(), "async_http_client": httpx.AsyncClient()}
    with pytest.raises(ConfigurationError, match="not both"):
        TokenSource("c", "https://i/api/token", client_secret="s", ca_bundle=not_pem, **both)
    # The variable is for the clients the source makes; your own bring their own verify=,
    # and with one of yours it is for the other side's.
    environ = {"OAUTH_CLIENT_ID": "c", "OAUTH_TOKEN_URL": "https://i/api/token",
               "OAUTH_CLIENT_SECRET_FILE": "/run/secrets/s",
               "SWARM_OAUTH_CA_BUNDLE": str(not_pem)}  # fmt: skip
    for options in ({}, {"http_client": httpx.Client()}):
        with pytest.raises(ConfigurationError, match=f"ca_bundle {re.escape(str(not_pem))}"):
            TokenSource.from_env(environ, **options)
    assert TokenSource.from_env(environ, **both).client_id == "c"


def test_with_a_sync_client_of_yours_the_async_side_still_trusts_the_ca_bundle(
    https_server: ServerProcess, secret_file: Path, ca_file: Path
) -> None:
    yours = httpx.Client(verify=ssl.create_default_context(cafile=str(ca_file)))
    requests: list[httpx.Request] = []
    yours.event_hooks["request"].append(requests.append)
    first = source(https_server, secret_file, ca_bundle=ca_file, http_client=yours)
    assert asyncio.run(first.atoken())  # by a client the source made, trusting ca_bundle
    assert requests == []
    assert source(https_server, secret_file, ca_bundle=ca_file, http_client=yours).token()
    assert len(requests) == 1  # and by yours


SYSTEM_TRUST_CHECK = """
import sys
from swarm_oauth.sdk import TokenSource
token = TokenSource("orders", sys.argv[1], client_secret_file=sys.argv[2]).token()
print("token", len(token) > 0)
"""


def test_without_a_ca_bundle_the_systems_cas_count(
    https_server: ServerProcess, secret_file: Path, ca: trustme.CA, tmp_path: Path
) -> None:
    # A private CA added to the system's bundle (what update-ca-certificates does in a
    # service's image) is trusted with no ca_bundle at all. The bundle is changed for a
    # child process only, in a mount namespace of its own: nothing on this machine changes.
    system = Path(os.path.realpath(ssl.get_default_verify_paths().openssl_cafile))
    if os.geteuid() != 0 or not shutil.which("unshare") or not system.is_file():
        unavailable("needs root, unshare(1) and a system CA bundle to add a CA to, privately")
    bundle = tmp_path / "system-bundle.pem"
    bundle.write_bytes(system.read_bytes() + ca.cert_pem.bytes())
    env = {k: v for k, v in os.environ.items() if k not in ("SSL_CERT_FILE", "SSL_CERT_DIR")}
    script = 'mount --bind "$1" "$2" && shift 2 && exec "$@"'
    result = subprocess.run(
        ["unshare", "-m", "sh", "-c", script, "sh", str(bundle), str(system),
         sys.executable, "-c", SYSTEM_TRUST_CHECK, f"{https_server.url}/api/token",
         str(secret_file)],
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "token True"
