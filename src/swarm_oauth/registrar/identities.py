"""What the reconcile consults about a service: is it managed, and which identity does it
get. The selector, the labels and the registration policy, in one place."""

from __future__ import annotations

from swarm_oauth.registrar.labels import Selector, read_labels
from swarm_oauth.registrar.model import DesiredIdentity, ObservedService
from swarm_oauth.registrar.policy import SAFE_DEFAULT, Grant, RegistrationPolicy

# The age at which a managed service's client secret is replaced, unless a policy rule or
# its own label says a shorter one.
DEFAULT_SECRET_MAX_AGE = 90 * 86400.0


class Identities:
    """The registrar's rules for services.

    ``policy`` may be replaced while the registrar runs (the policy file changed); each
    reconcile reads it once, so it sees one policy throughout.
    """

    def __init__(
        self,
        selector: Selector,
        token_url: str,
        policy: RegistrationPolicy = SAFE_DEFAULT,
        secret_max_age: float = 0.0,
        rotation_grace: float = 0.0,
    ) -> None:
        """``secret_max_age`` is the registrar's (``--secret-max-age``): the age at which a
        client secret is rotated unless the policy or a label says otherwise;
        ``rotation_grace`` (``--rotation-grace``) the shortest age a label may ask for."""
        self.selector = selector
        self.token_url = token_url
        self.policy = policy
        self.secret_max_age = secret_max_age
        self.rotation_grace = rotation_grace

    def selected(self, service: ObservedService) -> bool:
        """Whether the registrar manages this service."""
        return self.selector.matches(service.labels)

    def desired(self, service: ObservedService) -> DesiredIdentity:
        """The identity a selected service gets; ``InvalidLabels`` when its labels are
        malformed, ``Refused`` when they ask for more than the policy allows."""
        return self.policy.decide(
            service, read_labels(service), self.secret_max_age, self.rotation_grace
        )

    def grant(self, service: ObservedService) -> Grant:
        """The policy's grant for this service: what any client of it may keep."""
        return self.policy.grant_for(service)[0]

    def wanted_client(self, service: ObservedService | None) -> str | None:
        """The client id this service should own, or None if it should own none.

        ``InvalidLabels`` (and ``Refused``) propagate: a typo in a label, or a policy
        edit, must not cost a running service its identity, so callers keep what exists.
        """
        if service is None or not self.selected(service):
            return None
        return self.desired(service).client_id
