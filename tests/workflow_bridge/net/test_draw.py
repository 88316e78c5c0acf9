"""The SVG drawing: well-formed, complete, self-contained, and safe with tenant names."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from tests.workflow_bridge.net.nets import mutual_wait, sound_workflow, t
from workflow_bridge.net import Marking, Net, NetError, fire, state_machine, to_svg

SVG = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)  # our own output, parsed to check it
    assert root.tag == f"{SVG}svg"
    return root


def groups(root: ET.Element, attribute: str) -> dict[str, ET.Element]:
    return {g.attrib[attribute]: g for g in root.iter(f"{SVG}g") if attribute in g.attrib}


def test_every_place_and_transition_is_drawn_with_its_tokens() -> None:
    net = sound_workflow()
    marking = fire(net, net.initial_marking, "fork")
    root = parse(to_svg(net, marking))
    places = groups(root, "data-place")
    transitions = groups(root, "data-transition")
    assert set(places) == set(net.places)
    assert set(transitions) == {tr.id for tr in net.transitions}
    assert {p: int(g.attrib["data-tokens"]) for p, g in places.items()} == {
        "start": 0,
        "p1": 1,
        "p2": 1,
        "q1": 0,
        "q2": 0,
        "end": 0,
    }
    # The count is written inside the circle, and enabled transitions are marked as such.
    assert [e.text for e in places["p1"].iter(f"{SVG}text")] == ["1", "p1"]
    assert {tid: g.attrib["data-state"] for tid, g in transitions.items()} == {
        "fork": "disabled",
        "a": "enabled",
        "b": "enabled",
        "join": "disabled",
    }


def test_the_initial_marking_is_shown_by_default_and_large_counts_are_written() -> None:
    net = Net.build("heap", ["pile", "done"], [t("take", {"pile": 5}, {"done": 2})], {"pile": 12})
    svg = to_svg(net)
    places = groups(parse(svg), "data-place")
    assert places["pile"].attrib["data-tokens"] == "12"
    assert ">12</text>" in svg
    weights = sorted(
        e.attrib["data-weight"] for e in parse(svg).iter(f"{SVG}text") if "data-weight" in e.attrib
    )
    assert weights == ["2", "5"]


def test_weights_of_one_are_not_labelled() -> None:
    root = parse(to_svg(sound_workflow()))
    assert not [e for e in root.iter(f"{SVG}text") if "data-weight" in e.attrib]
    assert len(list(root.iter(f"{SVG}line"))) == 10  # all ten arcs of this net go forward


def test_loops_are_drawn_as_curves() -> None:
    net = state_machine(
        ["draft", "review"],
        [
            ("submit", "Submit", ("draft",), "review", ()),
            ("back", "Send back", ("review",), "draft", ()),
        ],
        "draft",
    )
    root = parse(to_svg(net))
    assert len(list(root.iter(f"{SVG}path"))) == 2  # the arrowhead and the loop back


def test_tenant_names_are_escaped() -> None:
    evil = '<script>alert(1)</script>"><img src=x onerror=alert(2)>&amp;'
    net = Net.build("xss", ["a", "b"], [t("go", {"a": 1}, {"b": 1}, name=evil)], {"a": 1})
    svg = to_svg(net)
    assert "<script" not in svg
    assert "<img" not in svg
    root = parse(svg)
    assert not list(root.iter(f"{SVG}script"))
    go = groups(root, "data-transition")["go"]
    texts = [e.text for e in go.iter(f"{SVG}text")]
    title = go.find(f"{SVG}title")
    assert title is not None
    # The name survives as text, exactly, inside the tooltip; the label is shortened.
    assert title.text == f"{evil} (go), enabled"
    assert texts and texts[0] is not None and texts[0].startswith("<script>alert(1)")


def test_the_drawing_is_self_contained() -> None:
    svg = to_svg(mutual_wait())
    lowered = svg.lower()
    for forbidden in (
        "<script",
        "<style",
        "<image",
        "<foreignobject",
        "href",
        "javascript:",
        "onload",
    ):
        assert forbidden not in lowered
    assert lowered.count("http") == 1  # the SVG namespace, nothing to fetch


def test_the_same_net_gives_the_same_bytes() -> None:
    assert to_svg(sound_workflow()) == to_svg(sound_workflow())


def test_highlight_marks_the_named_nodes() -> None:
    root = parse(to_svg(sound_workflow(), highlight=("fork", "end")))
    fork = groups(root, "data-transition")["fork"].find(f"{SVG}rect")
    end = groups(root, "data-place")["end"].find(f"{SVG}circle")
    assert fork is not None and fork.attrib["fill"] == "#d97706"
    assert end is not None and end.attrib["stroke"] == "#d97706"


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(NetError, match="cannot highlight 'ship'"):
        to_svg(sound_workflow(), highlight=("ship",))
    with pytest.raises(NetError, match="'elsewhere'"):
        to_svg(sound_workflow(), Marking.of({"elsewhere": 1}))


def test_columns_follow_the_flow_from_the_marked_places() -> None:
    root = parse(to_svg(sound_workflow()))
    x = {}
    for attribute in ("data-place", "data-transition"):
        for name, g in groups(root, attribute).items():
            shape = g.find(f"{SVG}circle")
            if shape is not None:
                x[name] = float(shape.attrib["cx"])
            else:
                rect = g.find(f"{SVG}rect")
                assert rect is not None
                x[name] = float(rect.attrib["x"]) + float(rect.attrib["width"]) / 2
    assert (
        x["start"]
        < x["fork"]
        < x["p1"]
        == x["p2"]
        < x["a"]
        == x["b"]
        < x["q1"]
        < x["join"]
        < x["end"]
    )
