"""Stored rules of a workflow: checking one before it is stored, the latest versions in force,
and evaluating a list of them (a state agent's trigger rules) with a readable explanation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from config.errors import ValidationFailed
from workflow_bridge.models import Rule, Workflow
from workflow_bridge.net import Condition, RuleError, evaluate, explain, parse_condition

RULE_FIELDS = frozenset({"id", "name", "description", "condition", "tags"})


def check_rule(data: Any) -> tuple[str, dict[str, Any], list[str]]:
    """(rule id, condition, tags) of a rule body, or ``ValidationFailed`` naming the field; an
    unknown condition type is refused here, never stored to pass later."""
    from workflow_bridge.definitions import SLUG_RE

    if not isinstance(data, Mapping):
        raise ValidationFailed("rule: must be a JSON object")
    unknown = sorted(set(data) - RULE_FIELDS)
    if unknown:
        raise ValidationFailed(f"{unknown[0]}: unknown field")
    rule_id = data.get("id")
    if not isinstance(rule_id, str) or not SLUG_RE.match(rule_id):
        raise ValidationFailed("id: lowercase letters, digits and hyphens (1-100)")
    name = data.get("name")
    if name is not None and (
        not isinstance(name, str) or len(name) > 200 or not name.isprintable()
    ):
        raise ValidationFailed(
            "name: must be a string of at most 200 characters, no control characters"
        )
    description = data.get("description")
    if description is not None and not isinstance(description, str):
        raise ValidationFailed("description: must be a string")
    condition = data.get("condition")
    try:
        parse_condition(condition)
    except RuleError as exc:
        raise ValidationFailed(f"condition: {exc}", details={"condition": [str(exc)]}) from None
    tags = data.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) and t for t in tags):
        raise ValidationFailed("tags: must be a list of non-empty strings")
    assert isinstance(condition, dict)  # parse_condition accepted it: an object
    return rule_id, dict(condition), list(tags)


def latest_rules(workflow: Workflow) -> dict[str, Condition]:
    """Each rule of the workflow at its latest version, parsed (one query)."""
    latest: dict[str, Condition] = {}
    for rule in Rule.objects.filter(workflow=workflow).order_by("rule_id", "-version"):
        if rule.rule_id not in latest:
            latest[rule.rule_id] = parse_condition(rule.condition)
    return latest


def evaluate_safely(condition: Condition, view: Mapping[str, Any]) -> tuple[bool, str]:
    """(passed, explanation) of one condition. A rule that cannot be evaluated (a tenant's
    pattern that runs out of time) does not pass, and says why: it never fails the request."""
    try:
        result = evaluate(condition, view)
    except RuleError as exc:
        return False, f"could not be evaluated: {exc}"
    return result.passed, explain(result)


def evaluate_rules(
    workflow: Workflow, rule_ids: list[str], view: Mapping[str, Any]
) -> tuple[bool, str]:
    """Do all these rules pass on ``view``? With the explanation of those that did not (an
    unknown rule id fails: it never passes)."""
    if not rule_ids:
        return True, "no trigger rules"
    rules = latest_rules(workflow)
    failed = []
    for rule_id in rule_ids:
        condition = rules.get(rule_id)
        if condition is None:
            failed.append(f"rule {rule_id!r} does not exist")
            continue
        passed, explanation = evaluate_safely(condition, view)
        if not passed:
            failed.append(f"rule {rule_id!r}: {explanation}")
    return (not failed), ("; ".join(failed) if failed else "every trigger rule passes")
