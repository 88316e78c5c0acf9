"""Nets the tests share: small, each with one property worth checking."""

from __future__ import annotations

from workflow_bridge.net import Arc, Net, Transition


def t(tid: str, inputs: dict[str, int], outputs: dict[str, int], name: str = "") -> Transition:
    """A transition from ``{place: weight}`` dicts."""
    return Transition(
        tid,
        name or tid,
        tuple(Arc(p, w) for p, w in inputs.items()),
        tuple(Arc(p, w) for p, w in outputs.items()),
    )


def sound_workflow() -> Net:
    """start → fork → (a | b) → join → end: a workflow net that always finishes."""
    return Net.build(
        "order",
        ["start", "p1", "p2", "q1", "q2", "end"],
        [
            t("fork", {"start": 1}, {"p1": 1, "p2": 1}),
            t("a", {"p1": 1}, {"q1": 1}),
            t("b", {"p2": 1}, {"q2": 1}),
            t("join", {"q1": 1, "q2": 1}, {"end": 1}),
        ],
        {"start": 1},
    )


def mutual_wait() -> Net:
    """After the split, each branch waits for a signal only the other branch sends."""
    return Net.build(
        "mutual",
        ["ready", "a_wait", "b_wait", "signal_a", "signal_b", "a_done", "b_done"],
        [
            t("split", {"ready": 1}, {"a_wait": 1, "b_wait": 1}),
            t("ta", {"a_wait": 1, "signal_b": 1}, {"a_done": 1, "signal_a": 1}),
            t("tb", {"b_wait": 1, "signal_a": 1}, {"b_done": 1, "signal_b": 1}),
        ],
        {"ready": 1},
    )


def doubling_cycle() -> Net:
    """a → 2 b, b → a: every round trip doubles the tokens."""
    return Net.build(
        "doubling",
        ["a", "b"],
        [t("spread", {"a": 1}, {"b": 2}), t("gather", {"b": 1}, {"a": 1})],
        {"a": 1},
    )


def ring(places: int, tokens: int) -> Net:
    """``tokens`` tokens moving round a ring of ``places`` places; the reachable markings are
    the multisets of ``tokens`` positions, C(places + tokens - 1, tokens) of them."""
    names = [f"r{i}" for i in range(places)]
    return Net.build(
        "ring",
        names,
        [t(f"step{i}", {names[i]: 1}, {names[(i + 1) % places]: 1}) for i in range(places)],
        {names[0]: tokens},
    )


def toggles(count: int) -> Net:
    """``count`` independent on/off switches: 2**count reachable markings."""
    places = [name for i in range(count) for name in (f"off{i}", f"on{i}")]
    transitions = [
        tr
        for i in range(count)
        for tr in (
            t(f"up{i}", {f"off{i}": 1}, {f"on{i}": 1}),
            t(f"down{i}", {f"on{i}": 1}, {f"off{i}": 1}),
        )
    ]
    return Net.build("toggles", places, transitions, {f"off{i}": 1 for i in range(count)})
