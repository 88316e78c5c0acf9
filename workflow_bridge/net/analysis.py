"""What a net can do before anyone runs it: boundedness, deadlocks, dead parts.

Two explorations, both breadth first over count vectors (one int per place, in the net's
place order), both stopped after ``max_markings`` distinct markings:

* **Coverability** (the Karp-Miller construction). When a new marking ``M'`` is greater than
  or equal to one of its ancestors ``A`` in every place and differs from it, the firing
  sequence from ``A`` to ``M'`` can be repeated forever, so every place where ``M'`` exceeds
  ``A`` gets ω ("as many as you like"; ω - n = ω + n = ω). A marking already met anywhere is
  not expanded again. The result is finite for every net and, for every node, some reachable
  marking agrees with it on the finite places and is as large as you like on the ω ones, while
  every reachable marking is covered by some node. Hence, exactly: the net is bounded iff no
  ω appears; a place is unbounded iff some node has ω there; a transition is dead iff no node
  enables it; a place can be marked iff some node marks it.
* **Reachability**. Without ω both explorations are the same, so for a bounded net the nodes
  are exactly the reachable markings and one walk gives the count and the deadlocks (markings
  that enable nothing), each with the shortest firing sequence that reaches it. An unbounded
  net has infinitely many reachable markings: a second, plain walk finds the deadlocks among
  the first ``max_markings`` markings and says that the list is partial.

When the limit stops the coverability walk, what was not settled is reported as such:
``bounded`` is None unless an ω was already found (one acceleration proves unboundedness),
and dead transitions and unreachable places fall back to a structural check that is sound
but coarser (a transition is certainly dead when some input place can never get a token
whatever the counts).

Cost: each explored marking costs O(arcs) to find its enabled transitions, O(places) per
successor, and for each new successor a walk up its ancestors (O(depth), with an O(places)
comparison only for ancestors that hold fewer tokens in total). With the default limit of
10,000 markings, nets of tens of places and transitions take well under a second; the walk
is exponential in the worst case (concurrency multiplies markings), which is what the limit
is for.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypedDict

from .model import Marking, Net, NetError

DEFAULT_MAX_MARKINGS = 10_000
# A caller may raise the limit, but not without bound: the walk holds every marking in memory.
MAX_MARKINGS_LIMIT = 1_000_000
# How many deadlocks as_dict lists (the count is always exact for what was explored).
REPORTED_DEADLOCKS = 100
# ω: larger than any real count (initial counts and weights are at most 1,000,000), so that
# "enabled" and "covers" are plain integer comparisons; arithmetic leaves it unchanged.
OMEGA = 1 << 62

Vector = tuple[int, ...]


@dataclass(frozen=True)
class Deadlock:
    """A reachable marking that enables no transition, and the shortest way to it."""

    marking: Marking
    path: tuple[str, ...]

    def describe(self) -> str:
        way = f"after firing {', '.join(self.path)}" if self.path else "initially"
        return f"{way}, the marking {self.marking.as_dict()} enables no transition"


class DeadlockDict(TypedDict):
    marking: dict[str, int]
    path: list[str]


class AnalysisDict(TypedDict):
    net: str
    bounded: bool | None
    unbounded_places: list[str]
    reachable_markings: int | None
    explored_markings: int
    truncated: bool
    coverability_complete: bool
    max_markings: int
    final_places: list[str]
    deadlock_count: int
    deadlocks: list[DeadlockDict]
    proper_ends: list[DeadlockDict]
    dead_transitions: list[str]
    unreachable_places: list[str]
    explanations: list[str]


@dataclass(frozen=True)
class Analysis:
    """The result of :func:`analyze`.

    ``bounded`` is None when the limit stopped the walk before it was settled.
    ``reachable_markings`` is the exact count for a bounded net fully explored, else None.
    ``truncated``: the reachability walk stopped at the limit (always so for unbounded nets),
    so ``deadlocks`` lists only those found. ``coverability_complete``: the Karp-Miller walk
    finished, so ``unbounded_places``, ``dead_transitions`` and ``unreachable_places`` are
    exact rather than lower bounds. ``deadlocks`` are dead markings that are not proper ends;
    ``proper_ends`` are dead markings whose tokens all lie in ``final_places``.
    ``reachable`` holds the reachable markings the walk met (all of them unless truncated).
    ``markable_places`` and ``live_transitions`` are those proven to be marked or enabled in
    some reachable marking; what is in neither them nor the dead lists is undecided.
    """

    net_id: str
    places: tuple[str, ...]
    transitions: tuple[str, ...]
    bounded: bool | None
    unbounded_places: tuple[str, ...]
    reachable_markings: int | None
    explored_markings: int
    truncated: bool
    coverability_complete: bool
    max_markings: int
    final_places: frozenset[str]
    deadlocks: tuple[Deadlock, ...]
    proper_ends: tuple[Deadlock, ...]
    dead_transitions: tuple[str, ...]
    unreachable_places: tuple[str, ...]
    markable_places: frozenset[str]
    live_transitions: frozenset[str]
    reachable: frozenset[Marking]

    def can_be_marked(self, place: str) -> bool | None:
        """Whether some reachable marking puts a token in ``place``; None when the limit left
        it undecided. Raises :class:`NetError` for a place the net does not have."""
        if place not in self.places:
            raise NetError(f"net {self.net_id!r} has no place {place!r}")
        if place in self.markable_places:
            return True
        if place in self.unreachable_places:
            return False
        return None

    def can_fire_ever(self, transition_id: str) -> bool | None:
        """Whether ``transition_id`` is enabled in some reachable marking; None if undecided."""
        if transition_id not in self.transitions:
            raise NetError(f"net {self.net_id!r} has no transition {transition_id!r}")
        if transition_id in self.live_transitions:
            return True
        if transition_id in self.dead_transitions:
            return False
        return None

    def is_reachable(self, marking: Marking) -> bool | None:
        """Whether ``marking`` is reachable; None when the walk was truncated before finding it."""
        if marking in self.reachable:
            return True
        return None if self.truncated else False

    def explanations(self) -> list[str]:
        """One readable sentence per finding."""
        lines: list[str] = []
        if self.bounded is True:
            lines.append("Bounded: no place can collect tokens without limit.")
        elif self.bounded is False:
            places = ", ".join(repr(p) for p in self.unbounded_places)
            at_least = "" if self.coverability_complete else "at least "
            lines.append(
                f"Unbounded: {at_least}{places} can hold any number of tokens; some firing "
                "sequence produces more than it consumes and can repeat forever."
            )
        else:
            lines.append(
                f"Boundedness undecided: the analysis stopped at {self.max_markings} markings."
            )
        if self.reachable_markings is not None:
            lines.append(f"{self.reachable_markings} reachable markings.")
        elif self.truncated:
            lines.append(
                f"Only the first {self.explored_markings} reachable markings were explored; "
                "deadlocks beyond them are not reported."
            )
        for deadlock in self.deadlocks[:REPORTED_DEADLOCKS]:
            lines.append(f"Deadlock: {deadlock.describe()}.")
        if len(self.deadlocks) > REPORTED_DEADLOCKS:
            lines.append(f"… and {len(self.deadlocks) - REPORTED_DEADLOCKS} more deadlocks.")
        if self.proper_ends and not self.deadlocks:
            lines.append("Every dead marking found is a proper end (tokens only in final places).")
        for transition in self.dead_transitions:
            lines.append(f"Transition {transition!r} can never fire.")
        for place in self.unreachable_places:
            lines.append(f"Place {place!r} never receives a token.")
        if not self.coverability_complete and (self.dead_transitions or self.unreachable_places):
            lines.append(
                "The dead transitions and unmarked places listed are certain; others may exist "
                "beyond the explored markings."
            )
        return lines

    def as_dict(self) -> AnalysisDict:
        """The analysis as JSON-ready data, with readable explanations."""
        return {
            "net": self.net_id,
            "bounded": self.bounded,
            "unbounded_places": list(self.unbounded_places),
            "reachable_markings": self.reachable_markings,
            "explored_markings": self.explored_markings,
            "truncated": self.truncated,
            "coverability_complete": self.coverability_complete,
            "max_markings": self.max_markings,
            "final_places": sorted(self.final_places),
            "deadlock_count": len(self.deadlocks),
            "deadlocks": [_deadlock_dict(d) for d in self.deadlocks[:REPORTED_DEADLOCKS]],
            "proper_ends": [_deadlock_dict(d) for d in self.proper_ends[:REPORTED_DEADLOCKS]],
            "dead_transitions": list(self.dead_transitions),
            "unreachable_places": list(self.unreachable_places),
            "explanations": self.explanations(),
        }


def _deadlock_dict(deadlock: Deadlock) -> DeadlockDict:
    return {"marking": deadlock.marking.as_dict(), "path": list(deadlock.path)}


# ---- the walks -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Compiled:
    """Transitions as index/weight pairs, so the walks touch no dicts or strings."""

    places: tuple[str, ...]
    ids: tuple[str, ...]
    inputs: tuple[tuple[tuple[int, int], ...], ...]
    outputs: tuple[tuple[tuple[int, int], ...], ...]

    @classmethod
    def of(cls, net: Net) -> _Compiled:
        def arcs(pairs: Iterable[tuple[str, int]]) -> tuple[tuple[int, int], ...]:
            return tuple((net.place_index(place), weight) for place, weight in pairs)

        return cls(
            places=net.places,
            ids=tuple(t.id for t in net.transitions),
            inputs=tuple(arcs((a.place, a.weight) for a in t.inputs) for t in net.transitions),
            outputs=tuple(arcs((a.place, a.weight) for a in t.outputs) for t in net.transitions),
        )

    def enabled(self, vector: Vector) -> list[int]:
        return [
            t
            for t, arcs in enumerate(self.inputs)
            if all(vector[i] >= weight for i, weight in arcs)
        ]

    def fire(self, vector: Vector, t: int) -> Vector:
        new = list(vector)
        for i, weight in self.inputs[t]:
            if new[i] != OMEGA:
                new[i] -= weight
        for i, weight in self.outputs[t]:
            if new[i] != OMEGA:
                new[i] += weight
        return tuple(new)

    def marking(self, vector: Vector) -> Marking:
        return Marking(zip(self.places, vector, strict=True))


@dataclass
class _Walk:
    """The nodes one exploration found: each marking once, with the node it was first reached
    from and the transition fired to get there (so paths are shortest, breadth first)."""

    vectors: list[Vector]
    parents: list[int]
    via: list[int]
    dead: list[int]
    enabled_somewhere: set[int]
    truncated: bool
    omega_seen: bool

    def path(self, compiled: _Compiled, node: int) -> tuple[str, ...]:
        steps: list[str] = []
        while self.parents[node] >= 0:
            steps.append(compiled.ids[self.via[node]])
            node = self.parents[node]
        return tuple(reversed(steps))


def _walk(compiled: _Compiled, start: Vector, limit: int, *, accelerate: bool) -> _Walk:
    vectors: list[Vector] = [start]
    parents = [-1]
    via = [-1]
    # Tokens in finite places and the number of ω places: a node can only be strictly covered
    # by a descendant with more ω places, or the same ω places and more finite tokens, so most
    # ancestors are ruled out by two integer comparisons.
    finite_sums = [sum(start)]
    omega_counts = [0]
    index: dict[Vector, int] = {start: 0}
    dead: list[int] = []
    enabled_somewhere: set[int] = set()
    queue = deque([0])
    truncated = False
    omega_seen = False

    while queue:
        node = queue.popleft()
        vector = vectors[node]
        fireable = compiled.enabled(vector)
        enabled_somewhere.update(fireable)
        if not fireable:
            dead.append(node)
        if truncated:
            # Past the limit: the queued nodes are still classified (dead or not, what they
            # enable), but not expanded.
            continue
        for t in fireable:
            child = compiled.fire(vector, t)
            if child in index:
                continue
            if accelerate:
                child = _accelerated(child, node, vectors, parents, finite_sums, omega_counts)
                if child in index:
                    continue
            if len(vectors) >= limit:
                truncated = True
                break
            index[child] = len(vectors)
            queue.append(len(vectors))
            vectors.append(child)
            parents.append(node)
            via.append(t)
            omegas = sum(1 for v in child if v == OMEGA)
            omega_seen = omega_seen or omegas > 0
            omega_counts.append(omegas)
            finite_sums.append(sum(v for v in child if v != OMEGA))
    return _Walk(vectors, parents, via, dead, enabled_somewhere, truncated, omega_seen)


def _accelerated(
    child: Vector,
    parent: int,
    vectors: list[Vector],
    parents: list[int],
    finite_sums: list[int],
    omega_counts: list[int],
) -> Vector:
    """``child`` with ω in every place where it strictly exceeds an ancestor it covers."""
    child_omegas = sum(1 for v in child if v == OMEGA)
    child_sum = sum(v for v in child if v != OMEGA)
    pumped: set[int] = set()
    ancestor = parent
    while ancestor >= 0:
        if omega_counts[ancestor] < child_omegas or (
            omega_counts[ancestor] == child_omegas and finite_sums[ancestor] < child_sum
        ):
            old = vectors[ancestor]
            if all(c >= a for c, a in zip(child, old, strict=True)):
                pumped.update(i for i, (c, a) in enumerate(zip(child, old, strict=True)) if c > a)
        ancestor = parents[ancestor]
    if not pumped:
        return child
    return tuple(OMEGA if i in pumped else v for i, v in enumerate(child))


def _structurally_possible(net: Net) -> tuple[set[str], set[str]]:
    """Places that might ever hold a token and transitions that might ever fire, ignoring
    counts: start from the initially marked places, and let every transition whose input
    places are all possible mark its outputs. Anything left out is certainly never marked or
    never enabled (the converse does not hold)."""
    places = set(net.initial_marking)
    transitions: set[str] = set()
    changed = True
    while changed:
        changed = False
        for transition in net.transitions:
            if transition.id in transitions:
                continue
            if all(arc.place in places for arc in transition.inputs):
                transitions.add(transition.id)
                places.update(arc.place for arc in transition.outputs)
                changed = True
    return places, transitions


def analyze(
    net: Net,
    *,
    max_markings: int = DEFAULT_MAX_MARKINGS,
    final_places: frozenset[str] = frozenset(),
) -> Analysis:
    """Boundedness, reachable markings, deadlocks, dead transitions and never-marked places.

    ``final_places`` are where a finished workflow leaves its tokens: a dead marking whose
    tokens all lie there (and that holds at least one) is a proper end, not a deadlock.
    ``max_markings`` bounds each exploration (see the module docstring for what is exact and
    what is partial when it is reached).
    """
    if isinstance(max_markings, bool) or not isinstance(max_markings, int):
        raise ValueError(f"max_markings must be a whole number, got {max_markings!r}")
    if not 1 <= max_markings <= MAX_MARKINGS_LIMIT:
        raise ValueError(f"max_markings must be between 1 and {MAX_MARKINGS_LIMIT}")
    final = frozenset(final_places)
    for place in sorted(final):
        if not net.has_place(place):
            raise NetError(f"final place {place!r} is not a place of net {net.id!r}")

    compiled = _Compiled.of(net)
    start = tuple(net.initial_marking.tokens(p) for p in net.places)
    cover = _walk(compiled, start, max_markings, accelerate=True)
    # Without ω the Karp-Miller walk was a plain reachability walk: reuse it.
    reach = _walk(compiled, start, max_markings, accelerate=False) if cover.omega_seen else cover

    unbounded = tuple(
        place
        for i, place in enumerate(net.places)
        if any(vector[i] == OMEGA for vector in cover.vectors)
    )
    if cover.omega_seen:
        bounded: bool | None = False
    else:
        bounded = None if cover.truncated else True

    markable = frozenset(
        place
        for i, place in enumerate(net.places)
        if any(vector[i] > 0 for vector in cover.vectors)
    )
    live = frozenset(compiled.ids[t] for t in cover.enabled_somewhere)
    if cover.truncated:
        possible_places, possible_transitions = _structurally_possible(net)
    else:
        possible_places, possible_transitions = set(markable), set(live)
    dead_transitions = tuple(t.id for t in net.transitions if t.id not in possible_transitions)
    unreachable_places = tuple(p for p in net.places if p not in possible_places)

    deadlocks: list[Deadlock] = []
    proper_ends: list[Deadlock] = []
    for node in reach.dead:
        marking = compiled.marking(reach.vectors[node])
        found = Deadlock(marking, reach.path(compiled, node))
        if marking.total > 0 and all(place in final for place in marking):
            proper_ends.append(found)
        else:
            deadlocks.append(found)

    return Analysis(
        net_id=net.id,
        places=net.places,
        transitions=compiled.ids,
        bounded=bounded,
        unbounded_places=unbounded,
        reachable_markings=len(reach.vectors) if bounded and not reach.truncated else None,
        explored_markings=len(reach.vectors),
        truncated=reach.truncated or cover.omega_seen,
        coverability_complete=not cover.truncated,
        max_markings=max_markings,
        final_places=final,
        deadlocks=tuple(deadlocks),
        proper_ends=tuple(proper_ends),
        dead_transitions=dead_transitions,
        unreachable_places=unreachable_places,
        markable_places=markable,
        live_transitions=live,
        reachable=frozenset(compiled.marking(v) for v in reach.vectors),
    )
