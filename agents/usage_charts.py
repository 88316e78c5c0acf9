"""Usage charts of the admin pages, drawn on the server as inline SVG.

No script, no stylesheet, no external reference: the pages work offline and under a strict
Content-Security-Policy. Plain functions of a ``UsageReport`` (no query here). Every text put
into a chart goes through ``escape``, which is why the result may be marked safe; the figures
are written out in tables beside the charts as well (a drawing is not readable by everyone).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from agents.models import ExecutionStatus
from agents.usage import TenantUsage, UsageReport

Number = int | float | Decimal

WIDTH = 760
FONT = 'font-family="sans-serif" font-size="11"'
TEXT = "#333"
GRID = "#ddd"
STATUS_COLORS: dict[str, str] = {
    ExecutionStatus.COMPLETED: "#2e7d32",
    ExecutionStatus.FAILED: "#c62828",
    ExecutionStatus.TIMEOUT: "#ef6c00",
    ExecutionStatus.CANCELLED: "#757575",
    ExecutionStatus.RUNNING: "#1565c0",
    ExecutionStatus.QUEUED: "#64b5f6",
    ExecutionStatus.PENDING: "#b0bec5",
}
COST_COLOR = "#8e24aa"
INPUT_COLOR = "#5c6bc0"
OUTPUT_COLOR = "#26a69a"


@dataclass(frozen=True, slots=True)
class Series:
    """One stacked layer: a value per label."""

    name: str
    color: str
    values: Sequence[Number]


def count_text(value: Number) -> str:
    return f"{int(value):,}"


def cost_text(value: Number) -> str:
    return format(Decimal(value).normalize(), "f")


def _attr(value: str) -> str:
    return str(escape(value))


def _ticks(maximum: float, *, whole: bool) -> tuple[list[float], int]:
    """Four or five round steps from 0 to at least ``maximum``, and the decimals they need."""
    if maximum <= 0:
        return [0.0, 1.0], 0
    raw = maximum / 4
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    if whole:
        step = max(step, 1)
    decimals = 0 if whole else max(0, -math.floor(math.log10(step)))
    count = math.ceil(maximum / step - 1e-9)
    return [step * n for n in range(count + 1)], decimals


def _svg(height: float, title: str, body: list[str]) -> SafeString:
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height:.0f}" '
        f'viewBox="0 0 {WIDTH} {height:.0f}" role="img" aria-label="{_attr(title)}" {FONT}>',
        f"<title>{escape(title)}</title>",
        *body,
        "</svg>",
    ]
    # Safe: every text above went through escape(); the rest are numbers and fixed markup.
    return mark_safe("".join(parts))  # noqa: S308


def _legend(series: Sequence[Series], x: float, y: float) -> list[str]:
    out: list[str] = []
    for layer in series:
        out.append(
            f'<rect x="{x:.1f}" y="{y - 9:.1f}" width="10" height="10" fill="{layer.color}"/>'
        )
        out.append(f'<text x="{x + 14:.1f}" y="{y:.1f}" fill="{TEXT}">{escape(layer.name)}</text>')
        x += 24 + 7 * len(layer.name)
    return out


def _empty(title: str, note: str) -> SafeString:
    return _svg(
        60,
        title,
        [
            f'<text x="{WIDTH / 2:.0f}" y="34" text-anchor="middle" fill="{TEXT}">'
            f"{escape(note)}</text>"
        ],
    )


def stacked_columns(
    *,
    title: str,
    labels: Sequence[str],
    series: Sequence[Series],
    value_text: Callable[[Number], str] = count_text,
    whole: bool = True,
    empty_note: str = "Nothing in this period.",
    axis_labels: Sequence[str] | None = None,
) -> SafeString:
    """One column per label (days, left to right), its series stacked bottom up. Under the
    axis: ``axis_labels`` (shorter ones, default the labels), as many as fit without
    overlapping; the full label is in each column's tooltip."""
    totals = [sum(float(layer.values[i]) for layer in series) for i in range(len(labels))]
    if not labels or not any(totals):
        return _empty(title, empty_note)
    height, left, right, top, bottom = 260, 64, 12, 30, 44
    plot_w, plot_h = WIDTH - left - right, height - top - bottom
    ticks, decimals = _ticks(max(totals), whole=whole)
    scale = plot_h / ticks[-1]
    base = top + plot_h
    out: list[str] = []
    for tick in ticks:
        y = base - tick * scale
        out.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{WIDTH - right}" y2="{y:.1f}" stroke="{GRID}"/>'
        )
        out.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" fill="{TEXT}">'
            f"{tick:,.{decimals}f}</text>"
        )
    slot = plot_w / len(labels)
    width = max(slot * 0.7, 1.0)
    under = list(axis_labels or labels)
    label_px = 6.5 * max(len(text) for text in under) + 10
    every = max(1, math.ceil(label_px / slot))
    for i, label in enumerate(labels):
        x = left + i * slot + (slot - width) / 2
        y = base
        for layer in series:
            value = layer.values[i]
            if not value:
                continue
            h = float(value) * scale
            y -= h
            out.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" height="{h:.1f}" '
                f'fill="{layer.color}"><title>{escape(label)} {escape(layer.name)}: '
                f"{escape(value_text(value))}</title></rect>"
            )
        centre = x + width / 2
        if i % every == 0 and centre + label_px / 2 <= WIDTH:
            out.append(
                f'<text x="{centre:.1f}" y="{base + 16}" text-anchor="middle" '
                f'fill="{TEXT}">{escape(under[i])}</text>'
            )
    out.append(f'<line x1="{left}" y1="{base}" x2="{WIDTH - right}" y2="{base}" stroke="{TEXT}"/>')
    out += _legend(series, left, 16)
    return _svg(height, title, out)


def stacked_bars(
    *,
    title: str,
    labels: Sequence[str],
    series: Sequence[Series],
    value_text: Callable[[Number], str] = count_text,
    empty_note: str = "Nothing in this period.",
) -> SafeString:
    """One horizontal bar per label (top to bottom), its series stacked left to right, with
    the bar's total written at its end."""
    totals = [sum(float(layer.values[i]) for layer in series) for i in range(len(labels))]
    if not labels or not any(totals):
        return _empty(title, empty_note)
    row, left, right, top = 22, 170, 90, 30
    height = top + row * len(labels) + 12
    plot_w = WIDTH - left - right
    scale = plot_w / max(totals)
    out: list[str] = []
    for i, label in enumerate(labels):
        y = top + i * row
        shown = label if len(label) <= 26 else label[:25] + "…"
        out.append(
            f'<text x="{left - 6}" y="{y + 14}" text-anchor="end" fill="{TEXT}">'
            f"<title>{escape(label)}</title>{escape(shown)}</text>"
        )
        x = float(left)
        for layer in series:
            value = layer.values[i]
            if not value:
                continue
            w = float(value) * scale
            out.append(
                f'<rect x="{x:.1f}" y="{y + 3}" width="{w:.1f}" height="{row - 6}" '
                f'fill="{layer.color}"><title>{escape(label)} {escape(layer.name)}: '
                f"{escape(value_text(value))}</title></rect>"
            )
            x += w
        out.append(
            f'<text x="{x + 6:.1f}" y="{y + 14}" fill="{TEXT}">'
            f"{escape(value_text(sum(layer.values[i] for layer in series)))}</text>"
        )
    out += _legend(series, left, 16)
    return _svg(height, title, out)


# ---- the charts of the tenant usage page ----


def _day_labels(days: Sequence[dt.date]) -> list[str]:
    return [day.isoformat() for day in days]


def _day_axis(days: Sequence[dt.date]) -> list[str]:
    """Month and day under the axis, with the year too when the period spans years."""
    years = {day.year for day in days}
    return [day.isoformat() if len(years) > 1 else day.strftime("%m-%d") for day in days]


def executions_per_day_chart(report: UsageReport, days: Sequence[dt.date]) -> SafeString:
    """Executions per day stacked by status, from a report grouped by day and status."""
    counts: dict[tuple[dt.date | None, str | None], int] = {
        (row.day, row.status): row.figures.executions for row in report.rows
    }
    present = {row.status for row in report.rows}
    series = [
        Series(str(status), STATUS_COLORS[status], [counts.get((day, status), 0) for day in days])
        for status in ExecutionStatus.values
        if status in present
    ]
    return stacked_columns(
        title="Executions per day, by status",
        labels=_day_labels(days),
        axis_labels=_day_axis(days),
        series=series,
        empty_note="No executions in this period.",
    )


def cost_per_day_chart(report: UsageReport, days: Sequence[dt.date]) -> SafeString:
    """Cost per day, from a report grouped by day (and possibly more: summed per day)."""
    cost: dict[dt.date | None, Decimal] = {}
    for row in report.rows:
        cost[row.day] = cost.get(row.day, Decimal("0")) + row.figures.cost
    return stacked_columns(
        title="Cost per day",
        labels=_day_labels(days),
        axis_labels=_day_axis(days),
        series=[Series("cost", COST_COLOR, [cost.get(day, Decimal("0")) for day in days])],
        value_text=cost_text,
        whole=False,
        empty_note="No cost in this period.",
    )


def tokens_by_model_chart(report: UsageReport) -> SafeString:
    """Input and output tokens per model, most tokens first, from a report grouped by model."""
    rows = sorted(report.rows, key=lambda r: (-r.figures.total_tokens, r.model or ""))
    return stacked_bars(
        title="Tokens by model",
        labels=[row.model or "" for row in rows],
        series=[
            Series("input", INPUT_COLOR, [row.figures.input_tokens for row in rows]),
            Series("output", OUTPUT_COLOR, [row.figures.output_tokens for row in rows]),
        ],
        empty_note="No tokens in this period.",
    )


# ---- the chart of the platform usage page ----


def tenants_chart(tenants: Sequence[TenantUsage]) -> SafeString:
    """Cost per tenant, the most costly first."""
    ranked = sorted(tenants, key=lambda t: (-t.totals.cost, t.slug))
    return stacked_bars(
        title="Cost by tenant",
        labels=[tenant.slug for tenant in ranked],
        series=[Series("cost", COST_COLOR, [tenant.totals.cost for tenant in ranked])],
        value_text=cost_text,
        empty_note="No cost in this period.",
    )
