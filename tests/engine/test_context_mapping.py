from __future__ import annotations

import copy

import pytest

from agents.engine import (
    ExecutionInput,
    InvalidInput,
    InvalidSchema,
    MappingError,
    apply_output_mapping,
    get_path,
    map_input,
    run_agent,
    set_path,
    validate_input,
)

from .fakes import make_agent, make_context, reply


def test_get_path_reads_any_depth_and_list_indexes() -> None:
    ctx = make_context(items=[{"name": "first"}, {"name": "second", "tags": ["a", "b"]}])
    assert get_path(ctx, "user_context.user_id") == "user123"
    assert get_path(ctx, "items.1.name") == "second"
    assert get_path(ctx, "items.1.tags.0") == "a"
    assert get_path(ctx, "tenant_id") == "tenant123"


@pytest.mark.parametrize(
    "path",
    ["missing", "user_context.missing", "items.9.name", "tenant_id.deeper", "items.x"],
)
def test_get_path_missing_is_none(path: str) -> None:
    assert get_path(make_context(items=[{"name": "only"}]), path) is None


def test_get_path_never_reads_attributes() -> None:
    # A path is dict/list traversal only: Python attributes are unreachable.
    assert get_path({"x": "text"}, "x.__class__") is None
    assert get_path({"x": {}}, "x.keys") is None


def test_set_path_creates_intermediates_without_mutating_the_caller() -> None:
    ctx = make_context()
    before = copy.deepcopy(ctx)
    updated = set_path(ctx, "custom_context.analysis.score.value", 0.9)
    assert ctx == before
    assert updated["custom_context"]["analysis"]["score"]["value"] == 0.9
    assert updated["custom_context"]["any_key"] == "any_value"
    # Nested objects are copies too.
    updated["user_context"]["user_id"] = "changed"
    assert ctx["user_context"]["user_id"] == "user123"


def test_set_path_replaces_scalars_and_addresses_list_items() -> None:
    updated = set_path({"a": 1, "items": [{"n": 1}]}, "a.b", 2)
    assert updated["a"] == {"b": 2}
    updated = set_path({"items": [{"n": 1}]}, "items.0.n", 5)
    assert updated["items"] == [{"n": 5}]
    updated = set_path({"items": []}, "items.0", "appended")
    assert updated["items"] == ["appended"]


@pytest.mark.parametrize("path", ["", "a..b", ".a"])
def test_malformed_paths_raise(path: str) -> None:
    with pytest.raises(ValueError):
        set_path({}, path, 1)


def test_map_input_from_context_parameters_and_message() -> None:
    mapped = map_input(
        make_context(),
        {"user": "user_context.user_id", "resource": "workflow_context.resource_id", "x": "nope"},
        ExecutionInput(message="hi", parameters={"resource": "explicit", "lang": "en"}),
    )
    # Explicit parameters win over mapped context values; missing paths are null.
    assert mapped == {
        "user": "user123",
        "resource": "explicit",
        "x": None,
        "lang": "en",
        "message": "hi",
    }


def test_validate_input_names_the_failing_field() -> None:
    schema = {
        "type": "object",
        "properties": {"user": {"type": "string"}, "count": {"type": "integer"}},
        "required": ["user", "count"],
    }
    validate_input({"user": "u", "count": 1}, schema)
    with pytest.raises(InvalidInput, match="count"):
        validate_input({"user": "u"}, schema)
    with pytest.raises(InvalidInput, match=r"count: 'three' is not of type 'integer'"):
        validate_input({"user": "u", "count": "three"}, schema)
    with pytest.raises(InvalidSchema):
        validate_input({}, {"type": "no-such-type"})


def test_output_mapping_whole_output_and_json_fields() -> None:
    ctx = make_context()
    output = {"summary": "short", "scores": [{"v": 3}]}
    updated = apply_output_mapping(
        ctx,
        {
            "custom_context.result": "output",
            "custom_context.all": "",
            "custom_context.summary": "summary",
            "custom_context.first": "output.scores.0.v",
            "custom_context.none": "missing",
        },
        output,
    )
    assert updated["custom_context"]["result"] == output
    assert updated["custom_context"]["all"] == output
    assert updated["custom_context"]["summary"] == "short"
    assert updated["custom_context"]["first"] == 3
    assert updated["custom_context"]["none"] is None
    assert "result" not in ctx["custom_context"]


def test_output_mapping_on_text_output() -> None:
    updated = apply_output_mapping({}, {"a.text": "output", "a.field": "field"}, "plain text")
    assert updated == {"a": {"text": "plain text", "field": None}}


@pytest.mark.parametrize("dest", ["tenant_id", "execution_id.x"])
def test_output_mapping_may_not_rewrite_identity(dest: str) -> None:
    with pytest.raises(MappingError, match="protected"):
        apply_output_mapping(make_context(), {dest: "output"}, "evil")


async def test_invalid_input_fails_before_any_model_call(factory, events, breakers) -> None:
    provider = factory.add(make_agent().provider, reply())
    agent = make_agent(
        input_mapping={"user": "user_context.missing"},
        input_schema={
            "type": "object",
            "properties": {"user": {"type": "string"}},
            "required": ["user"],
        },
    )
    result = await run_agent(
        agent=agent,
        context=make_context(),
        input=ExecutionInput(),
        emit=events,
        provider_factory=factory,
        breakers=breakers,
    )
    assert result.status == "failed"
    assert result.error_code == "invalid_input"
    assert "user" in (result.error_message or "")
    assert result.mapped_input == {"user": None}
    assert provider.requests == []
    assert events.types() == ["execution.started", "usage", "error"]


async def test_run_applies_output_mapping_to_a_copy(factory, breakers) -> None:
    factory.add(make_agent().provider, reply("the answer"))
    ctx = make_context()
    result = await run_agent(
        agent=make_agent(output_mapping={"custom_context.answer": "output"}),
        context=ctx,
        input=ExecutionInput(message="question"),
        provider_factory=factory,
        breakers=breakers,
    )
    assert result.status == "completed"
    assert result.context["custom_context"]["answer"] == "the answer"
    assert "answer" not in ctx["custom_context"]


async def test_call_config_overrides_mappings(factory, breakers) -> None:
    from agents.engine import CallConfig

    provider = factory.add(make_agent().provider, reply("ok"))
    result = await run_agent(
        agent=make_agent(
            user_template="User {who}",
            input_mapping={"who": "user_context.session_id"},
            output_mapping={"custom_context.agent_default": "output"},
        ),
        context=make_context(),
        input=ExecutionInput(),
        config=CallConfig(
            input_mapping={"who": "user_context.user_id"},
            output_mapping={"custom_context.override": "output"},
            temperature=0.1,
        ),
        provider_factory=factory,
        breakers=breakers,
    )
    assert provider.requests[0].messages[-1].content == "User user123"
    assert provider.requests[0].temperature == 0.1
    assert result.context["custom_context"]["override"] == "ok"
    assert "agent_default" not in result.context["custom_context"]
