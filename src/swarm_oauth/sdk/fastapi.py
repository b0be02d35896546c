"""FastAPI glue: ``Depends(require_token(verifier, scopes=[...]))`` on a route or router.

The dependency is an ``HTTPBearer`` subclass, so the OpenAPI document shows the route as
bearer-protected; it returns the verified claims, also putting them on ``request.state``.
A refused request raises ``TokenRejected``. A FastAPI dependency cannot choose its error
body, so register the handler once and refusals answer exactly like
``BearerTokenMiddleware`` (shared ``authenticate``: same status, body and headers)::

    app = FastAPI(exception_handlers={TokenRejected: token_rejected_handler})

Without it, ``TokenRejected`` is a plain ``HTTPException`` to FastAPI: the same status
and headers, with FastAPI's ``{"detail": ...}`` body. Importing this module needs FastAPI.
"""

from collections.abc import Iterable

from fastapi import HTTPException
from fastapi.requests import HTTPConnection, Request
from fastapi.responses import Response
from fastapi.security import HTTPBearer

from swarm_oauth.sdk.bearer import Rejection, authenticate
from swarm_oauth.sdk.cache import Claims
from swarm_oauth.sdk.scopes import required_scopes
from swarm_oauth.sdk.verifier import Verifier


class TokenRejected(HTTPException):
    """A request refused by ``TokenRequired``; ``rejection`` says how to answer it."""

    def __init__(self, rejection: Rejection) -> None:
        # FastAPI's own handler writes a JSON body of its own: every header but its type.
        headers = {k: v for k, v in rejection.response_headers().items() if k != "Content-Type"}
        super().__init__(rejection.status_code, rejection.description, headers)
        self.rejection = rejection


async def token_rejected_handler(_: Request, exc: Exception) -> Response:
    """Answer a ``TokenRejected`` the way ``BearerTokenMiddleware`` refuses a request."""
    assert isinstance(exc, TokenRejected)
    rejection = exc.rejection
    return Response(rejection.body(), rejection.status_code, rejection.response_headers())


class TokenRequired(HTTPBearer):
    """A FastAPI security dependency resolving to the verified claims of the request."""

    def __init__(
        self,
        verifier: Verifier,
        scopes: str | Iterable[str] = (),
        *,
        state_key: str = "token_claims",
        realm: str | None = None,
    ) -> None:
        """Require a token of ``verifier``'s issuer and audience granting ``scopes``."""
        super().__init__(bearerFormat="JWT", auto_error=False)
        self.verifier = verifier
        self.scopes = required_scopes(scopes)
        self.state_key = state_key
        self.realm = realm

    async def __call__(self, request: HTTPConnection) -> Claims:  # type: ignore[override]
        """The claims of the request's valid token; raises ``TokenRejected`` otherwise."""
        authorization = request.headers.getlist("authorization")
        outcome = await authenticate(self.verifier, authorization, self.scopes, self.realm)
        if isinstance(outcome, Rejection):
            raise TokenRejected(outcome)
        setattr(request.state, self.state_key, outcome)
        return outcome


def require_token(
    verifier: Verifier,
    scopes: str | Iterable[str] = (),
    *,
    state_key: str = "token_claims",
    realm: str | None = None,
) -> TokenRequired:
    """A dependency that requires a valid token granting ``scopes`` and yields its claims."""
    return TokenRequired(verifier, scopes, state_key=state_key, realm=realm)
