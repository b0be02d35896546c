"""The signing-key gauges of the tokens role, computed from the keys this process holds
at the moment of the scrape (so they need no updating and cannot go stale)."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric

from swarm_oauth.keys import rotation_due_at
from swarm_oauth.runtime import Runtime


class SigningKeyMetrics:
    """A Prometheus collector: the signing key's age and the time to the next rotation."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def collect(self) -> Iterator[Metric]:
        """``swarm_oauth_signing_key_age_seconds`` and, while automatic rotation is on,
        ``swarm_oauth_signing_key_next_rotation_seconds``."""
        now = time.time()
        keyring = self.runtime.keyring
        signing = keyring.signing_key(now)
        yield GaugeMetricFamily(
            "swarm_oauth_signing_key_age_seconds",
            "Seconds since the key signing now began to sign (NaN when no key signs).",
            value=math.nan if signing is None else now - signing.record.activates_at,
        )
        interval = self.runtime.settings.key_rotation_interval
        if interval > 0:
            due_at = rotation_due_at((k.record for k in keyring.keys), now, interval)
            yield GaugeMetricFamily(
                "swarm_oauth_signing_key_next_rotation_seconds",
                "Seconds until the next automatic key rotation is due (negative: overdue; "
                "absent when automatic rotation is off).",
                value=due_at - now,
            )
