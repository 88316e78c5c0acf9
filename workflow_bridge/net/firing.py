"""Firing transitions: which are enabled in a marking, why one is not, and the next marking.

A transition is enabled when each input place holds at least its arc's weight; firing takes
those tokens and adds the output weights, in one step (a place that is both input and output
of a transition keeps ``count - in + out``). Forks (one input, several outputs) and joins
(several inputs) need nothing special.

Nothing here mutates: :func:`fire` returns a new :class:`~workflow_bridge.net.model.Marking`.
Refusals carry a :class:`Verdict` that says which places lack how many tokens, because "not
enabled" alone does not tell a tenant what their workflow is waiting for.
"""

from __future__ import annotations

from dataclasses import dataclass

from .model import Marking, Net, Transition


@dataclass(frozen=True)
class Shortfall:
    """An input place that holds fewer tokens than the arc takes."""

    place: str
    needed: int
    present: int

    @property
    def missing(self) -> int:
        return self.needed - self.present


@dataclass(frozen=True)
class Verdict:
    """Whether a transition may fire, and if not, every input place it waits for.

    Truthy when enabled, so ``if can_fire(...)`` reads naturally.
    """

    transition: str
    enabled: bool
    shortfalls: tuple[Shortfall, ...] = ()

    def __bool__(self) -> bool:
        return self.enabled

    @property
    def reason(self) -> str:
        if self.enabled:
            return f"transition {self.transition!r} is enabled"
        lacks = "; ".join(
            f"place {s.place!r} holds {s.present} of the {s.needed} token"
            f"{'s' if s.needed != 1 else ''} it needs ({s.missing} missing)"
            for s in self.shortfalls
        )
        return f"transition {self.transition!r} is not enabled: {lacks}"


class NotEnabled(Exception):
    """A transition was fired in a marking where it is not enabled; ``verdict`` says why."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(verdict.reason)
        self.verdict = verdict


def _verdict(transition: Transition, marking: Marking) -> Verdict:
    shortfalls = tuple(
        Shortfall(arc.place, arc.weight, marking.tokens(arc.place))
        for arc in transition.inputs
        if marking.tokens(arc.place) < arc.weight
    )
    return Verdict(transition.id, not shortfalls, shortfalls)


def can_fire(net: Net, marking: Marking, transition_id: str) -> Verdict:
    """Whether ``transition_id`` is enabled in ``marking``, and if not, why.

    Raises :class:`NetError` for a transition the net does not have or a marking with tokens
    outside the net (a marking from another net is a bug, not a "no").
    """
    transition = net.transition(transition_id)
    net.check_marking(marking)
    return _verdict(transition, marking)


def enabled(net: Net, marking: Marking) -> tuple[str, ...]:
    """Ids of the transitions enabled in ``marking``, in the net's declaration order."""
    net.check_marking(marking)
    return tuple(t.id for t in net.transitions if _verdict(t, marking).enabled)


def fire(net: Net, marking: Marking, transition_id: str) -> Marking:
    """The marking after firing ``transition_id``.

    Raises :class:`NotEnabled` (with the places that lack tokens) when it is not enabled, and
    :class:`NetError` for an unknown transition or a marking that does not belong to the net.
    """
    verdict = can_fire(net, marking, transition_id)
    if not verdict.enabled:
        raise NotEnabled(verdict)
    transition = net.transition(transition_id)
    counts = dict(marking)
    for arc in transition.inputs:
        counts[arc.place] -= arc.weight
    for arc in transition.outputs:
        counts[arc.place] = counts.get(arc.place, 0) + arc.weight
    return Marking(counts)
