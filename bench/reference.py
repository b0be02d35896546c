"""The reference: a client-credentials server built the way Authlib's docs show.

Flask + Flask-SQLAlchemy, the ``OAuth2ClientMixin`` model (which keeps the client secret
as given and compares it with ``secrets.compare_digest``), ``create_query_client_func``,
Authlib's ``AuthorizationServer`` with ``ClientCredentialsGrant`` and the RFC 9068
``JWTBearerTokenGenerator`` signing ES256. Served by gunicorn with one worker.

Where the docs leave a choice, the faster one is taken so the comparison cannot flatter
us: the signing key is imported once instead of loaded per token, and tokens are not
stored (JWTs need no storage) unless ``BENCH_REF_SAVE_TOKENS=1`` asks for the Flask
guide's ``save_token`` that writes each one to the database.

``python -m bench.reference setup DIR`` creates the database, a client and the key, and
prints the client's id and secret as JSON; ``gunicorn 'bench.reference:create_app()'``
with ``BENCH_REF_DIR=DIR`` serves it.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.integrations.sqla_oauth2 import (
    OAuth2ClientMixin,
    OAuth2TokenMixin,
    create_query_client_func,
    create_save_token_func,
)
from authlib.oauth2.rfc6749.grants import ClientCredentialsGrant
from authlib.oauth2.rfc9068 import JWTBearerTokenGenerator
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from joserfc.jwk import ECKey, KeySet

CLIENT_ID = "bench"
ISSUER = "http://127.0.0.1:8080"
LIFETIME = 900  # the same as ours

db = SQLAlchemy()


class Client(db.Model, OAuth2ClientMixin):  # type: ignore[name-defined,misc]
    __tablename__ = "oauth2_client"
    id = db.Column(db.Integer, primary_key=True)


class Token(db.Model, OAuth2TokenMixin):  # type: ignore[name-defined,misc]
    __tablename__ = "oauth2_token"
    id = db.Column(db.Integer, primary_key=True)
    user_id = db.Column(db.Integer, nullable=True)  # the guide's model has one; no users here
    # The mixin's String(255) is too short for a JWT on stricter databases.
    access_token = db.Column(db.Text, nullable=False)


class Generator(JWTBearerTokenGenerator):
    """RFC 9068 tokens signed with the server's key set."""

    def __init__(self, jwks: KeySet) -> None:
        super().__init__(
            issuer=ISSUER, alg="ES256", expires_generator=lambda client, grant_type: LIFETIME
        )
        self._jwks = jwks

    def get_jwks(self) -> KeySet:
        return self._jwks

    def get_audiences(self, client: Client, user: object, scope: str) -> str:
        return ISSUER


def _flask_app(directory: Path) -> Flask:
    app = Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{directory / 'reference.sqlite'}"
    db.init_app(app)
    return app


def create_app() -> Flask:
    """The WSGI app, configured from ``BENCH_REF_DIR``."""
    directory = Path(os.environ["BENCH_REF_DIR"])
    app = _flask_app(directory)
    if os.environ.get("BENCH_REF_SAVE_TOKENS") == "1":
        save_token = create_save_token_func(db.session, Token)
    else:

        def save_token(token: dict[str, object], request: object) -> None:
            return None

    server = AuthorizationServer(
        app, query_client=create_query_client_func(db.session, Client), save_token=save_token
    )
    server.register_grant(ClientCredentialsGrant)
    jwks = KeySet.import_key_set(json.loads((directory / "jwks.json").read_text()))
    server.register_token_generator("default", Generator(jwks))

    @app.route("/api/token", methods=["POST"])
    def issue_token() -> object:
        return server.create_token_response()

    return app


def setup(directory: Path) -> dict[str, str]:
    """Create the database, one client and the signing key; the client's credentials."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ECKey.generate_key("P-256", private=True, auto_kid=True)
    (directory / "jwks.json").write_text(json.dumps({"keys": [key.as_dict(private=True)]}))
    app = _flask_app(directory)
    secret = secrets.token_urlsafe(32)
    with app.app_context():
        db.create_all()
        client = Client(client_id=CLIENT_ID, client_secret=secret, client_id_issued_at=0)
        client.set_client_metadata(
            {
                "grant_types": ["client_credentials"],
                "token_endpoint_auth_method": "client_secret_basic",
                "scope": "",
            }
        )
        db.session.add(client)
        db.session.commit()
    return {"client_id": CLIENT_ID, "client_secret": secret}


if __name__ == "__main__":
    if sys.argv[1:2] != ["setup"] or len(sys.argv) != 3:
        sys.exit("usage: python -m bench.reference setup DIR")
    print(json.dumps(setup(Path(sys.argv[2]))))
