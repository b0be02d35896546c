"""FastAPI glue: ``Depends(require_token(verifier, scopes=[...]))`` on a route or router.

The dependency is an ``HTTPBearer`` subclass, so the OpenAPI document shows the route as
bearer-protected; it answers exactly like ``BearerTokenMiddleware`` (shared
``authenticate``) and returns the verified claims, also putting them on
``request.state``. Importing this module needs FastAPI installed.
"""

from collections.abc import Iterable

from fastapi import HTTPException
from fastapi.requests import HTTPConnection
from fastapi.security import HTTPBearer

from swarm_oauth.sdk.bearer import Rejection, authenticate
from swarm_oauth.sdk.verifier import Claims, Verifier


class TokenRequired(HTTPBearer):
    """A FastAPI security dependency resolving to the verified claims of the request."""

    def __init__(
        self,
        verifier: Verifier,
        scopes: Iterable[str] = (),
        *,
        state_key: str = "token_claims",
        realm: str | None = None,
    ) -> None:
        """Require a token of ``verifier``'s issuer and audience granting ``scopes``."""
        super().__init__(bearerFormat="JWT", auto_error=False)
        self.verifier = verifier
        self.scopes = frozenset(scopes)
        self.state_key = state_key
        self.realm = realm

    async def __call__(self, request: HTTPConnection) -> Claims:  # type: ignore[override]
        """The claims of the request's valid token; raises ``HTTPException`` otherwise."""
        authorization = request.headers.getlist("authorization")
        outcome = await authenticate(self.verifier, authorization, self.scopes, self.realm)
        if isinstance(outcome, Rejection):
            raise HTTPException(outcome.status_code, outcome.description, outcome.headers)
        setattr(request.state, self.state_key, outcome)
        return outcome


def require_token(
    verifier: Verifier,
    scopes: Iterable[str] = (),
    *,
    state_key: str = "token_claims",
    realm: str | None = None,
) -> TokenRequired:
    """A dependency that requires a valid token granting ``scopes`` and yields its claims."""
    return TokenRequired(verifier, scopes, state_key=state_key, realm=realm)
