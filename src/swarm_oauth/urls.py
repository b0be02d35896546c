"""URLs as a log line or an error message may show them."""

from __future__ import annotations

import re

# A URL's user:password@ (which httpx sends as Basic auth), even in one it cannot parse.
_USERINFO = re.compile(r"(?<=//)[^/?#]*@")


def shown(url: str) -> str:
    """``url`` (or a message quoting one) fit for a log line or an error: any user
    information is masked."""
    return _USERINFO.sub("***@", url)
