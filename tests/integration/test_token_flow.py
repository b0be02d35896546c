"""A real OAuth client library gets tokens from a real server; PyJWT validates them."""

import httpx
import jwt
import pytest
from authlib.integrations.requests_client import OAuth2Session as AuthlibSession
from cryptography import x509
from oauthlib.oauth2 import BackendApplicationClient
from requests_oauthlib import OAuth2Session


@pytest.fixture
def registered(token_server):
    body = token_server.add_client("orders", scopes=["read", "write"], audiences=["inventory"])
    return body["client_id"], body["client_secret"]


def validate_with_jwks(server, token, audience="inventory"):
    jwks = jwt.PyJWKClient(f"{server.url}/.well-known/jwks.json")
    key = jwks.get_signing_key_from_jwt(token)
    return jwt.decode(token, key.key, algorithms=["ES256"], audience=audience, issuer=server.url)


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_authlib_client_gets_a_token_that_the_jwks_validates(token_server, registered, method):
    client_id, secret = registered
    with AuthlibSession(
        client_id, secret, token_endpoint_auth_method=method, scope="read"
    ) as oauth:
        token = oauth.fetch_token(f"{token_server.url}/api/token", grant_type="client_credentials")
    assert token["token_type"] == "Bearer"
    assert token["expires_in"] == 900
    assert token["scope"] == "read"
    claims = validate_with_jwks(token_server, token["access_token"])
    assert claims["sub"] == claims["client_id"] == "orders"
    assert claims["scope"] == "read"
    assert jwt.get_unverified_header(token["access_token"])["typ"] == "at+jwt"


def test_requests_oauthlib_backend_client(token_server, registered, monkeypatch):
    # The test server speaks plain HTTP on loopback; oauthlib refuses that unless told.
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    client_id, secret = registered
    session = OAuth2Session(client=BackendApplicationClient(client_id=client_id))
    token = session.fetch_token(
        f"{token_server.url}/api/token", client_id=client_id, client_secret=secret
    )
    assert validate_with_jwks(token_server, token["access_token"])["client_id"] == "orders"


def test_token_validates_with_the_certificate(token_server, registered):
    client_id, secret = registered
    response = token_server.token(client_id, secret)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    pem = token_server_get(token_server, "/api/cert")
    assert pem.headers["content-type"].startswith("application/x-pem-file")
    cert = x509.load_pem_x509_certificates(pem.content)[0]
    claims = jwt.decode(
        response.json()["access_token"],
        cert.public_key(),
        algorithms=["ES256"],
        audience="inventory",
    )
    assert claims["iss"] == token_server.url


def token_server_get(server, path):
    return httpx.get(server.url + path, timeout=10)


def test_metadata_points_at_the_endpoints(token_server):
    for path in ("/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"):
        meta = token_server_get(token_server, path).json()
        assert meta["issuer"] == token_server.url
        assert meta["token_endpoint"] == f"{token_server.url}/api/token"
        assert meta["jwks_uri"] == f"{token_server.url}/.well-known/jwks.json"
        assert meta["grant_types_supported"] == ["client_credentials"]
        assert set(meta["token_endpoint_auth_methods_supported"]) == {
            "client_secret_basic",
            "client_secret_post",
        }


def test_an_issuer_with_a_path_has_its_metadata_where_rfc_8414_puts_it(server_factory):
    # Behind a proxy that serves it under /oauth: RFC 8414 §3.1 inserts the well-known
    # suffix before the path, and the SDK looks there (swarm_oauth.sdk.jwks.metadata_url).
    from swarm_oauth.sdk.jwks import metadata_url

    issuer = "https://gateway.test/oauth"
    server = server_factory(args=["--issuer", issuer])
    path = metadata_url(issuer).removeprefix("https://gateway.test")
    assert path == "/.well-known/oauth-authorization-server/oauth"
    for where in (path, "/.well-known/oauth-authorization-server"):
        meta = token_server_get(server, where).json()
        assert meta["issuer"] == issuer
        assert meta["token_endpoint"] == f"{issuer}/api/token"
    assert token_server_get(server, path + "/more").status_code == 404


def test_jwks_publishes_only_public_members_with_x5c(token_server):
    keys = token_server_get(token_server, "/.well-known/jwks.json").json()["keys"]
    assert len(keys) == 1
    (key,) = keys
    assert {"kty", "kid", "alg", "use", "x5c", "crv", "x", "y"} <= set(key)
    assert "d" not in key
    assert key["alg"] == "ES256"


@pytest.mark.parametrize("alg", ["RS256", "EdDSA"])
def test_other_algorithms(server_factory, alg):
    server = server_factory(args=["--signing-alg", alg, "--token-lifetime", "60"])
    body = server.add_client("svc")
    token = server.token("svc", body["client_secret"]).json()
    assert token["expires_in"] == 60
    jwks = jwt.PyJWKClient(f"{server.url}/.well-known/jwks.json")
    key = jwks.get_signing_key_from_jwt(token["access_token"])
    claims = jwt.decode(token["access_token"], key.key, algorithms=[alg], audience=server.url)
    assert claims["exp"] - claims["iat"] == 60


def test_several_workers_serve_one_port(server_factory):
    server = server_factory(args=["--workers", "2"])
    body = server.add_client("svc")
    for _ in range(10):
        assert server.token("svc", body["client_secret"]).status_code == 200
    # Each request on a new connection; the kernel spreads them over the workers, which
    # are children of the process started (uvicorn's supervisor), not that process itself.
    pids = server.worker_pids(2)
    assert server.proc is not None and server.proc.pid not in pids
