"""TokenSource's pure parts: response parsing, refresh timing, configuration."""

from __future__ import annotations

import base64
from pathlib import Path

import httpx
import pytest

from swarm_oauth.sdk import ConfigurationError, TokenRequestError, TokenSource
from swarm_oauth.sdk.token_source import (
    DEFAULT_LIFETIME_SECONDS,
    MAX_LIFETIME_SECONDS,
    CachedToken,
    basic_credentials,
    parse_token_response,
)

URL = "http://tokens.example/api/token"


def response(status: int, body: object = None, *, text: str | None = None) -> httpx.Response:
    request = httpx.Request("POST", URL)
    if text is not None:
        return httpx.Response(status, text=text, request=request)
    return httpx.Response(status, json=body, request=request)


def test_refresh_at_80_percent_of_the_lifetime_counted_from_the_request() -> None:
    cached = CachedToken.received("tok", lifetime=900, sent_at=1000.0, ratio=0.8)
    assert cached.requested_at == 1000.0
    assert cached.refresh_at == 1720.0
    assert cached.expires_at == 1900.0


def test_cached_token_repr_hides_the_token() -> None:
    assert "secret-token" not in repr(CachedToken("secret-token", 0.0, 1.0, 2.0))


def test_parse_success() -> None:
    body = {"access_token": "abc", "token_type": "bearer", "expires_in": 900, "scope": "a"}
    assert parse_token_response(response(200, body)) == ("abc", 900.0)


def test_parse_without_expires_in_assumes_a_short_lifetime() -> None:
    body = {"access_token": "abc", "token_type": "Bearer"}
    assert parse_token_response(response(200, body)) == ("abc", DEFAULT_LIFETIME_SECONDS)


def test_parse_refusal_carries_status_and_rfc6749_error() -> None:
    body = {"error": "invalid_client", "error_description": "unknown client or wrong secret"}
    with pytest.raises(TokenRequestError) as caught:
        parse_token_response(response(401, body))
    assert caught.value.status_code == 401
    assert caught.value.error == "invalid_client"
    assert "unknown client or wrong secret" in str(caught.value)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("20", 20.0),
        (" 7 ", 7.0),
        ("86400", 30.0),
        ("²", None),
        ("٣", None),
        ("-1", None),
        ("1.5", None),
        ("Wed, 21 Oct 2026 07:28:00 GMT", None),
    ],
)
def test_retry_after_in_seconds_only_from_ascii_digits(value: str, seconds: float | None) -> None:
    request = httpx.Request("POST", URL)
    refused = httpx.Response(503, headers={"Retry-After": value.encode()}, request=request)
    with pytest.raises(TokenRequestError) as caught:
        parse_token_response(refused)
    assert caught.value.retry_after == seconds


def test_parse_refusal_without_json_body() -> None:
    with pytest.raises(TokenRequestError) as caught:
        parse_token_response(response(502, text="<html>bad gateway</html>"))
    assert caught.value.status_code == 502
    assert caught.value.error is None


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ([1, 2], "JSON object"),
        ({"token_type": "Bearer"}, "no access_token"),
        ({"access_token": "", "token_type": "Bearer"}, "no access_token"),
        ({"access_token": "a", "token_type": "mac"}, "not Bearer"),
        ({"access_token": "a", "token_type": "Bearer", "expires_in": -5}, "expires_in"),
        ({"access_token": "a", "token_type": "Bearer", "expires_in": "900"}, "expires_in"),
        ({"access_token": "a", "token_type": "Bearer", "expires_in": True}, "expires_in"),
    ],
)
def test_parse_rejects_unusable_success_bodies(body: object, reason: str) -> None:
    with pytest.raises(TokenRequestError, match=reason) as caught:
        parse_token_response(response(200, body))
    assert caught.value.status_code == 200  # None says the endpoint was unreachable


@pytest.mark.parametrize("expires_in", ["NaN", "Infinity", "-Infinity"])
def test_parse_rejects_an_expires_in_that_is_no_number_of_seconds(expires_in: str) -> None:
    # Python's json reads them: NaN would cache nothing, Infinity keep a token forever.
    text = f'{{"access_token": "a", "token_type": "Bearer", "expires_in": {expires_in}}}'
    with pytest.raises(TokenRequestError, match="invalid expires_in"):
        parse_token_response(response(200, text=text))


@pytest.mark.parametrize("expires_in", ["1" + "0" * 400, "2147483647", "1e300"])
def test_parse_takes_a_huge_expires_in_as_ten_years(expires_in: str) -> None:
    # "Never expires", as some servers say it; the first is more than float() holds.
    text = f'{{"access_token": "a", "token_type": "Bearer", "expires_in": {expires_in}}}'
    assert parse_token_response(response(200, text=text)) == ("a", MAX_LIFETIME_SECONDS)


def test_parse_of_a_body_nested_too_deeply_is_a_token_request_error() -> None:
    with pytest.raises(TokenRequestError, match="without a JSON object"):
        parse_token_response(response(200, text="[" * 200_000))


def test_basic_credentials_form_encode_before_base64() -> None:
    header = basic_credentials("svc:1", "a+b/c")
    assert header.startswith("Basic ")
    assert base64.b64decode(header[6:]).decode() == "svc%3A1:a%2Bb%2Fc"


ENV = {
    "OAUTH_CLIENT_ID": "orders",
    "OAUTH_TOKEN_URL": URL,
    "OAUTH_CLIENT_SECRET_FILE": "/run/secrets/oauth_client_secret",
}


def test_from_env_reads_the_registrars_variables() -> None:
    source = TokenSource.from_env({**ENV, "OAUTH_SCOPE": "read write", "OAUTH_AUDIENCE": "b"})
    assert (source.client_id, source.token_url) == ("orders", URL)
    assert source.scope == "read write"
    assert source.audience == "b"


def test_from_env_names_every_missing_variable() -> None:
    with pytest.raises(ConfigurationError) as caught:
        TokenSource.from_env({"OAUTH_CLIENT_ID": "orders"})
    assert "OAUTH_TOKEN_URL" in str(caught.value)
    assert "OAUTH_CLIENT_SECRET_FILE" in str(caught.value)
    assert "OAUTH_CLIENT_ID" not in str(caught.value)


def test_from_env_options_win_and_an_explicit_secret_replaces_the_file() -> None:
    env = {k: v for k, v in ENV.items() if k != "OAUTH_CLIENT_SECRET_FILE"}
    source = TokenSource.from_env(env, client_secret="s3cret", scope=["a", "b"])
    assert source.scope == "a b"
    with pytest.raises(ConfigurationError):
        TokenSource.from_env(env)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"client_secret": "x", "client_secret_file": Path("/x")},
        {"client_secret": "x", "refresh_ratio": 0},
        {"client_secret": "x", "refresh_ratio": 1.5},
        {"client_secret": "x", "auth_method": "private_key_jwt"},
    ],
)
def test_constructor_rejects_bad_settings(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        TokenSource("orders", URL, **kwargs)  # type: ignore[arg-type]
