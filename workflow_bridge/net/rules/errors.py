"""The errors of rules: a rule that is unusable, and a pattern that ran away."""

from __future__ import annotations


class RuleError(ValueError):
    """A condition or rule is unusable; the message says where (``condition.conditions[1]``)
    and what is wrong."""


class PatternTimeout(RuleError):
    """A ``Matches`` pattern ran past the evaluation's time budget (catastrophic
    backtracking). Raised from :func:`evaluate`: the rule is broken, not the resource."""

    def __init__(self, pattern: str, seconds: float) -> None:
        super().__init__(
            f"the pattern {pattern!r} did not finish within {seconds:g} s "
            "(catastrophic backtracking); simplify the pattern"
        )
        self.pattern = pattern
        self.seconds = seconds
