"""The registration policy: the file, checked line by line, and what it allows."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from swarm_oauth.registrar.labels import Ask
from swarm_oauth.registrar.model import DesiredIdentity, ObservedService
from swarm_oauth.registrar.policy import SAFE_DEFAULT, Refused
from swarm_oauth.registrar.policy_file import (
    PolicyError,
    PolicyFile,
    dead_rules,
    load_policy,
    parse_policy,
)
from tests.support.cli import run_cli

POLICY = """\
# the shop may use its own ids and these scopes
rules:
  - match: {stack: shop}
    client_id: ["shop_*", "orders"]
    scopes: ["orders:*", read]
    audiences: [inventory]
  - match:
      service: "billing_*"
      labels: {tier: backend}
    scopes: [payments]
default: {scopes: [read], audiences: []}
"""


def service(name: str, stack: str | None = None, **labels: str) -> ObservedService:
    all_labels = dict(labels)
    if stack:
        all_labels["com.docker.stack.namespace"] = stack
    return ObservedService(id=f"id-{name}", name=name, labels=all_labels)


def ask(client_id: str | None = None, scopes: tuple[str, ...] = (), audiences=()) -> Ask:
    return Ask(client_id, scopes, tuple(audiences), "oauth_client_secret")


def test_a_policy_file_allows_what_its_first_matching_rule_allows():
    policy = parse_policy(POLICY, "policy.yml")
    shop = service("shop_orders", "shop")
    assert policy.decide(shop, ask("orders", ("orders:write", "read"), ["inventory"])) == (
        DesiredIdentity("orders", ("orders:write", "read"), ("inventory",), "oauth_client_secret")
    )
    billing = service("billing_api", "billing", tier="backend")
    assert policy.decide(billing, ask(None, ("payments",))).client_id == "billing_api"
    # No rule matches (the labels differ): the default allows "read" only.
    other = service("billing_api", "billing", tier="frontend")
    assert policy.decide(other, ask(None, ("read",))).scopes == ("read",)
    with pytest.raises(Refused, match=r"the default of policy\.yml") as refused:
        policy.decide(other, ask(None, ("payments",)))
    assert refused.value.code == "scope_not_allowed"


def test_when_several_rules_match_the_first_one_alone_decides():
    text = """\
rules:
  - match: {stack: shop, service: "shop_admin*"}
    scopes: [read]
  - match: {stack: shop}
    scopes: [read, "admin:*"]
"""
    policy = parse_policy(text, "policy.yml")
    admin = service("shop_admin", "shop")
    # Both rules match; the narrower first one is the one that applies, even though the
    # second would allow more.
    with pytest.raises(Refused, match=r"rule 1 of policy\.yml") as refused:
        policy.decide(admin, ask(None, ("admin:users",)))
    assert refused.value.code == "scope_not_allowed"
    assert policy.decide(admin, ask(None, ("read",))).scopes == ("read",)
    # Only the second matches here, and it allows the scope.
    other = service("shop_orders", "shop")
    assert policy.decide(other, ask(None, ("admin:users",))).scopes == ("admin:users",)


def test_one_item_too_many_refuses_the_whole_service_and_names_the_rule():
    policy = parse_policy(POLICY, "policy.yml")
    with pytest.raises(Refused) as refused:
        policy.decide(service("shop_orders", "shop"), ask(None, ("read", "admin")))
    assert refused.value.code == "scope_not_allowed"
    assert "admin" in refused.value.reason and "rule 1 of policy.yml (line 3)" in str(refused.value)
    with pytest.raises(Refused) as refused:
        policy.decide(service("shop_orders", "shop"), ask(None, (), ["payments-api"]))
    assert refused.value.code == "audience_not_allowed"


def test_client_ids_from_other_stacks_are_refused_by_the_policy_and_by_default():
    policy = parse_policy(POLICY, "policy.yml")
    with pytest.raises(Refused) as refused:
        policy.decide(service("shop_orders", "shop"), ask("billing_api"))
    assert refused.value.code == "client_id_not_allowed"
    evil = service("evil_worker", "evil")
    for rules in (policy, SAFE_DEFAULT):
        with pytest.raises(Refused, match=r"is not allowed by"):
            rules.decide(evil, ask("shop_orders"))


def test_the_safe_default_allows_own_names_and_nothing_asked_by_labels():
    shop = service("shop_orders", "shop")
    assert SAFE_DEFAULT.decide(shop, ask()).client_id == "shop_orders"
    assert SAFE_DEFAULT.decide(shop, ask("shop_orders-v2")).client_id == "shop_orders-v2"
    loose = service("orders")  # not in a stack: only its own name
    with pytest.raises(Refused, match="no --policy"):
        SAFE_DEFAULT.decide(loose, ask("other"))
    for asked in (ask(None, ("read",)), ask(None, (), ["inventory"])):
        with pytest.raises(Refused):
            SAFE_DEFAULT.decide(shop, asked)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("rules:\n  - match: {stak: shop}\n", "policy.yml:2: rules[0].match: unknown key 'stak'"),
        ("rules:\n  - client_id: [a]\n", "policy.yml:2: rules[0]: needs a 'match'"),
        (
            "rules:\n  - match: {}\n    scopes: read\n",
            "policy.yml:3: rules[0].scopes: must be a list",
        ),
        ("rules:\n  - match: {}\n    scopes: [read, 3]\n", None),  # "3" is a string in YAML
        ("rules:\n  - match: {}\n    scopes: [read, null]\n", "policy.yml:3: rules[0].scopes[1]"),
        ('rules:\n  - match: {}\n    scopes: ["a b"]\n', "must be one word"),
        ("default: {scopes: [a], scope: [b]}\n", "policy.yml:1: default: unknown key 'scope'"),
        ("rules: {match: {}}\n", "policy.yml:1: rules: must be a list"),
        (
            "rules:\n  - match: {stack: [a]}\n",
            "policy.yml:2: rules[0].match.stack: must be a string",
        ),
        ("rules:\n  - match: {labels: [a]}\n", "rules[0].match.labels: must be a mapping"),
        ("default:\n  scopes: [a\n", "policy.yml:3: not valid YAML"),
        ("", "policy.yml: the policy is empty"),
        ("rules: []\nrules: []\n", "'rules' appears twice"),
        ("just text\n", "policy.yml:1: the policy: must be a mapping"),
        ("rules: " + "[" * 5000, "policy.yml: nested too deeply"),
        # As short as a label may not ask for: a rotation every second.
        ("default: {secret_max_age: 1s}\n", "default.secret_max_age: at least 30s (0: never)"),
    ],
)
def test_a_malformed_policy_names_the_line_and_the_problem(text, error):
    if error is None:
        assert parse_policy(text, "policy.yml").rules[0].grant.scopes == ("read", "3")
        return
    with pytest.raises(PolicyError) as raised:
        parse_policy(text, "policy.yml")
    assert error in str(raised.value)


def test_a_rules_max_age_is_no_shorter_than_the_rotation_grace_it_is_given():
    text = "rules:\n  - match: {}\n    secret_max_age: 10m\n"
    assert parse_policy(text).rules[0].grant.secret_max_age == 600
    # Within an hour's grace of the last rotation, the next would end it.
    with pytest.raises(PolicyError, match=r"rules\[0\]\.secret_max_age: at least 1h"):
        parse_policy(text, "policy.yml", shortest_max_age=3600)
    assert parse_policy(text.replace("10m", "0"), "p", shortest_max_age=3600).rules


def test_the_policy_file_is_followed_and_a_broken_edit_keeps_the_last_good_one(tmp_path, caplog):
    path = tmp_path / "policy.yml"
    path.write_text("default: {scopes: [read]}\n")
    applied = []
    followed = PolicyFile(path, applied.append)
    assert [p.default.scopes for p in applied] == [("read",)]
    assert followed.refresh() is False  # unchanged
    path.write_text("default: {scopes: [read, write]}\n")
    assert followed.refresh() is True
    assert applied[-1].default.scopes == ("read", "write")
    path.write_text("default: {scope: [admin]}\n")  # a typo
    assert followed.refresh() is False
    assert applied[-1].default.scopes == ("read", "write")
    assert "policy.yml:1: default: unknown key 'scope'" in caplog.text
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path / "missing.yml")


def test_a_rule_an_earlier_one_always_wins_over_is_named():
    text = """\
rules:
  - match: {stack: shop}
    scopes: [read]
  - match: {stack: shop, service: shop_admin, labels: {tier: internal}}
    scopes: [admin]
  - match: {service: "shop_*"}
    scopes: [write]
  - match: {stack: "*"}
    scopes: [read]
  - match: {stack: other}
    scopes: [read]
"""
    policy = parse_policy(text, "policy.yml")
    # Rule 3 is not dead: a shop_ service of another stack reaches it. Rule 5 is: every
    # service of the stack "other" has a stack, which rule 4 fits.
    assert policy.shadowed() == [(2, 1), (5, 4)]
    assert dead_rules(policy)[0].startswith("policy.yml:4: rule 2 never applies: rule 1 (line 2)")
    admin = service("shop_admin", "shop", tier="internal")
    with pytest.raises(Refused, match="rule 1 of"):  # what the warning is about
        policy.decide(admin, ask(None, ("admin",)))


def test_check_policy_warns_of_a_dead_rule_and_the_shipped_example_has_none(tmp_path):
    dead = tmp_path / "policy.yml"
    dead.write_text(
        "rules:\n  - match: {stack: shop}\n    scopes: [read]\n"
        "  - match: {stack: shop, service: shop_admin}\n    scopes: [admin]\n"
    )
    checked = run_cli("registrar", "check-policy", str(dead))
    assert checked.returncode == 0 and "usable" in checked.stdout
    assert f"warning: {dead}:4: rule 2 never applies: rule 1 (line 2)" in checked.stderr
    # The example in the shipped policy's comments, as an operator would uncomment it.
    shipped = (Path(__file__).parents[2] / "deploy" / "policy.yml").read_text()
    lines = shipped.splitlines()
    start = lines.index("#   rules:")
    example = "\n".join(
        line.removeprefix("#   ")
        for line in itertools.takewhile(lambda line: line.startswith("#   "), lines[start:])
    )
    policy = parse_policy(example, "example")
    assert len(policy.rules) == 2 and policy.shadowed() == []
    granted = policy.decide(service("shop_admin", "shop", tier="internal"), ask(None, ("admin",)))
    assert granted.scopes == ("admin",)
