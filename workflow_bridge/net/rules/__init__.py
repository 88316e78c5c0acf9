"""Conditions on a resource, written by tenants as JSON trees and evaluated with explanations.

A condition reads fields of a *view* ``{"data": …, "metadata": …}`` by dot path
(``data.order.total``, ``metadata.priority``, ``data.items.0.sku`` where a number indexes an
array). Three decisions make rules safe to trust:

* **Parsing is strict.** :func:`parse_condition` refuses an unknown ``type`` (naming the known
  ones), unknown or missing keys, values of the wrong kind, and paths outside the view. The
  original system let an unknown named condition *pass*, which turned every typo into an
  open gate; here it is an error before the rule is ever stored.
* **Absence is false, never an error.** A comparison on a field that is not there fails, and
  the explanation says which part of the path was missing; so does comparing values JSON
  can not order (a string with a number). ``FieldExists`` is how a rule asks about presence.
* **Regular expressions are time-bounded.** ``Matches`` runs through the ``regex`` package
  (Python ``re`` syntax, lookarounds and backreferences included) with a time budget shared by
  the whole evaluation; a pattern that backtracks past it raises :class:`PatternTimeout`
  instead of holding the worker. It raises rather than failing the condition because a
  ``Not`` around it would turn the runaway pattern into a pass.

Every condition is evaluated, also after the outcome of an ``And`` or ``Or`` is known, so the
explanation shows all that failed, and an evaluation does not depend on the order of
children.
"""

from __future__ import annotations

from .conditions import (
    CONDITION_CLASSES,
    MAX_PATTERN_LENGTH,
    REGEX_BUDGET_SECONDS,
    And,
    Between,
    Condition,
    FieldContains,
    FieldEquals,
    FieldExists,
    FieldGreaterThan,
    FieldLessThan,
    In,
    Matches,
    Not,
    Or,
    RuleResult,
    evaluate,
    explain,
)
from .errors import PatternTimeout, RuleError
from .parsing import (
    CONDITION_KEYS,
    KNOWN_CONDITION_TYPES,
    MAX_CONDITION_DEPTH,
    MAX_CONDITION_NODES,
    Rule,
    condition_to_json,
    parse_condition,
    parse_rule,
)
from .paths import VIEW_ROOTS

__all__ = [
    "CONDITION_CLASSES",
    "CONDITION_KEYS",
    "KNOWN_CONDITION_TYPES",
    "MAX_CONDITION_DEPTH",
    "MAX_CONDITION_NODES",
    "MAX_PATTERN_LENGTH",
    "REGEX_BUDGET_SECONDS",
    "VIEW_ROOTS",
    "And",
    "Between",
    "Condition",
    "FieldContains",
    "FieldEquals",
    "FieldExists",
    "FieldGreaterThan",
    "FieldLessThan",
    "In",
    "Matches",
    "Not",
    "Or",
    "PatternTimeout",
    "Rule",
    "RuleError",
    "RuleResult",
    "condition_to_json",
    "evaluate",
    "explain",
    "parse_condition",
    "parse_rule",
]
