"""Issue 12: key/algorithm confusion, attempted against a Verifier for real.

An issuer whose JWKS we control is served over real HTTP (metadata and JWKS), so the
attacks can use what the real token server would never publish: a symmetric ``oct``
key, and an EC key under a header that claims another algorithm.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import gzip
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from swarm_oauth.sdk import (
    ExcessiveLifetime,
    InvalidAlgorithm,
    InvalidIssuer,
    KeySetUnavailable,
    MalformedToken,
    RevocationsUnavailable,
    TokenRequestError,
    TokenSource,
    TokenSourceError,
    UnknownKey,
    Verifier,
)
from tests.support.server import ServerProcess

AUDIENCE = "inventory"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


EC_KEY = ec.generate_private_key(ec.SECP256R1())
SHARED_SECRET = secrets.token_bytes(32)
# The JWKS of a careless issuer: its ES256 key and, next to it, a symmetric key.
CARELESS_JWKS = {
    "keys": [
        {
            **jwt.algorithms.ECAlgorithm.to_jwk(EC_KEY.public_key(), as_dict=True),
            "kid": "ec",
            "alg": "ES256",
            "use": "sig",
        },
        {"kty": "oct", "kid": "shared", "alg": "HS256", "k": b64(SHARED_SECRET)},
    ]
}


class Issuer:
    """Serves RFC 8414 metadata and a JWKS that the test writes, as files on 127.0.0.1."""

    def __init__(self, root: Path) -> None:
        self.root = root
        handler = functools.partial(SimpleHTTPRequestHandler, directory=str(root))
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        metadata = {"issuer": self.url, "jwks_uri": f"{self.url}/jwks.json"}
        self.serve(".well-known/oauth-authorization-server", metadata)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def serve(self, path: str, document: dict[str, Any]) -> None:
        file = self.root / path
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(json.dumps(document))

    def claims(self) -> dict[str, Any]:
        now = int(time.time())
        return {
            "iss": self.url, "sub": "orders", "client_id": "orders", "aud": AUDIENCE,
            "iat": now, "exp": now + 600, "jti": secrets.token_hex(8), "scope": "read",
        }  # fmt: skip

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def issuer(tmp_path: Path) -> Iterator[Issuer]:
    served = Issuer(tmp_path)
    served.serve("jwks.json", CARELESS_JWKS)
    yield served
    served.close()


def signed(header: dict[str, Any], claims: dict[str, Any], sign: Any) -> str:
    """A compact JWS whose header says what the attacker likes, signed by ``sign``."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64(sign(signing_input.encode()))}"


def hmac_sha256(message: bytes) -> bytes:
    return hmac.new(SHARED_SECRET, message, hashlib.sha256).digest()


def es256(message: bytes) -> bytes:
    return jwt.algorithms.ECAlgorithm(jwt.algorithms.ECAlgorithm.SHA256).sign(message, EC_KEY)


def test_honest_es256_token_verifies(issuer: Issuer) -> None:
    # The setup works: what is refused below is refused for the attack, not the setup.
    token = signed({"alg": "ES256", "typ": "at+jwt", "kid": "ec"}, issuer.claims(), es256)
    assert Verifier(issuer=issuer.url, audience=AUDIENCE).verify(token)["sub"] == "orders"


def test_hmac_signed_token_labelled_es256_naming_an_oct_key_is_refused(issuer: Issuer) -> None:
    forged = signed(
        {"alg": "ES256", "typ": "at+jwt", "kid": "shared"}, issuer.claims(), hmac_sha256
    )
    verifier = Verifier(issuer=issuer.url, audience=AUDIENCE)
    with pytest.raises(UnknownKey, match="'shared'"):
        verifier.verify(forged)  # the oct key was never taken into the key set
    assert set(verifier.keys.published or ()) == {"ec"}

    # PyJWT 2.13+ (the floor in pyproject.toml) refuses it too when handed the oct key.
    with pytest.raises(jwt.InvalidAlgorithmError):
        jwt.decode(forged, jwt.PyJWK(CARELESS_JWKS["keys"][1]), algorithms=["ES256"],
                   audience=AUDIENCE)  # fmt: skip


@pytest.mark.parametrize("claimed", ["ES384", "RS256"])
def test_es256_key_cannot_verify_a_token_that_claims_another_alg(
    issuer: Issuer, claimed: str
) -> None:
    # Signed with the key's own ES256 math, so only the alg label is wrong.
    token = signed({"alg": claimed, "typ": "at+jwt", "kid": "ec"}, issuer.claims(), es256)
    verifier = Verifier(issuer=issuer.url, audience=AUDIENCE, algorithms=["ES256", claimed])
    with pytest.raises(InvalidAlgorithm, match=f"alg {claimed} is not the algorithm of key 'ec'"):
        verifier.verify(token)


def test_max_lifetime_refuses_long_lived_tokens(token_server: ServerProcess) -> None:
    body = token_server.add_client("orders", audiences=[AUDIENCE])
    response = token_server.token("orders", body["client_secret"], audience=AUDIENCE)
    token = response.json()["access_token"]
    lifetime = response.json()["expires_in"]  # the server's default, 900 s
    assert Verifier(issuer=token_server.url, audience=AUDIENCE).verify(token)["sub"] == "orders"
    fitting = Verifier(issuer=token_server.url, audience=AUDIENCE, max_lifetime=lifetime)
    assert fitting.verify(token)["sub"] == "orders"
    strict = Verifier(issuer=token_server.url, audience=AUDIENCE, max_lifetime=lifetime - 1)
    with pytest.raises(ExcessiveLifetime, match=f"{lifetime}s .exp - iat. exceeds"):
        strict.verify(token)


def test_entries_of_the_wrong_shape_spoil_no_other_key(issuer: Issuer) -> None:
    # PyJWK raises TypeError or NotImplementedError for these, not its own errors.
    rsa_public = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    junk = [
        {"kty": ["EC"], "kid": "kty-list"},
        {**CARELESS_JWKS["keys"][0], "kid": "alg-dict", "alg": {"name": "ES256"}},
        {**jwt.algorithms.RSAAlgorithm.to_jwk(rsa_public, as_dict=True), "kid": "none",
         "alg": "none"},
    ]  # fmt: skip
    issuer.serve("jwks.json", {"keys": [*junk, CARELESS_JWKS["keys"][0]]})
    token = signed({"alg": "ES256", "typ": "at+jwt", "kid": "ec"}, issuer.claims(), es256)
    verifier = Verifier(issuer=issuer.url, audience=AUDIENCE)
    assert verifier.verify(token)["sub"] == "orders"
    for kid in ("kty-list", "alg-dict", "none"):
        named = signed({"alg": "ES256", "typ": "at+jwt", "kid": kid}, issuer.claims(), es256)
        with pytest.raises(UnknownKey):
            verifier.verify(named)


def test_a_key_set_nested_too_deeply_is_unavailable(issuer: Issuer) -> None:
    (issuer.root / "jwks.json").write_text("[" * 200_000)
    token = signed({"alg": "ES256", "typ": "at+jwt", "kid": "ec"}, issuer.claims(), es256)
    with pytest.raises(KeySetUnavailable, match="something other than JSON"):
        Verifier(issuer=issuer.url, audience=AUDIENCE).verify(token)


def test_a_revocation_list_nested_too_deeply_is_unavailable_and_says_so(issuer: Issuer) -> None:
    (issuer.root / "revocations").write_text("[" * 200_000)
    token = signed({"alg": "ES256", "typ": "at+jwt", "kid": "ec"}, issuer.claims(), es256)
    verifier = Verifier(
        issuer=issuer.url,
        audience=AUDIENCE,
        check_revocations=True,
        revocations_url=f"{issuer.url}/revocations",
    )
    with pytest.raises(RevocationsUnavailable, match="not a revocation list: RecursionError"):
        verifier.verify(token)


@pytest.mark.parametrize(
    ("claims", "error"),
    [({"exp": 10**400}, MalformedToken), ({"iss": 5}, InvalidIssuer)],
    ids=["exp beyond float", "iss a number"],
)
def test_claims_the_issuer_signed_in_an_impossible_shape_are_refused_as_such(
    issuer: Issuer, claims: dict[str, Any], error: type[Exception]
) -> None:
    token = signed(
        {"alg": "ES256", "typ": "at+jwt", "kid": "ec"}, {**issuer.claims(), **claims}, es256
    )
    with pytest.raises(error):
        Verifier(issuer=issuer.url, audience=AUDIENCE).verify(token)


def test_a_redirect_never_carries_the_client_secret_even_with_a_client_that_follows(
    tmp_path: Path,
) -> None:
    received: list[bytes] = []

    class Elsewhere(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(500)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    elsewhere = ThreadingHTTPServer(("127.0.0.1", 0), Elsewhere)
    target = f"http://127.0.0.1:{elsewhere.server_address[1]}/steal"

    class Redirecting(Elsewhere):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(307)
            self.send_header("Location", target)
            self.send_header("Content-Length", "0")
            self.end_headers()

    redirecting = ThreadingHTTPServer(("127.0.0.1", 0), Redirecting)
    for server in (elsewhere, redirecting):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        source = TokenSource(
            "orders",
            f"http://127.0.0.1:{redirecting.server_address[1]}/api/token",
            client_secret="s3cr3t-value",
            auth_method="client_secret_post",
            http_client=httpx.Client(follow_redirects=True),
        )
        with pytest.raises(TokenRequestError, match="307"):
            source.token()
        assert received == []
    finally:
        for server in (elsewhere, redirecting):
            server.shutdown()
            server.server_close()


class Misbehaving(BaseHTTPRequestHandler):
    """Answers every request 200 with a body that is either dripped a byte at a time
    (``/drip``) or a small gzip stream of 20 MiB of spaces (``/bomb``; ``/stacked``
    gzips it once more); ``/headers`` drips a header instead, never ending it (also to a
    request for another host's ``/headers``: as a proxy would)."""

    BOMB = gzip.compress(b" " * (20 * 1024 * 1024))

    def do_GET(self) -> None:
        if self.path.endswith("/headers"):  # as a proxy, the whole URL
            self.drip(b"HTTP/1.1 200 OK\r\nX-Drip: ")
            return
        if self.path in ("/bomb", "/stacked"):
            body = self.BOMB if self.path == "/bomb" else gzip.compress(self.BOMB)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Encoding", "gzip" if self.path == "/bomb" else "gzip, gzip")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "100000")
        self.end_headers()
        self.drip()

    def drip(self, start: bytes = b"") -> None:
        deadline = time.monotonic() + 30
        with contextlib.suppress(OSError):
            self.wfile.write(start)
            while time.monotonic() < deadline:
                self.wfile.write(b" " if not start else b"x")
                self.wfile.flush()
                time.sleep(0.1)  # each read well within the timeout, the whole far beyond

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.do_GET()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def misbehaving() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Misbehaving)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_body_dripped_a_byte_at_a_time_ends_at_the_timeout(misbehaving: str) -> None:
    started = time.monotonic()
    source = TokenSource("orders", f"{misbehaving}/drip", client_secret="s3cr3t", timeout=1.0)
    with pytest.raises(TokenSourceError):
        source.token()
    verifier = Verifier("https://issuer", AUDIENCE, f"{misbehaving}/drip", timeout=1.0)
    token = signed({"alg": "ES256", "typ": "at+jwt", "kid": "ec"}, {"sub": "x"}, es256)
    with pytest.raises(KeySetUnavailable, match="ReadTimeout"):
        verifier.verify(token)
    assert time.monotonic() - started < 10  # two timeouts of 1 s, not the 30 s drip


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_headers_dripped_a_byte_at_a_time_end_at_the_timeout(misbehaving: str, mode: str) -> None:
    source = TokenSource("orders", f"{misbehaving}/headers", client_secret="s3cr3t", timeout=1.0)
    verifier = Verifier("https://issuer", AUDIENCE, f"{misbehaving}/headers", timeout=1.0)
    token = signed({"alg": "ES256", "typ": "at+jwt", "kid": "ec"}, {"sub": "x"}, es256)
    for call in (
        (source.token, source.atoken),
        (lambda: verifier.verify(token), lambda: verifier.averify(token)),
    ):
        started = time.monotonic()
        with pytest.raises((TokenSourceError, KeySetUnavailable), match="ReadTimeout"):
            call[0]() if mode == "sync" else asyncio.run(call[1]())
        assert time.monotonic() - started < 1.5  # the timeout, not the 30 s drip


def test_a_proxy_dripping_headers_holds_a_caller_no_longer(
    misbehaving: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", misbehaving)
    source = TokenSource("orders", "http://tokens.test/headers", client_secret="s", timeout=1.0)
    started = time.monotonic()
    with pytest.raises(TokenSourceError, match="ReadTimeout"):
        source.token()
    assert time.monotonic() - started < 1.5


def test_a_body_that_decompresses_past_the_cap_is_refused(misbehaving: str) -> None:
    verifier = Verifier("https://issuer", AUDIENCE, f"{misbehaving}/bomb")
    token = signed({"alg": "ES256", "typ": "at+jwt", "kid": "ec"}, {"sub": "x"}, es256)
    with pytest.raises(KeySetUnavailable, match="exceeds 16777216 bytes"):
        verifier.verify(token)


def test_a_content_coding_that_inflates_beyond_gzip_is_refused(misbehaving: str) -> None:
    # Stacked codings (or brotli and zstd, when installed) inflate further per read than
    # the cap can be checked at.
    verifier = Verifier("https://issuer", AUDIENCE, f"{misbehaving}/stacked")
    token = signed({"alg": "ES256", "typ": "at+jwt", "kid": "ec"}, {"sub": "x"}, es256)
    with pytest.raises(KeySetUnavailable, match="content coding 'gzip, gzip'"):
        verifier.verify(token)


class Recording(BaseHTTPRequestHandler):
    """A token endpoint (``POST``) and a JWKS (``GET``) that record each request's
    ``Accept-Encoding``."""

    accepted: ClassVar[list[str | None]] = []
    KEYS: ClassVar[dict[str, Any]] = {
        "keys": [
            {
                **jwt.algorithms.ECAlgorithm.to_jwk(EC_KEY.public_key(), as_dict=True),
                "kid": "another",
                "alg": "ES256",
                "use": "sig",
            }
        ]
    }

    def do_GET(self) -> None:
        self.answer(self.KEYS)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.answer({"access_token": "t", "token_type": "Bearer", "expires_in": 60})

    def answer(self, document: dict[str, Any]) -> None:
        self.accepted.append(self.headers.get("Accept-Encoding"))
        body = json.dumps(document).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_every_request_accepts_only_the_codings_the_sdk_reads(
    monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    # httpx's default names br and zstd once brotli or zstandard is installed (a
    # dependency of something else, say); a server or proxy honouring it would send a
    # coding the SDK refuses, and every token and key fetch would fail.
    monkeypatch.setattr(httpx._client, "ACCEPT_ENCODING", "gzip, deflate, br, zstd")
    Recording.accepted = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recording)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        source = TokenSource("orders", f"{url}/token", client_secret="s3cr3t")
        verifier = Verifier("https://issuer", AUDIENCE, f"{url}/jwks")
        token = signed({"alg": "ES256", "typ": "at+jwt", "kid": "ec"}, {"sub": "x"}, es256)
        if mode == "sync":
            assert source.token() == "t"
            with pytest.raises(UnknownKey):
                verifier.verify(token)
        else:
            assert asyncio.run(source.atoken()) == "t"
            with pytest.raises(UnknownKey):
                asyncio.run(verifier.averify(token))
        assert Recording.accepted and set(Recording.accepted) == {"gzip, deflate"}
    finally:
        server.shutdown()
        server.server_close()
