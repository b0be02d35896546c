import base64
import binascii
from urllib.parse import parse_qsl, quote_plus

import jwt
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from swarm_oauth.clients import hash_secret
from swarm_oauth.keys import MasterKey
from swarm_oauth.keys.keyring import KeyRing, load_key, new_key_record
from swarm_oauth.store import ClientRecord
from swarm_oauth.tokens import OAuthError, TokenIssuer, grant, parse_form, parse_token_request

NOW = 1_800_000_000.0
SECRET = "s3cret-value"


@pytest.fixture(scope="module")
def keyring():
    master = MasterKey.from_text(MasterKey.generate_text())
    rec = new_key_record(master, "ES256", "http://issuer", 0, 0)
    return KeyRing([load_key(rec, master)])


@pytest.fixture
def issuer(keyring):
    return TokenIssuer("http://issuer", lambda: keyring, lifetime=900)


def client(**changes):
    fields = dict(
        client_id="orders",
        secret_hash=hash_secret(SECRET),
        scopes=("read", "write"),
        audiences=("inventory", "billing"),
        metadata={},
        created_at=0,
        updated_at=0,
    )
    fields.update(changes)
    return ClientRecord(**fields)


def basic(user, password):
    raw = f"{quote_plus(user)}:{quote_plus(password)}".encode()
    return "Basic " + base64.b64encode(raw).decode()


def form(**values):
    return {k: v if isinstance(v, list) else [v] for k, v in values.items()}


def error_of(fn):
    with pytest.raises(OAuthError) as info:
        fn()
    return info.value


def test_post_credentials_issue_a_rfc9068_token(keyring, issuer):
    req = parse_token_request(
        form(grant_type="client_credentials", client_id="orders", client_secret=SECRET), None
    )
    issued = grant(req, client(), issuer, NOW, ("http://issuer",))
    header = jwt.get_unverified_header(issued.access_token)
    assert header["typ"] == "at+jwt"
    assert header["kid"] == keyring.keys[0].kid
    claims = jwt.decode(
        issued.access_token,
        keyring.keys[0].private_key.public_key(),
        algorithms=["ES256"],
        audience="inventory",
        options={"verify_exp": False, "verify_iat": False},
    )
    assert claims["iss"] == "http://issuer"
    assert claims["sub"] == claims["client_id"] == "orders"
    assert claims["aud"] == ["inventory", "billing"]
    assert claims["exp"] - claims["iat"] == 900
    assert claims["scope"] == "read write"
    assert len(claims["jti"]) >= 16
    assert issued.scope == "read write"
    assert SECRET not in repr(req) and issued.access_token not in repr(issued)


def test_basic_credentials_are_form_decoded():
    secret = "a:b+c/d%"
    req = parse_token_request(form(grant_type="client_credentials"), basic("svc.one", secret))
    assert (req.client_id, req.client_secret) == ("svc.one", secret)


def test_scope_subset_and_single_audience(issuer):
    req = parse_token_request(
        form(grant_type="client_credentials", scope="read", audience="billing"),
        basic("orders", SECRET),
    )
    issued = grant(req, client(), issuer, NOW, ())
    claims = jwt.decode(issued.access_token, options={"verify_signature": False})
    assert claims["scope"] == "read"
    assert claims["aud"] == "billing"


def test_a_resource_with_a_fragment_is_invalid_target():
    with pytest.raises(OAuthError, match="fragment") as caught:
        parse_token_request(
            form(grant_type="client_credentials", resource=["https://api.example/#frag"]),
            basic("orders", SECRET),
        )
    assert caught.value.error == "invalid_target"


def test_repeated_resource_indicators_are_allowed(issuer):
    req = parse_token_request(
        form(grant_type="client_credentials", resource=["inventory", "billing"]),
        basic("orders", SECRET),
    )
    claims = jwt.decode(
        grant(req, client(), issuer, NOW, ()).access_token, options={"verify_signature": False}
    )
    assert claims["aud"] == ["inventory", "billing"]


def test_default_audience_when_the_client_has_none(issuer):
    req = parse_token_request(form(grant_type="client_credentials"), basic("orders", SECRET))
    issued = grant(req, client(audiences=(), scopes=()), issuer, NOW, ("http://issuer",))
    claims = jwt.decode(issued.access_token, options={"verify_signature": False})
    assert claims["aud"] == "http://issuer"
    assert "scope" not in claims and issued.scope == ""


@pytest.mark.parametrize(
    ("values", "auth", "error", "status"),
    [
        ({}, None, "invalid_request", 400),
        ({"grant_type": "password"}, None, "unsupported_grant_type", 400),
        (
            {"grant_type": ["client_credentials", "client_credentials"]},
            None,
            "invalid_request",
            400,
        ),
        ({"grant_type": "client_credentials"}, None, "invalid_client", 401),
        ({"grant_type": "client_credentials", "client_id": "orders"}, None, "invalid_client", 401),
        (
            {"grant_type": "client_credentials", "client_secret": SECRET},
            basic("orders", SECRET),
            "invalid_request",
            400,
        ),
        (
            {"grant_type": "client_credentials", "client_id": "other"},
            basic("orders", SECRET),
            "invalid_request",
            400,
        ),
        ({"grant_type": "client_credentials"}, "Bearer abc", "invalid_client", 401),
        ({"grant_type": "client_credentials"}, "Basic !!!", "invalid_client", 401),
        (
            {"grant_type": "client_credentials"},
            "Basic " + base64.b64encode(b"nocolon").decode(),
            "invalid_client",
            401,
        ),
        (
            {"grant_type": "client_credentials", "scope": 'bad"scope'},
            basic("o", "s"),
            "invalid_scope",
            400,
        ),
        (
            {"grant_type": "client_credentials", "audience": "a", "resource": "b"},
            basic("o", "s"),
            "invalid_request",
            400,
        ),
    ],
)
def test_malformed_requests(values, auth, error, status):
    exc = error_of(lambda: parse_token_request(form(**values), auth))
    assert (exc.error, exc.status) == (error, status)
    assert exc.description


@pytest.mark.parametrize(
    ("extra", "record", "error"),
    [
        ({}, None, "invalid_client"),
        ({"scope": "read admin"}, client(), "invalid_scope"),
        ({"audience": "payroll"}, client(), "invalid_target"),
        ({"resource": ["inventory", "payroll"]}, client(), "invalid_target"),
    ],
)
def test_refused_grants(issuer, extra, record, error):
    req = parse_token_request(
        form(grant_type="client_credentials", **extra), basic("orders", SECRET)
    )
    assert error_of(lambda: grant(req, record, issuer, NOW, ())).error == error


def test_wrong_secret_and_unknown_client_look_the_same(issuer):
    wrong = parse_token_request(form(grant_type="client_credentials"), basic("orders", "nope"))
    a = error_of(lambda: grant(wrong, client(), issuer, NOW, ()))
    b = error_of(lambda: grant(wrong, None, issuer, NOW, ()))
    assert (a.error, a.status, a.description) == (b.error, b.status, b.description)


def test_previous_secret_works_only_during_grace(issuer):
    record = client(
        secret_hash=hash_secret("new"),
        previous_secret_hash=hash_secret(SECRET),
        previous_secret_expires_at=NOW + 10,
    )
    req = parse_token_request(form(grant_type="client_credentials"), basic("orders", SECRET))
    assert grant(req, record, issuer, NOW + 9, ()).access_token
    assert error_of(lambda: grant(req, record, issuer, NOW + 10, ())).error == "invalid_client"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\xff\xfe", "not valid UTF-8"),
        (b"a=%ff", "not valid UTF-8"),
        (b"&".join([b"p%d=1" % i for i in range(40)]), "more than 32 parameters"),
    ],
)
def test_unparseable_forms(body, reason):
    exc = error_of(lambda: parse_form(body))
    assert (exc.error, exc.status) == ("invalid_request", 400)
    assert reason in exc.description


def _form_as_parse_qsl_reads_it(body: bytes) -> dict[str, list[str]] | str:
    """The form as ``parse_qsl`` alone reads it (what parse_form did for every body
    before its fast path), or why it is refused."""
    try:
        pairs = parse_qsl(
            body.decode("utf-8"), keep_blank_values=True, max_num_fields=32, errors="strict"
        )
    except UnicodeDecodeError:
        return "not valid UTF-8"
    except ValueError:
        return "more than 32 parameters"
    form: dict[str, list[str]] = {}
    for name, value in pairs:
        if value:
            form.setdefault(name, []).append(value)
    return form


@given(st.lists(st.sampled_from(["a", "b", "=", "&", "%", "+", "2", "B", "é", "ff", " "])))
@example(["&"] * 31)
@example(["&"] * 32)
@example(["%", "ff"])
@example(["a", "=", "&", "&", "=", "b", "&", "a"])
def test_parse_form_reads_every_body_as_parse_qsl_does(pieces):
    body = "".join(pieces).encode()
    try:
        got: dict[str, list[str]] | str = parse_form(body)
    except OAuthError as exc:
        got = exc.description
    expected = _form_as_parse_qsl_reads_it(body)
    if isinstance(expected, str):
        assert isinstance(got, str) and expected in got
    else:
        assert got == expected


@pytest.mark.parametrize(
    "encoded",
    [
        "b3JkZXJzOnNlY3JldA",  # padding left off
        "b3JkZXJzOnNlY3JldA=",  # half the padding
        "=b3JkZXJzOnNlY3JldA==",  # padding first
        "b3JkZXJz=OnNlY3JldA==",  # padding inside
        "b3JkZXJzOnNlY3JldA==b3Jk",  # data after the padding
        "b3JkZXJz OnNlY3JldA==",  # a space inside
        "b3JkZXJz\tOnNlY3JldA==",  # a tab inside
        "b3JkZXJzOnNlY3JldA===",
    ],
)
def test_basic_credentials_outside_the_base64_alphabet_and_padding_are_malformed(encoded):
    exc = error_of(
        lambda: parse_token_request({"grant_type": ["client_credentials"]}, f"Basic {encoded}")
    )
    assert (exc.error, exc.status, exc.description) == (
        "invalid_client",
        401,
        "malformed Basic credentials",
    )
    assert binascii.a2b_base64("b3JkZXJzOnNlY3JldA==") == b"orders:secret"


def test_parse_form_keeps_repeats():
    assert parse_form(b"a=1&a=2&b=") == {"a": ["1", "2"]}  # empty means omitted


def test_parameters_without_a_value_and_empty_fields_count_as_omitted():
    # RFC 6749 §3.1: "Parameters sent without a value MUST be treated as if they were
    # omitted from the request."
    body = b"grant_type=client_credentials&&scope&audience&resource&x"
    req = parse_token_request(parse_form(body), basic("orders", SECRET))
    assert (req.scopes, req.audiences) == (None, None)


def test_unknown_parameters_are_ignored_even_repeated_and_known_ones_are_not():
    body = b"grant_type=client_credentials&foo=1&foo=2&bar=3"
    req = parse_token_request(parse_form(body), basic("orders", SECRET))
    assert req.client_id == "orders"
    for name in ("grant_type", "scope", "audience", "client_id", "client_secret"):
        repeated = parse_form(b"grant_type=client_credentials&" + f"{name}=a&{name}=b".encode())
        exc = error_of(lambda f=repeated: parse_token_request(f, basic("orders", SECRET)))
        assert (exc.error, exc.description) == (
            "invalid_request",
            f"parameter {name!r} is repeated",
        )


def test_empty_parameters_count_as_omitted():
    req = parse_token_request(
        parse_form(b"grant_type=client_credentials&client_id=&client_secret=&scope=&resource="),
        basic("orders", SECRET),
    )
    assert (req.client_id, req.scopes, req.audiences) == ("orders", None, None)


def test_non_ascii_basic_credentials_are_invalid_client():
    exc = error_of(lambda: parse_token_request(form(grant_type="client_credentials"), "Basic éééé"))
    assert (exc.error, exc.status) == ("invalid_client", 401)


@pytest.mark.parametrize(
    "client_id",
    ["a\x00b", "x" * 129, "has space", "caf\u00e9", "a/b", "a:b", "r" * 5_000_000],
    ids=["nul", "too-long", "space", "non-ascii", "slash", "colon", "5MB"],
)
@pytest.mark.parametrize("method", ["basic", "body"])
def test_an_id_outside_the_grammar_is_invalid_client_before_any_lookup(client_id, method):
    if method == "basic":
        values, auth = {"grant_type": "client_credentials"}, basic(client_id, "x")
    else:
        values = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": "x"}
        auth = None
    exc = error_of(lambda: parse_token_request(form(**values), auth))
    assert (exc.error, exc.status, exc.description) == (
        "invalid_client",
        401,
        "malformed client_id",
    )


def test_every_id_of_the_grammar_is_accepted():
    for client_id in ("a", "x" * 128, "svc.v2_blue-1", "A0"):
        req = parse_token_request(
            form(grant_type="client_credentials", client_id=client_id, client_secret="x"), None
        )
        assert req.client_id == client_id
