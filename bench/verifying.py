"""Token checks without HTTP on one core, as forward-auth and introspection make them:
a token seen for the first time (its signature verified) and one the verifier remembers.

Run as ``taskset -c N python -m bench.verifying SECONDS``; prints JSON checks/s.
"""

from __future__ import annotations

import itertools
import json
import sys
import time

from bench.signing import rates
from swarm_oauth.keys import KeyRing, MasterKey
from swarm_oauth.keys.keyring import load_key, new_key_record
from swarm_oauth.tokens import RevocationList, TokenIssuer, TokenVerifier

ISSUER = "http://bench.test"
ALG = "ES256"
# More distinct tokens than the verifier below may remember: every check is a first one.
POOL = 1000


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    now = time.time()
    master = MasterKey.from_text(MasterKey.generate_text())
    ring = KeyRing([load_key(new_key_record(master, ALG, ISSUER, now, now), master)])
    issuer = TokenIssuer(ISSUER, lambda: ring)
    tokens = [issuer.issue("svc", ["read"], [ISSUER], now).access_token for _ in range(POOL)]
    revocations = RevocationList()

    forgetful = TokenVerifier(ISSUER, lambda: ring, lambda: revocations, max_remembered=1)
    cycle = itertools.cycle(tokens)
    first_sight, _ = rates(lambda: forgetful.check(next(cycle), now), seconds)

    verifier = TokenVerifier(ISSUER, lambda: ring, lambda: revocations)
    remembered, _ = rates(lambda: verifier.authorize(tokens[0], now, ISSUER, ("read",)), seconds)
    print(json.dumps({"first_sight": first_sight, "remembered": remembered}))


if __name__ == "__main__":
    main()
