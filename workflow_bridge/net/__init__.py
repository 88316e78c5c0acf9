"""The Petri-net semantics of workflows, in plain Python.

Nets and markings (:mod:`.model`), firing (:mod:`.firing`), analysis before anything runs
(:mod:`.analysis`), the conditions that guard transitions (:mod:`.rules`), how activity data
changes a resource (:mod:`.merge`) and a drawing (:mod:`.draw`). Nothing here imports Django,
a web framework, an HTTP client or the rest of the platform (a test walks the imports): the
Django app around it stores nets and resources and calls these functions, so the semantics
can be tested, and reasoned about, without a database.
"""

from __future__ import annotations

from .analysis import DEFAULT_MAX_MARKINGS, Analysis, AnalysisDict, Deadlock, analyze
from .draw import to_svg
from .firing import NotEnabled, Shortfall, Verdict, can_fire, enabled, fire
from .merge import merge_patch
from .model import (
    Activity,
    Arc,
    Marking,
    Net,
    NetError,
    Transition,
    activity_of,
    is_valid_id,
    state_machine,
    transition_for,
)
from .rules import (
    KNOWN_CONDITION_TYPES,
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
    PatternTimeout,
    Rule,
    RuleError,
    RuleResult,
    condition_to_json,
    evaluate,
    explain,
    parse_condition,
    parse_rule,
)
from .values import JSONValue

__all__ = [
    "DEFAULT_MAX_MARKINGS",
    "KNOWN_CONDITION_TYPES",
    "Activity",
    "Analysis",
    "AnalysisDict",
    "And",
    "Arc",
    "Between",
    "Condition",
    "Deadlock",
    "FieldContains",
    "FieldEquals",
    "FieldExists",
    "FieldGreaterThan",
    "FieldLessThan",
    "In",
    "JSONValue",
    "Marking",
    "Matches",
    "Net",
    "NetError",
    "Not",
    "NotEnabled",
    "Or",
    "PatternTimeout",
    "Rule",
    "RuleError",
    "RuleResult",
    "Shortfall",
    "Transition",
    "Verdict",
    "activity_of",
    "analyze",
    "can_fire",
    "condition_to_json",
    "enabled",
    "evaluate",
    "explain",
    "fire",
    "is_valid_id",
    "merge_patch",
    "parse_condition",
    "parse_rule",
    "state_machine",
    "to_svg",
    "transition_for",
]
