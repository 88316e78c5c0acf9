"""What the workflow admin pages share: the operator as an actor, JSON shown and edited as
readable text, service refusals put on the form field they name, and 404 for objects the
tenant does not have."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin.utils import quote
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from config.errors import DomainError
from tenants.middleware import request_tenant
from workflow_bridge.definitions import Compiled
from workflow_bridge.net import Marking, NetError, to_svg


def actor(request: HttpRequest) -> str:
    return f"user:{request.user.get_username()}"


def schema(request: HttpRequest) -> str:
    return request_tenant(request).schema_name


class TenantObjectAdmin(admin.ModelAdmin):
    """An id the tenant has no object for answers 404, like the API: another tenant's objects
    live in another schema, so they are missing here, and Django's default (a redirect to the
    index with "Perhaps it was deleted?") would be the only admin page that does not say so."""

    def get_object(self, request: HttpRequest, object_id: str, from_field: Any = None) -> Any:
        obj = super().get_object(request, object_id, from_field)
        if obj is None:
            raise Http404(f"No {self.opts.verbose_name} with this id.")
        return obj


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


def json_block(value: Any) -> str:
    """JSON as an indented, escaped ``<pre>`` (tenant data: never marked safe as it is)."""
    return format_html('<pre class="cb-json">{}</pre>', pretty(value))


def marking_text(marking: Mapping[str, int]) -> str:
    """``draft`` for one token, ``a: 2, b: 1`` otherwise, ``(none)`` for no token."""
    counts = {place: count for place, count in sorted(marking.items()) if count}
    if len(counts) == 1 and next(iter(counts.values())) == 1:
        return next(iter(counts))
    return ", ".join(f"{place}: {count}" for place, count in counts.items()) or "(none)"


def execution_link(execution_id: str) -> str:
    if not execution_id:
        return "-"
    url = reverse("tenant_admin:agents_execution_change", args=[quote(execution_id)])
    return format_html('<a href="{}">{}</a>', url, execution_id)


def net_diagram(
    compiled: Compiled, marking: Mapping[str, int], *, highlight: Iterable[str] = (), note: str
) -> SafeString:
    """The net drawn inline with ``marking`` in its places, under a caption ``note``. Tokens in
    places the net no longer has are left out of the drawing and named in the caption."""
    net = compiled.net
    drawn = {place: count for place, count in marking.items() if net.has_place(place) and count}
    missing = sorted(place for place in marking if not net.has_place(place))
    shown = [name for name in highlight if net.has_place(name) or net.has_transition(name)]
    try:
        # to_svg escapes every id and name it writes (workflow_bridge/net/draw.py): this is
        # the one string these pages mark safe without a template's escaping.
        svg = mark_safe(to_svg(net, Marking.of(drawn), highlight=shown))  # noqa: S308
    except NetError as exc:
        svg, note = None, f"The net cannot be drawn: {exc}"
    return render_to_string(
        "admin/workflow_bridge/diagram.html",
        {"svg": svg, "note": note, "counts": sorted(drawn.items()), "missing": missing},
    )


class JSONText(forms.JSONField):
    """A JSON form field shown as indented text (Django's shows it on one line)."""

    def __init__(self, *, rows: int = 4, **kwargs: Any) -> None:
        kwargs.setdefault(
            "widget",
            forms.Textarea(attrs={"rows": rows, "cols": 80, "spellcheck": "false"}),
        )
        super().__init__(**kwargs)

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, forms.fields.InvalidJSONInput):
            return value
        return pretty(value)


def refusal(
    exc: DomainError, fields: Iterable[str], aliases: Mapping[str, str] | None = None
) -> ValidationError:
    """A service's refusal as a form error on the field it names (``place: ...`` → the field
    ``place``; ``aliases`` maps the services' names to the form's), else on the whole form."""
    name = exc.message.partition(":")[0].split("[")[0].split(".")[0].strip()
    name = (aliases or {}).get(name, name)
    if name in set(fields):
        return ValidationError({name: exc.message})
    return ValidationError(exc.message)
