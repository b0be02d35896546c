"""Every malformed token request gets the RFC 6749 §5.2 error, and nothing changes."""

import base64

import httpx
import pytest


@pytest.fixture
def client_secret(token_server):
    return token_server.add_client("orders", scopes=["read"], audiences=["inventory"])[
        "client_secret"
    ]


FORM = "application/x-www-form-urlencoded"


def post(server, content, content_type=FORM, auth=None, method="POST"):
    headers = {"Content-Type": content_type} if content_type else {}
    return httpx.request(
        method, server.url + "/api/token", content=content, headers=headers, auth=auth, timeout=10
    )


CASES = [
    # (content, content type, use basic auth, status, error)
    (b"grant_type=client_credentials", "application/json", True, 400, "invalid_request"),
    (b"grant_type=client_credentials", None, True, 400, "invalid_request"),
    (b"", FORM, True, 400, "invalid_request"),
    (b"grant_type=password&username=a&password=b", FORM, True, 400, "unsupported_grant_type"),
    (b"grant_type=authorization_code&code=x", FORM, True, 400, "unsupported_grant_type"),
    (
        b"grant_type=client_credentials&grant_type=client_credentials",
        FORM,
        True,
        400,
        "invalid_request",
    ),
    (b"grant_type=client_credentials&scope=read&scope=read", FORM, True, 400, "invalid_request"),
    (b"grant_type=client_credentials&scope=admin", FORM, True, 400, "invalid_scope"),
    (b"grant_type=client_credentials&audience=payroll", FORM, True, 400, "invalid_target"),
    (b"grant_type=client_credentials&resource=payroll", FORM, True, 400, "invalid_target"),
    (b"grant_type=client_credentials&client_secret=x", FORM, True, 400, "invalid_request"),
    (b"grant_type=client_credentials", FORM, False, 401, "invalid_client"),
    (
        b"grant_type=client_credentials&client_id=orders&client_secret=wrong",
        FORM,
        False,
        401,
        "invalid_client",
    ),
    (
        b"grant_type=client_credentials&client_id=%C3%A9&client_secret=x",
        FORM,
        False,
        401,
        "invalid_client",
    ),
    (b"grant_type=client_credentials&x=\xff", FORM, True, 400, "invalid_request"),
    (b"grant_type=client_credentials&pad=" + b"a" * 9000, FORM, True, 413, "invalid_request"),
]


@pytest.mark.parametrize(("content", "content_type", "basic", "status", "error"), CASES)
def test_token_errors(token_server, client_secret, content, content_type, basic, status, error):
    auth = ("orders", client_secret) if basic else None
    response = post(token_server, content, content_type, auth)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == error
    assert body["error_description"]
    assert set(body) == {"error", "error_description"}
    assert response.headers["cache-control"] == "no-store"
    if status == 401:
        assert response.headers["www-authenticate"].startswith("Basic")
    # nothing changed: the client still gets tokens with its secret
    assert token_server.token("orders", client_secret).status_code == 200


def test_wrong_basic_secret_is_401_with_challenge(token_server, client_secret):
    response = post(token_server, b"grant_type=client_credentials", auth=("orders", "nope"))
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert 'Basic realm="swarm-oauth"' in response.headers["www-authenticate"]


def test_get_is_405(token_server):
    response = post(token_server, b"", method="GET")
    assert response.status_code == 405
    assert response.json()["error"] == "invalid_request"
    assert response.headers["allow"] == "POST"


def test_chunked_oversized_body_is_refused(token_server, client_secret):
    def chunks():
        yield b"grant_type=client_credentials&pad="
        for _ in range(20):
            yield b"a" * 1000

    response = httpx.post(
        token_server.url + "/api/token",
        content=chunks(),
        headers={"Content-Type": FORM},
        auth=("orders", client_secret),
    )
    assert response.status_code == 413
    assert response.json()["error"] == "invalid_request"


def test_non_ascii_basic_credentials_are_401_not_500(token_server, client_secret):
    response = httpx.post(
        token_server.url + "/api/token",
        content=b"grant_type=client_credentials",
        headers={"Content-Type": FORM, "Authorization": b"Basic \xe9\xe9\xe9\xe9"},
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_no_scope_member_when_nothing_is_granted(token_server):
    secret = token_server.add_client("plain")["client_secret"]
    body = token_server.token("plain", secret).json()
    assert "scope" not in body
    assert body["token_type"] == "Bearer"


@pytest.mark.parametrize("path", ["/api/token", "/api/introspect"])
@pytest.mark.parametrize("name", ["Authorization", "Content-Type"])
def test_a_repeated_authorization_or_content_type_is_invalid_request(
    token_server, client_secret, path, name
):
    # Which one counts would be a guess, and a proxy in front may have guessed otherwise.
    basic = "Basic " + base64.b64encode(f"orders:{client_secret}".encode()).decode()
    once = {"Authorization": basic, "Content-Type": FORM}
    headers = [*once.items(), (name, once[name])]
    body = b"grant_type=client_credentials&token=x"
    response = httpx.post(token_server.url + path, content=body, headers=headers, timeout=10)
    assert response.status_code == 400, response.text
    assert response.json() == {
        "error": "invalid_request",
        "error_description": f"the {name} header is repeated",
    }
    ok = httpx.post(token_server.url + path, content=body, headers=once, timeout=10)
    assert ok.status_code == 200, ok.text


def test_unknown_parameters_and_ones_without_a_value_are_ignored(token_server, client_secret):
    # RFC 6749 §3.2 and §3.1; the same form with a known parameter repeated is refused.
    for path, body in (
        ("/api/token", b"grant_type=client_credentials&&foo=1&foo=2&scope&bar"),
        ("/api/introspect", b"token=x&&foo=1&foo=2&token_type_hint&bar"),
    ):
        response = post_to(token_server, path, body, ("orders", client_secret))
        assert response.status_code == 200, response.text
        repeated = post_to(token_server, path, body + b"&client_id=a&client_id=b", None)
        assert repeated.status_code == 400
        assert repeated.json()["error_description"] == "parameter 'client_id' is repeated"


def post_to(server, path, content, auth):
    headers = {"Content-Type": FORM}
    return httpx.post(server.url + path, content=content, headers=headers, auth=auth, timeout=10)
