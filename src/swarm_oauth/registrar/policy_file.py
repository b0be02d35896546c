"""The registration policy file: YAML in, ``RegistrationPolicy`` out, every error naming
its line.

A typo must never silently allow or deny everything, so the document is checked key by
key against the schema below before anything is built from it, and the first problem is
reported as ``FILE:LINE: where: what``.

```yaml
rules:                          # tried in order; the first whose match fits applies
  - match:                      # all of these that are given must fit
      stack: shop               # glob on com.docker.stack.namespace
      service: "shop_*"         # glob on the service name
      labels: {tier: backend}   # each must equal
    client_id: ["shop_*"]       # globs of ids swarm-oauth.client-id may ask for
    scopes: ["orders:*", read]  # globs of scopes swarm-oauth.scopes may ask for
    audiences: [inventory]      # globs of audiences swarm-oauth.audience may ask for
    secret_max_age: 30d         # the longest its client secret may live (labels: shorter)
default: {scopes: [], audiences: []}   # services no rule matches
```
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from swarm_oauth.durations import InvalidDuration, format_duration, parse_duration
from swarm_oauth.registrar.labels import MIN_SECRET_MAX_AGE
from swarm_oauth.registrar.policy import Grant, Match, RegistrationPolicy, Rule

log = logging.getLogger("swarm_oauth.registrar.policy")

GRANT_KEYS = ("client_id", "scopes", "audiences", "secret_max_age")


class PolicyError(ValueError):
    """The policy file is unusable; the message names the file, the line and the problem."""


def load_policy(path: Path, shortest_max_age: float = MIN_SECRET_MAX_AGE) -> RegistrationPolicy:
    """Read and check ``path``; ``PolicyError`` says what is wrong and where."""
    return parse_policy(_read(path), str(path), shortest_max_age)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"{path}: cannot read the policy: {exc}") from None


class PolicyFile:
    """A policy file the registrar follows: re-read whenever its content changed.

    ``refresh`` runs before every full pass and on SIGHUP. A file that no longer parses
    is reported and ignored: the policy in force stays, since a half-typed edit must not
    allow or deny everything.
    """

    def __init__(
        self,
        path: Path,
        apply: Callable[[RegistrationPolicy], None],
        shortest_max_age: float = MIN_SECRET_MAX_AGE,
    ) -> None:
        """Load ``path`` (``PolicyError`` if it is unusable) and ``apply`` it; a rule's
        ``secret_max_age`` may not be shorter than ``shortest_max_age``."""
        self.path = path
        self._apply = apply
        self._shortest = shortest_max_age
        text = _read(path)
        policy = parse_policy(text, str(path), shortest_max_age)
        _warn_of_dead_rules(policy)
        apply(policy)
        self._seen = _digest(text)
        self.problem: str | None = None
        """Why the file as it is now is unusable (the policy before it stays), or None."""

    def refresh(self) -> bool:
        """Apply the file again if its content changed; True when a new policy applies."""
        try:
            text = _read(self.path)
        except PolicyError as exc:
            self.problem = str(exc)
            log.error("the policy file is unusable; the previous policy stays: %s", exc)
            return False
        digest = _digest(text)
        if digest == self._seen:
            return False  # unchanged (a broken version was reported when it appeared)
        self._seen = digest
        try:
            policy = parse_policy(text, str(self.path), self._shortest)
        except PolicyError as exc:
            self.problem = str(exc)
            log.error("the policy file is unusable; the previous policy stays: %s", exc)
            return False
        self.problem = None
        _warn_of_dead_rules(policy)
        self._apply(policy)
        log.info("policy reloaded", extra={"path": str(self.path), "rules": len(policy.rules)})
        return True


def dead_rules(policy: RegistrationPolicy) -> list[str]:
    """A sentence for each rule an earlier rule keeps from ever applying."""
    lines = {number: rule.line for number, rule in enumerate(policy.rules, 1)}
    return [
        f"{policy.source}:{lines[later]}: rule {later} never applies: rule {earlier} "
        f"(line {lines[earlier]}) fits every service it fits, and the first rule that fits "
        "decides; put the narrower rule first"
        for later, earlier in policy.shadowed()
    ]


def _warn_of_dead_rules(policy: RegistrationPolicy) -> None:
    for sentence in dead_rules(policy):
        log.warning("policy: %s", sentence)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def parse_policy(
    text: str, source: str = "policy", shortest_max_age: float = MIN_SECRET_MAX_AGE
) -> RegistrationPolicy:
    """The policy in ``text``; ``PolicyError`` on the first problem, with its line. A
    ``secret_max_age`` other than 0 must be at least ``shortest_max_age`` (the registrar's
    rotation grace, if longer than a label's least): a rotation within the grace of the
    last one would end that grace for the tasks still holding the old secret."""
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise PolicyError(f"{source}{line}: not valid YAML: {problem}") from None
    except RecursionError:  # PyYAML composes nested collections recursively
        raise PolicyError(f"{source}: nested too deeply to be a policy") from None
    if root is None:
        raise PolicyError(f"{source}: the policy is empty; it needs 'rules' or 'default'")
    return _Reader(source, shortest_max_age).policy(root)


class _Reader:
    def __init__(self, source: str, shortest_max_age: float) -> None:
        self.source = source
        self.shortest_max_age = shortest_max_age

    def fail(self, node: Node, where: str, what: str) -> PolicyError:
        return PolicyError(f"{self.source}:{node.start_mark.line + 1}: {where}: {what}")

    def mapping(self, node: Node, where: str, keys: Sequence[str]) -> dict[str, Node]:
        if not isinstance(node, MappingNode):
            raise self.fail(node, where, "must be a mapping")
        found: dict[str, Node] = {}
        for key_node, value in node.value:
            key = self.scalar(key_node, where)
            if key not in keys:
                raise self.fail(
                    key_node, where, f"unknown key {key!r} (expected: {', '.join(keys)})"
                )
            if key in found:
                raise self.fail(key_node, where, f"{key!r} appears twice")
            found[key] = value
        return found

    def scalar(self, node: Node, where: str) -> str:
        if not isinstance(node, ScalarNode) or node.tag.endswith((":null", ":bool")):
            raise self.fail(node, where, "must be a string")
        return str(node.value)

    def strings(self, node: Node, where: str) -> tuple[str, ...]:
        if not isinstance(node, SequenceNode):
            raise self.fail(node, where, 'must be a list of strings, e.g. [read, "orders:*"]')
        items = tuple(self.scalar(item, f"{where}[{i}]") for i, item in enumerate(node.value))
        for index, (item, item_node) in enumerate(zip(items, node.value, strict=True)):
            if not item or any(ch.isspace() for ch in item):
                raise self.fail(item_node, f"{where}[{index}]", "must be one word, not empty")
        return items

    def policy(self, root: Node) -> RegistrationPolicy:
        top = self.mapping(root, "the policy", ("rules", "default"))
        rules: list[Rule] = []
        if "rules" in top:
            node = top["rules"]
            if not isinstance(node, SequenceNode):
                raise self.fail(node, "rules", "must be a list of rules")
            rules = [self.rule(item, f"rules[{i}]") for i, item in enumerate(node.value)]
        default = self.grant(top["default"], "default") if "default" in top else Grant()
        return RegistrationPolicy(tuple(rules), default, self.source)

    def rule(self, node: Node, where: str) -> Rule:
        fields = self.mapping(node, where, ("match", *GRANT_KEYS))
        if "match" not in fields:
            raise self.fail(node, where, "needs a 'match' (use 'default' for the rest)")
        match = self.match(fields.pop("match"), f"{where}.match")
        grant = self.grant_fields(fields, where)
        return Rule(match, grant, line=node.start_mark.line + 1)

    def match(self, node: Node, where: str) -> Match:
        fields = self.mapping(node, where, ("stack", "service", "labels"))
        labels: dict[str, str] = {}
        if "labels" in fields:
            label_node = fields["labels"]
            if not isinstance(label_node, MappingNode):
                raise self.fail(label_node, f"{where}.labels", "must be a mapping of label: value")
            for key_node, value_node in label_node.value:
                key = self.scalar(key_node, f"{where}.labels")
                labels[key] = self.scalar(value_node, f"{where}.labels.{key}")
        return Match(
            stack=self.scalar(fields["stack"], f"{where}.stack") if "stack" in fields else None,
            service=(
                self.scalar(fields["service"], f"{where}.service") if "service" in fields else None
            ),
            labels=labels,
        )

    def grant(self, node: Node, where: str) -> Grant:
        return self.grant_fields(self.mapping(node, where, GRANT_KEYS), where)

    def grant_fields(self, fields: dict[str, Node], where: str) -> Grant:
        def globs(key: str) -> tuple[str, ...] | None:
            return self.strings(fields[key], f"{where}.{key}") if key in fields else None

        max_age = None
        if "secret_max_age" in fields:
            node = fields["secret_max_age"]
            try:
                max_age = parse_duration(self.scalar(node, f"{where}.secret_max_age"))
            except InvalidDuration as exc:
                raise self.fail(node, f"{where}.secret_max_age", str(exc)) from None
            if max_age and max_age < self.shortest_max_age:
                shortest = format_duration(self.shortest_max_age)
                raise self.fail(node, f"{where}.secret_max_age", f"at least {shortest} (0: never)")
        return Grant(
            client_ids=globs("client_id"),
            scopes=globs("scopes") or (),
            audiences=globs("audiences") or (),
            secret_max_age=max_age,
        )
