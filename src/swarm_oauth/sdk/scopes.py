"""Scopes: what a token grants (its ``scope`` claim) against what a call requires."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from swarm_oauth.sdk.errors import InsufficientScope


def scopes_of(claims: Mapping[str, Any]) -> frozenset[str]:
    """The scopes a token grants: its space-separated ``scope`` claim (RFC 9068 §2.2.3)."""
    scope = claims.get("scope")
    if isinstance(scope, str):
        return frozenset(scope.split())
    if isinstance(scope, list):
        return frozenset(item for item in scope if isinstance(item, str))
    return frozenset()


def required_scopes(scopes: str | Iterable[str]) -> frozenset[str]:
    """The scopes a call requires: a collection of them, or one string of space-separated
    scopes as OAuth writes them (``"read write"``), never the letters of ``"write"``."""
    return frozenset(scopes.split() if isinstance(scopes, str) else scopes)


def require_granted(granted: frozenset[str], scopes: str | Iterable[str]) -> None:
    """Raise ``InsufficientScope`` unless ``granted`` holds every one of ``scopes``."""
    required = required_scopes(scopes)
    if missing := required - granted:
        raise InsufficientScope(
            f"token lacks scope(s): {' '.join(sorted(missing))}", required=required
        )


def require_scopes(claims: Mapping[str, Any], scopes: str | Iterable[str]) -> None:
    """Raise ``InsufficientScope`` unless the claims grant every one of ``scopes``."""
    require_granted(scopes_of(claims), scopes)
