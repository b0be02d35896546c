"""Skip a test whose infrastructure is missing, except where skipping is not allowed.

On a laptop without Docker or PostgreSQL the tests that need them skip with a reason.
CI sets SWARM_OAUTH_TEST_STRICT=1, which turns every such skip into a failure, so a
missing engine can never pass for a green run.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

STRICT = os.environ.get("SWARM_OAUTH_TEST_STRICT", "") not in ("", "0", "false", "no")


def unavailable(reason: str) -> NoReturn:
    """Skip (or, in strict mode, fail) the current test because ``reason``."""
    if STRICT:
        pytest.fail(f"required infrastructure missing (SWARM_OAUTH_TEST_STRICT): {reason}")
    pytest.skip(reason)
