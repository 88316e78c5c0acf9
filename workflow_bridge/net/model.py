"""Petri nets as immutable values: places, transitions, weighted arcs and markings.

A workflow is a net: tokens sit in places, and a transition fires by taking ``weight`` tokens
from each input place and putting ``weight`` tokens in each output place. Nets are written by
tenants, so a :class:`Net` validates itself when it is built and can not exist in a broken
state; every later step (firing, analysis, drawing) relies on that and checks only what the
caller passes in (a marking, a transition id).

Identifiers (net, place and transition ids) are 1 to 100 ASCII letters, digits, ``_``, ``-``
or ``.``: they end up in URLs, event subjects and SVG attributes, where anything wider needs
escaping rules of its own. A transition id may also be two such identifiers joined by ``@``:
that form is what :func:`state_machine` produces (``approve@draft`` is the activity
``approve`` fired from the state ``draft``), and :func:`activity_of` reads it back.

Markings are hashable mappings that store positive counts only, so two markings with the same
tokens are equal whatever zeros they were built with, and they can be nodes of a graph.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

ID_MAX_LENGTH = 100
NAME_MAX_LENGTH = 200
# Upper bound for arc weights and initial token counts. Real workflows use single digits; the
# bound keeps counts far below the analysis' ω sentinel and drawings readable.
MAX_WEIGHT = 1_000_000

_ID = re.compile(r"[A-Za-z0-9_.\-]{1,100}")
_TRANSITION_ID = re.compile(r"[A-Za-z0-9_.\-]{1,100}(?:@[A-Za-z0-9_.\-]{1,100})?")
# Control characters make a name unreadable in logs and invalid in XML (the SVG drawing).
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
ACTIVITY_SEPARATOR = "@"


class NetError(ValueError):
    """The net is malformed, or a call names a place or transition the net does not have.
    The message names the offending element."""


def is_valid_id(value: object) -> bool:
    """Whether ``value`` is a valid net, place or rule id (see the module docstring)."""
    return isinstance(value, str) and _ID.fullmatch(value) is not None


def _check_id(value: object, what: str) -> str:
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise NetError(
            f"{what} {value!r} is not a valid id: use 1 to {ID_MAX_LENGTH} ASCII letters, "
            "digits, '_', '-' or '.'"
        )
    return value


def _check_transition_id(value: object) -> str:
    if not isinstance(value, str) or not _TRANSITION_ID.fullmatch(value):
        raise NetError(
            f"transition id {value!r} is not valid: use 1 to {ID_MAX_LENGTH} ASCII letters, "
            "digits, '_', '-' or '.', optionally followed by '@' and a second such id"
        )
    return value


def _check_count(value: object, what: str, *, minimum: int) -> int:
    # bool is an int in Python; True tokens is a bug in the caller, not a count.
    if isinstance(value, bool) or not isinstance(value, int):
        raise NetError(f"{what} is {value!r}; it must be a whole number")
    if value < minimum or value > MAX_WEIGHT:
        raise NetError(f"{what} is {value}; it must be between {minimum} and {MAX_WEIGHT}")
    return value


class Marking(Mapping[str, int]):
    """How many tokens each place holds: an immutable, hashable mapping.

    Only positive counts are stored (``Marking.of({"a": 0})`` is the empty marking), so
    equality and hashing depend on the tokens alone. Reading an unmarked place through
    :meth:`tokens` gives 0; indexing it raises ``KeyError`` like any mapping.
    """

    __slots__ = ("_counts", "_hash", "_items")

    _counts: Mapping[str, int]
    _items: tuple[tuple[str, int], ...]
    _hash: int

    def __init__(self, counts: Mapping[str, int] | Iterable[tuple[str, int]] = ()) -> None:
        pairs = counts.items() if isinstance(counts, Mapping) else counts
        merged: dict[str, int] = {}
        for place, count in pairs:
            if not isinstance(place, str):
                raise NetError(f"a marking names place {place!r}; place ids are strings")
            if isinstance(count, bool) or not isinstance(count, int):
                raise NetError(
                    f"token count for place {place!r} is {count!r}; it must be a whole number"
                )
            if count < 0:
                raise NetError(f"token count for place {place!r} is {count}; it must be ≥ 0")
            if place in merged:
                raise NetError(f"a marking names place {place!r} twice")
            merged[place] = count
        items = tuple(sorted((p, c) for p, c in merged.items() if c > 0))
        object.__setattr__(self, "_items", items)
        object.__setattr__(self, "_counts", MappingProxyType(dict(items)))
        object.__setattr__(self, "_hash", hash(items))

    @classmethod
    def of(cls, counts: Mapping[str, int]) -> Marking:
        """The marking with these counts (zeros are dropped)."""
        return cls(counts)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("a Marking is immutable; fire a transition to get a new one")

    def __getitem__(self, place: str) -> int:
        return self._counts[place]

    def __iter__(self) -> Iterator[str]:
        return iter(self._counts)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Marking):
            return self._items == other._items
        if isinstance(other, Mapping):
            return dict(self._items) == {k: v for k, v in other.items() if v != 0}
        return NotImplemented

    def __repr__(self) -> str:
        return f"Marking({dict(self._items)!r})"

    def tokens(self, place: str) -> int:
        """Tokens in ``place``; 0 when it holds none (or is not a place at all)."""
        return self._counts.get(place, 0)

    @property
    def total(self) -> int:
        """Tokens in all places together."""
        return sum(c for _, c in self._items)

    def as_dict(self) -> dict[str, int]:
        """A plain dict (JSON-ready), places in sorted order."""
        return dict(self._items)


@dataclass(frozen=True)
class Arc:
    """An arc between a place and a transition; ``weight`` tokens move along it per firing."""

    place: str
    weight: int = 1


@dataclass(frozen=True)
class Transition:
    """A step of the workflow. It is enabled when every input place holds at least the arc's
    weight in tokens. ``rules`` are ids of rules the caller evaluates before firing; the net
    only carries them (a net knows tokens, not resource data)."""

    id: str
    name: str
    inputs: tuple[Arc, ...]
    outputs: tuple[Arc, ...]
    rules: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Lists are accepted for convenience and frozen here, so a Transition stays hashable.
        for name in ("inputs", "outputs", "rules"):
            value = getattr(self, name)
            if not isinstance(value, tuple):
                if isinstance(value, str) or not isinstance(value, Sequence):
                    raise NetError(f"transition {self.id!r}: {name} must be a sequence")
                object.__setattr__(self, name, tuple(value))


@dataclass(frozen=True)
class Net:
    """A Petri net with its initial marking, valid by construction.

    Building one (directly or through :meth:`build`) raises :class:`NetError` for: ids that
    are not valid identifiers, duplicate place or transition ids, a place and a transition
    sharing an id, arcs or initial tokens naming unknown places, weights outside
    ``1..MAX_WEIGHT``, a transition without inputs (it would fire forever from nothing), two
    arcs between the same place and transition in one direction, and names that are empty,
    longer than 200 characters or contain control characters.
    """

    id: str
    places: tuple[str, ...]
    transitions: tuple[Transition, ...]
    initial_marking: Marking
    _by_id: Mapping[str, Transition] = field(init=False, repr=False, compare=False)
    _place_index: Mapping[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_id(self.id, "net id")
        if not isinstance(self.places, tuple):
            object.__setattr__(self, "places", tuple(self.places))
        if not isinstance(self.transitions, tuple):
            object.__setattr__(self, "transitions", tuple(self.transitions))
        if not isinstance(self.initial_marking, Marking):
            object.__setattr__(self, "initial_marking", Marking(self.initial_marking))

        if not self.places:
            raise NetError(f"net {self.id!r} has no places")
        place_index: dict[str, int] = {}
        for place in self.places:
            _check_id(place, "place id")
            if place in place_index:
                raise NetError(f"place {place!r} is declared twice")
            place_index[place] = len(place_index)

        by_id: dict[str, Transition] = {}
        for transition in self.transitions:
            if not isinstance(transition, Transition):
                raise NetError(f"{transition!r} is not a Transition")
            _validate_transition(transition, place_index)
            if transition.id in by_id:
                raise NetError(f"transition {transition.id!r} is declared twice")
            if transition.id in place_index:
                raise NetError(f"{transition.id!r} is both a place and a transition id")
            by_id[transition.id] = transition

        for place, count in self.initial_marking.items():
            if place not in place_index:
                raise NetError(f"the initial marking puts tokens in unknown place {place!r}")
            _check_count(count, f"initial token count of place {place!r}", minimum=0)

        object.__setattr__(self, "_by_id", MappingProxyType(by_id))
        object.__setattr__(self, "_place_index", MappingProxyType(place_index))

    @classmethod
    def build(
        cls,
        id: str,
        places: Iterable[str],
        transitions: Iterable[Transition],
        initial_marking: Mapping[str, int],
    ) -> Net:
        """A net from any iterables and a plain mapping for the initial marking."""
        return cls(id, tuple(places), tuple(transitions), Marking(initial_marking))

    def transition(self, transition_id: str) -> Transition:
        """The transition with this id; :class:`NetError` naming it when there is none."""
        try:
            return self._by_id[transition_id]
        except (KeyError, TypeError):
            raise NetError(f"net {self.id!r} has no transition {transition_id!r}") from None

    def has_transition(self, transition_id: str) -> bool:
        return transition_id in self._by_id

    def has_place(self, place: str) -> bool:
        return place in self._place_index

    def place_index(self, place: str) -> int:
        """Position of ``place`` in :attr:`places` (analysis works on count vectors)."""
        try:
            return self._place_index[place]
        except (KeyError, TypeError):
            raise NetError(f"net {self.id!r} has no place {place!r}") from None

    def check_marking(self, marking: Marking) -> None:
        """Raise :class:`NetError` when ``marking`` puts tokens in a place outside this net."""
        for place in marking:
            if place not in self._place_index:
                raise NetError(f"the marking puts tokens in {place!r}, not a place of {self.id!r}")


def _validate_transition(transition: Transition, place_index: Mapping[str, int]) -> None:
    tid = _check_transition_id(transition.id)
    name = transition.name
    if not isinstance(name, str) or not name.strip():
        raise NetError(f"transition {tid!r} needs a non-empty name")
    if len(name) > NAME_MAX_LENGTH:
        raise NetError(f"transition {tid!r}: name is longer than {NAME_MAX_LENGTH} characters")
    if _CONTROL.search(name):
        raise NetError(f"transition {tid!r}: name contains control characters")
    if not transition.inputs:
        raise NetError(
            f"transition {tid!r} has no input arcs; a transition without inputs would be "
            "enabled forever and create tokens from nothing"
        )
    for direction, arcs in (("input", transition.inputs), ("output", transition.outputs)):
        seen: set[str] = set()
        for arc in arcs:
            if not isinstance(arc, Arc):
                raise NetError(f"transition {tid!r}: {direction} {arc!r} is not an Arc")
            if not isinstance(arc.place, str) or arc.place not in place_index:
                raise NetError(
                    f"transition {tid!r}: {direction} arc names unknown place {arc.place!r}"
                )
            _check_count(
                arc.weight,
                f"transition {tid!r}: weight of {direction} arc {arc.place!r}",
                minimum=1,
            )
            if arc.place in seen:
                raise NetError(
                    f"transition {tid!r} has two {direction} arcs for place {arc.place!r}; "
                    "use one arc with the summed weight"
                )
            seen.add(arc.place)
    for rule in transition.rules:
        if not isinstance(rule, str) or not rule:
            raise NetError(f"transition {tid!r}: rule ids must be non-empty strings, got {rule!r}")


# ---- workflows as state machines ------------------------------------------------------------


@dataclass(frozen=True)
class Activity:
    """A step of a state-machine workflow (the original system's shape): it may start from any
    of ``from_states`` and always leads to ``to_state``."""

    id: str
    name: str
    from_states: tuple[str, ...]
    to_state: str
    rules: tuple[str, ...] = ()


ActivityLike = Activity | tuple[str, str, Sequence[str], str, Sequence[str]]


def transition_for(activity_id: str, from_state: str) -> str:
    """The id of the net transition that fires ``activity_id`` from ``from_state``."""
    return f"{activity_id}{ACTIVITY_SEPARATOR}{from_state}"


def activity_of(transition_id: str) -> str:
    """The activity a transition id stands for: ``approve@draft`` → ``approve``. A transition
    id without ``@`` (a hand-written net) is its own activity."""
    return transition_id.split(ACTIVITY_SEPARATOR, 1)[0]


def state_machine(
    states: Sequence[str],
    activities: Iterable[ActivityLike],
    initial_state: str,
    *,
    net_id: str = "workflow",
) -> Net:
    """The net of a state-machine workflow: one place per state, one token in the initial one.

    An activity allowed from several states becomes one transition per from-state, with the id
    :func:`transition_for` ``(activity, state)`` (``approve@draft``), a single input arc from
    that state and a single output arc to ``to_state``; every one carries the activity's name
    and rules. With one token in the net, the enabled transitions are exactly the activities
    allowed from the current state, and firing one moves the token: the original system's
    "check the from-state, set the new state", with nothing else to learn.
    """
    state_set = set(states)
    if initial_state not in state_set:
        raise NetError(f"initial state {initial_state!r} is not one of the states")
    transitions: list[Transition] = []
    seen: set[str] = set()
    for raw in activities:
        activity = raw if isinstance(raw, Activity) else Activity(*_activity_fields(raw))
        _check_id(activity.id, "activity id")
        if activity.id in seen:
            raise NetError(f"activity {activity.id!r} is declared twice")
        seen.add(activity.id)
        from_states = tuple(activity.from_states)
        if not from_states:
            raise NetError(f"activity {activity.id!r} has no from-states")
        if len(set(from_states)) != len(from_states):
            raise NetError(f"activity {activity.id!r} lists a from-state twice")
        for state in (*from_states, activity.to_state):
            if state not in state_set:
                raise NetError(f"activity {activity.id!r} names unknown state {state!r}")
        for from_state in from_states:
            transitions.append(
                Transition(
                    id=transition_for(activity.id, from_state),
                    name=activity.name,
                    inputs=(Arc(from_state),),
                    outputs=(Arc(activity.to_state),),
                    rules=tuple(activity.rules),
                )
            )
    return Net(net_id, tuple(states), tuple(transitions), Marking({initial_state: 1}))


def _activity_fields(
    raw: tuple[str, str, Sequence[str], str, Sequence[str]],
) -> tuple[str, str, tuple[str, ...], str, tuple[str, ...]]:
    if not isinstance(raw, tuple) or len(raw) != 5:
        raise NetError(
            f"activity {raw!r} must be (activity_id, name, from_states, to_state, rules)"
        )
    activity_id, name, from_states, to_state, rules = raw
    if isinstance(from_states, str) or isinstance(rules, str):
        raise NetError(f"activity {activity_id!r}: from_states and rules must be sequences")
    return activity_id, name, tuple(from_states), to_state, tuple(rules)
