"""Random input never gets a 500 or a traceback, and never changes stored state."""

import secrets
import time
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# (method, path); {registered} is a client registered through RFC 7591 before the run.
ROUTES = [
    ("POST", "/api/token"),
    ("POST", "/api/clients/add"),
    ("POST", "/api/clients/remove"),
    ("POST", "/api/clients/rotate"),
    ("POST", "/api/register"),
    ("PUT", "/api/register/{registered}"),
    ("POST", "/api/clients/revoke-tokens"),
    ("POST", "/api/introspect"),
    ("POST", "/api/revoke"),
    ("POST", "/api/verify"),
    ("GET", "/api/verify"),  # without a body: answered by the protocol itself
    ("GET", "/api/clients"),
    ("GET", "/api/revocations"),
    ("GET", "/api/register/{registered}"),
]
CONTENT_TYPES = [
    "application/x-www-form-urlencoded",
    "application/json",
    "application/json; charset=utf-8",
    "text/plain",
    "multipart/form-data; boundary=x",
    "",
]
# Values that str methods and int() read differently ("²" is a digit to str.isdigit only,
# "\u0661" is 1 to int()), that UTF-8 cannot encode (a lone surrogate, sent in JSON as an
# escape), NUL, and a number too long for int() to read.
tricky = st.sampled_from(["²", "\u0661", "\ud800", "\x00", "9" * 5000, "-1", " 1", "1e3"])
form_values = st.one_of(st.text(alphabet=st.characters(codec="utf-8"), max_size=40), tricky)
bodies = st.one_of(
    st.binary(max_size=300),
    st.dictionaries(
        st.sampled_from(["grant_type", "client_id", "client_secret", "scope", "audience",
                         "resource", "metadata", "scopes", "grace_seconds", "token",
                         "token_type_hint", "x", "grant_types", "redirect_uris",
                         "token_endpoint_auth_method", "client_name", "contacts",
                         "registration_access_token"]),
        st.one_of(form_values, st.integers(), st.lists(form_values, max_size=3), st.none()),
        max_size=5,
    ),
)  # fmt: skip


def quote_params(params: dict[str, str]) -> str:
    """A query string of ``params``: UTF-8, percent-encoded; a lone surrogate passes as
    its ``surrogatepass`` bytes, which are not UTF-8."""
    return "&".join(
        f"{name}={quote(value.encode('utf-8', 'surrogatepass'))}" for name, value in params.items()
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from tests.support.server import ServerProcess

    proc = ServerProcess(data_dir=tmp_path_factory.mktemp("fuzz")).start()
    proc.add_client("fuzzed", scopes=["read"])
    with proc.admin() as admin:
        proc.registered = admin.post("/api/register", json={"scope": "read"}).json()
    yield proc
    proc.stop()


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    route=st.sampled_from(ROUTES),
    content_type=st.sampled_from(CONTENT_TYPES),
    body=bodies,
    # Values an HTTP client can send: no leading or trailing white space (h11 refuses it).
    authorization=st.one_of(st.none(), st.sampled_from(["admin", "registration",
                                                        "Basic Zm9vOmJhcg==", "Bearer x"]),
                            st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126),
                                    min_size=1, max_size=30).filter(lambda v: v == v.strip())),
    # An update names its client: with the right id, its metadata is what gets checked.
    own_id=st.booleans(),
    # Sent as is: the raw query string reaches the endpoints that read it.
    query=st.one_of(st.just(""), st.text(alphabet="abcdeiopsuz=&%+;/?._~-0123456789",
                                          max_size=40).map(lambda q: "?" + q),
                    # Parameters the routes read, their values percent-encoded UTF-8.
                    st.dictionaries(st.sampled_from(["limit", "cursor", "token", "scope"]),
                                    st.one_of(tricky, st.text(max_size=12)), max_size=3)
                    .map(lambda params: "?" + quote_params(params))),
)  # fmt: skip
def test_random_requests_get_a_4xx_with_a_reason(
    server, route, content_type, body, authorization, own_id, query
):
    import json
    from urllib.parse import urlencode

    # Never to remove it: the state check below reads it afterwards.
    if isinstance(body, dict) and own_id and route != ("POST", "/api/clients/remove"):
        body = {**body, "client_id": server.registered["client_id"]}
    if isinstance(body, dict):
        content = (
            json.dumps(body)
            if "json" in content_type
            else urlencode(body, doseq=True, errors="surrogatepass")
        )
        content = content.encode()
    else:
        content = body
    headers = {"Content-Type": content_type} if content_type else {}
    if authorization == "admin":
        headers["Authorization"] = f"Bearer {server.admin_token}"
    elif authorization == "registration":
        headers["Authorization"] = f"Bearer {server.registered['registration_access_token']}"
    elif authorization is not None:
        headers["Authorization"] = authorization
    method, path = route
    path = path.format(registered=server.registered["client_id"])
    response = httpx.request(
        method,
        httpx.URL(server.url + path).copy_with(query=query[1:].encode() or None),
        content=None if method == "GET" else content,
        headers=headers,
        timeout=10,
    )
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        payload = response.json()
        assert set(payload) == {"error", "error_description"}
        assert "Traceback" not in response.text


def test_state_survived_the_fuzzing(server):
    with server.admin() as admin:
        ids = [c["client_id"] for c in admin.get("/api/clients").json()["clients"]]
    # Only valid adds and registrations may have created clients, and only a valid update
    # changed the registered one; "fuzzed" is intact, the registered client still there.
    assert "fuzzed" in ids
    registered = server.registered
    read = httpx.get(
        registered["registration_client_uri"],
        headers={"Authorization": f"Bearer {registered['registration_access_token']}"},
    )
    assert read.status_code == 200 and read.json()["client_id"] == registered["client_id"]
    # The log is written by a thread of its own: once a later request's line is there,
    # so is every line before it.
    marker = f"/written-{secrets.token_hex(4)}"
    assert httpx.get(server.url + marker).status_code == 404
    deadline = time.monotonic() + 10
    while marker not in server.log():
        assert time.monotonic() < deadline, "the marker request's line was never written"
        time.sleep(0.05)
    assert "Traceback" not in server.log()
