"""A picture of a net as a self-contained SVG string, laid out here in Python.

Places are circles with their token counts, transitions are bars, arcs are arrows (weights
above 1 are written on them). The layout is layered left to right: a breadth-first walk from
the initially marked places gives each node a column (its distance in arcs), and one
barycenter pass orders each column by the rows of the nodes that lead into it, which removes
most crossings of a workflow's forks and joins. Arcs that go back (loops) are drawn as curves
below the straight ones. Everything is deterministic: the same net gives the same bytes, so
drawings can be cached and compared. Good for tens of nodes; beyond that a drawing is not
where anyone reads a net.

The output is meant to be inlined in the console, so it carries no script, no stylesheet
(a ``<style>`` element inside inline SVG applies to the whole page) and no external reference:
colours are presentation attributes, the one arrowhead is a ``<marker>`` of its own. Ids and
names come from tenants: every text and attribute value is escaped.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from html import escape

from .firing import enabled
from .model import Marking, Net, NetError

COLUMN = 150
ROW = 90
MARGIN = 60
PLACE_RADIUS = 22
BAR_WIDTH = 14
BAR_HEIGHT = 50
LABEL_CHARS = 24
ARROW_ID = "cb-net-arrow"

INK = "#1f2937"
MUTED = "#6b7280"
ENABLED = "#15803d"
HIGHLIGHT = "#d97706"


def _attr(value: object) -> str:
    return escape(str(value), quote=True)


def _label(text: str) -> str:
    return text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 1] + "…"


@dataclass(frozen=True)
class _Node:
    kind: str  # "place" or "transition"
    id: str


@dataclass(frozen=True)
class _Point:
    x: float
    y: float


def _layout(net: Net) -> dict[_Node, _Point]:
    places = [_Node("place", p) for p in net.places]
    successors: dict[_Node, list[_Node]] = {node: [] for node in places}
    predecessors: dict[_Node, list[_Node]] = {node: [] for node in places}
    for transition in net.transitions:
        node = _Node("transition", transition.id)
        successors[node] = [_Node("place", a.place) for a in transition.outputs]
        predecessors[node] = [_Node("place", a.place) for a in transition.inputs]
        for arc in transition.inputs:
            successors[_Node("place", arc.place)].append(node)
        for arc in transition.outputs:
            predecessors[_Node("place", arc.place)].append(node)

    roots = [n for n in places if net.initial_marking.tokens(n.id) > 0]
    if not roots:
        roots = [n for n in places if not predecessors[n]] or places[:1]
    level: dict[_Node, int] = {}
    order: list[_Node] = []  # discovery order, the tie-breaker everywhere

    def walk(starts: Iterable[_Node]) -> None:
        queue: deque[_Node] = deque()
        for start in starts:
            if start not in level:
                level[start] = 0
                order.append(start)
                queue.append(start)
        while queue:
            node = queue.popleft()
            for nxt in successors[node]:
                if nxt not in level:
                    level[nxt] = level[node] + 1
                    order.append(nxt)
                    queue.append(nxt)

    walk(roots)
    # Parts the walk did not reach (upstream of the marked places, or disconnected): every
    # transition has an input place, so walking from each unreached place reaches them all.
    for place in places:
        walk([place])

    columns: dict[int, list[_Node]] = {}
    for node in order:
        columns.setdefault(level[node], []).append(node)
    row: dict[_Node, int] = {}
    for lvl in sorted(columns):
        column = columns[lvl]
        if lvl > 0:
            key: dict[_Node, tuple[float, int]] = {}
            for i, node in enumerate(column):
                before = [row[p] for p in predecessors[node] if p in row]
                key[node] = (sum(before) / len(before) if before else math.inf, i)
            column.sort(key=key.__getitem__)
        for i, node in enumerate(column):
            row[node] = i

    tallest = max(len(column) for column in columns.values())
    points: dict[_Node, _Point] = {}
    for lvl, column in columns.items():
        offset = (tallest - len(column)) * ROW / 2
        for node in column:
            points[node] = _Point(MARGIN + lvl * COLUMN, MARGIN + offset + row[node] * ROW)
    return points


def _boundary(center: _Point, kind: str, towards: _Point) -> _Point:
    """Where the segment from ``center`` to ``towards`` leaves the node's shape."""
    dx, dy = towards.x - center.x, towards.y - center.y
    length = math.hypot(dx, dy) or 1.0
    if kind == "place":
        return _Point(center.x + dx / length * PLACE_RADIUS, center.y + dy / length * PLACE_RADIUS)
    scale = min(
        (BAR_WIDTH / 2) / abs(dx) if dx else math.inf,
        (BAR_HEIGHT / 2) / abs(dy) if dy else math.inf,
    )
    return _Point(center.x + dx * scale, center.y + dy * scale)


def _arc(
    source: _Node, target: _Node, points: dict[_Node, _Point], weight: int, color: str
) -> tuple[list[str], float]:
    """The SVG elements of one arc, and the lowest y they reach."""
    a, b = points[source], points[target]
    parts: list[str] = []
    lowest = max(a.y, b.y)
    if b.x > a.x:
        start = _boundary(a, source.kind, b)
        end = _boundary(b, target.kind, a)
        shape = f'<line x1="{start.x:.1f}" y1="{start.y:.1f}" x2="{end.x:.1f}" y2="{end.y:.1f}"'
        label = _Point((start.x + end.x) / 2, (start.y + end.y) / 2 - 6)
    else:
        # A loop back to an earlier column: bend below both ends so it does not run over the
        # straight arcs between them.
        sag = 40 + abs(a.x - b.x) / 4
        control = _Point((a.x + b.x) / 2, max(a.y, b.y) + sag)
        start = _boundary(a, source.kind, control)
        end = _boundary(b, target.kind, control)
        shape = (
            f'<path d="M {start.x:.1f} {start.y:.1f} Q {control.x:.1f} {control.y:.1f} '
            f'{end.x:.1f} {end.y:.1f}" fill="none"'
        )
        # The curve's midpoint, just below it.
        label = _Point(
            (start.x + end.x) / 4 + control.x / 2, (start.y + end.y) / 4 + control.y / 2 + 14
        )
        lowest = label.y
    parts.append(f'{shape} stroke="{color}" stroke-width="1.5" marker-end="url(#{ARROW_ID})"/>')
    if weight > 1:
        parts.append(
            f'<text x="{label.x:.1f}" y="{label.y:.1f}" text-anchor="middle" font-size="12" '
            f'fill="{INK}" data-weight="{weight}">{weight}</text>'
        )
    return parts, lowest


def to_svg(
    net: Net,
    marking: Marking | None = None,
    *,
    highlight: Iterable[str] = (),
    title: str | None = None,
) -> str:
    """The net drawn as SVG, with ``marking`` (default: the initial marking) in its places.

    Transitions enabled in that marking are drawn green; places and transitions named in
    ``highlight`` (e.g. the one just fired) orange. ``title`` (default: the net's id) names
    the drawing, e.g. the workflow's name. Raises :class:`NetError` for a marking with tokens
    outside the net or a highlighted id that is neither a place nor a transition.
    """
    shown = net.initial_marking if marking is None else marking
    net.check_marking(shown)
    marked = set(highlight)
    for name in sorted(marked):
        if not net.has_place(name) and not net.has_transition(name):
            raise NetError(f"cannot highlight {name!r}: not a place or transition of {net.id!r}")
    live = set(enabled(net, shown))
    points = _layout(net)

    arcs: list[str] = []
    lowest = 0.0
    for transition in net.transitions:
        node = _Node("transition", transition.id)
        ends = [(_Node("place", a.place), node, a.weight) for a in transition.inputs]
        ends += [(node, _Node("place", a.place), a.weight) for a in transition.outputs]
        for source, target, weight in ends:
            parts, bottom = _arc(source, target, points, weight, MUTED)
            arcs += parts
            lowest = max(lowest, bottom)

    width = max(p.x for p in points.values()) + MARGIN + 40
    height = max(max(p.y for p in points.values()) + MARGIN + 20, lowest + 20)
    out: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" role="img" '
        f'aria-label="{_attr("Petri net " + (title or net.id))}" font-family="sans-serif">',
        f"<title>{escape(title or net.id)}</title>",
        f'<defs><marker id="{ARROW_ID}" viewBox="0 0 10 10" refX="10" refY="5" '
        'markerWidth="8" markerHeight="8" orient="auto">'
        f'<path d="M 0 0 L 10 5 L 0 10 z" fill="{INK}"/></marker></defs>',
    ]

    out.append('<g data-layer="arcs">')
    out += arcs
    out.append("</g>")

    out.append('<g data-layer="places">')
    for place in net.places:
        p = points[_Node("place", place)]
        tokens = shown.tokens(place)
        stroke, stroke_width = (HIGHLIGHT, 3) if place in marked else (INK, 1.5)
        out.append(f'<g data-place="{_attr(place)}" data-tokens="{tokens}">')
        out.append(f"<title>{escape(place)}: {tokens} token{'s' if tokens != 1 else ''}</title>")
        out.append(
            f'<circle cx="{p.x:.1f}" cy="{p.y:.1f}" r="{PLACE_RADIUS}" fill="#ffffff" '
            f'stroke="{stroke}" stroke-width="{stroke_width}"/>'
        )
        if tokens:
            out.append(
                f'<text x="{p.x:.1f}" y="{p.y + 5:.1f}" text-anchor="middle" font-size="15" '
                f'font-weight="bold" fill="{INK}">{tokens}</text>'
            )
        out.append(
            f'<text x="{p.x:.1f}" y="{p.y + PLACE_RADIUS + 16:.1f}" text-anchor="middle" '
            f'font-size="12" fill="{INK}">{escape(_label(place))}</text>'
        )
        out.append("</g>")
    out.append("</g>")

    out.append('<g data-layer="transitions">')
    for transition in net.transitions:
        p = points[_Node("transition", transition.id)]
        if transition.id in marked:
            fill = HIGHLIGHT
        else:
            fill = ENABLED if transition.id in live else INK
        state = "enabled" if transition.id in live else "disabled"
        out.append(f'<g data-transition="{_attr(transition.id)}" data-state="{state}">')
        out.append(f"<title>{escape(transition.name)} ({escape(transition.id)}), {state}</title>")
        out.append(
            f'<rect x="{p.x - BAR_WIDTH / 2:.1f}" y="{p.y - BAR_HEIGHT / 2:.1f}" '
            f'width="{BAR_WIDTH}" height="{BAR_HEIGHT}" fill="{fill}"/>'
        )
        out.append(
            f'<text x="{p.x:.1f}" y="{p.y - BAR_HEIGHT / 2 - 8:.1f}" text-anchor="middle" '
            f'font-size="12" fill="{INK}">{escape(_label(transition.name))}</text>'
        )
        out.append("</g>")
    out.append("</g>")
    out.append("</svg>")
    return "\n".join(out)
