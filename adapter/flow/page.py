"""The flow figures as one self-contained HTML page for a clinic manager (``flow --format html``).

One file that opens anywhere: a hospital network often has no internet and forbids scripts in
mail attachments, so nothing is fetched (no CDN, no font, no image by URL) and nothing needs a
script. The charts are inline SVG drawn here from the figures, with the page's style inline too.

Charts first, because a manager looks rather than reads: the waiting-time distribution of each
organisation against the care guarantee (patient-chosen waiting apart, as the national database
reports it), the weekly share of reviews decided within their deadline, and how many
organisations held each referral. Then every figure as a table, and above everything a banner that
cannot be missed when a referral has nobody responsible (business identifiers only: the page may
be printed or mailed; it never carries a name or personnummer, and the figures hold none).

Each chart is an ``img`` with its own title and description, and the numbers it draws are also in
the page as text (labels on the bars and a small table under each chart), for a screen reader and
for whoever copies them. Every text from the figures or the mappings is escaped. The words are
Swedish data in ``mappings/flow-page.yaml``; a region may reword them without touching this.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from html import escape
from typing import Any

from adapter.mappings import load
from adapter.workflow.calendar import STOCKHOLM

BUCKETS = ("waiting_0_30", "waiting_31_60", "waiting_61_90", "waiting_over_90")
BUCKET_DAYS = 30  # each bucket is 30 days wide on the chart's day axis; the last is open (> 90)
PATIENT_CHOSEN = "waiting_patient_chosen"
TABLE_ROWS = (
    "reviews_decided",
    "reviews_within_deadline",
    "review_median_working_days",
    "reviews_overdue_now",
    "waiting_now",
    *BUCKETS,
    PATIENT_CHOSEN,
    "first_visits",
    "first_visit_median_days",
    "first_visit_p90_days",
    "first_visit_max_days",
    "first_visits_within_guarantee",
    "on_hold",
    "re_referrals_after_rejection",
    "nobody_responsible",
)

# Chart geometry (SVG user units). Bars share one scale per chart kind across organisations, so
# two clinics' charts compare at a glance; the region has its own, being their sum.
PLOT_H = 140.0
TOP, BOTTOM, LEFT = 22.0, 34.0, 8.0
BAR_W = 56.0
WEEK_W = 34.0
ROW_H, OWNERS_LABEL_W, OWNERS_BAR_W = 24.0, 118.0, 200.0

STYLE = """
:root { color-scheme: light; }
body { font-family: system-ui, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; margin: 0 auto;
       max-width: 78rem; padding: 1rem 1.5rem 3rem; color: #1b1b1b; background: #fff; line-height: 1.4; }
h1 { font-size: 1.6rem; margin: .5rem 0 .2rem; }
h2 { font-size: 1.25rem; margin: 2rem 0 .3rem; border-bottom: 2px solid #d0d5dd; padding-bottom: .2rem; }
.sub, .intro { color: #4a4f57; margin: .2rem 0 1rem; max-width: 60rem; }
.banner { margin: 1rem 0; padding: 1rem 1.2rem; border-radius: 6px; }
.banner.alarm { background: #c00000; color: #fff; border: 4px solid #7a0000; font-size: 1.15rem; }
.banner.alarm strong { font-size: 1.5rem; display: block; margin-bottom: .3rem; }
.banner.alarm ul { margin: .5rem 0 0; padding-left: 1.2rem; columns: 3 14rem; }
.banner.ok { background: #e7f4ea; color: #14532d; border: 1px solid #9cd3a9; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(22rem, 1fr)); gap: 1rem 1.5rem; }
figure { margin: 0; padding: .6rem; border: 1px solid #e3e6ea; border-radius: 6px; }
figcaption { font-weight: 600; margin-bottom: .3rem; }
svg { display: block; max-width: 100%; height: auto; }
svg text { font-family: inherit; font-size: 11px; fill: #1b1b1b; }
svg .value { font-weight: 600; }
.bar { fill: #2f6db5; }
.bar.beyond { fill: #c00000; }
.bar.chosen { fill: #8a8f98; }
.bar.moved { fill: #d97706; }
.guarantee { stroke: #c00000; stroke-width: 2; stroke-dasharray: 5 3; }
.guarantee-label { fill: #c00000; font-weight: 600; }
.full { stroke: #8a8f98; stroke-dasharray: 2 3; }
.axis { stroke: #4a4f57; }
table { border-collapse: collapse; margin: .4rem 0; font-size: .9rem; }
th, td { border: 1px solid #d0d5dd; padding: .25rem .5rem; text-align: right; vertical-align: top; }
th[scope=row], thead th { text-align: left; background: #f3f5f7; }
table.numbers { font-size: .8rem; }
.none { color: #4a4f57; }
@media print { .banner.alarm { border-width: 6px; } figure { break-inside: avoid; } }
"""


def render(figures: Mapping[str, Any]) -> str:
    """The page for one ``figures.compute`` result (the flow contract's dict)."""
    words = load("flow-page")
    organisations: list[Mapping[str, Any]] = list(figures.get("organisations") or [])
    region: Mapping[str, Any] = figures.get("region") or {}
    units = [region, *organisations] if region else organisations  # the region first: the whole picture
    guarantee = int(figures.get("guarantee_days") or 90)
    subtitle = words["subtitle"].format(
        at=_moment(figures.get("at")), start=figures.get("from") or "", end=figures.get("to") or "", days=guarantee
    )
    parts = [
        "<!DOCTYPE html>",
        f'<html lang="{_e(words["lang"])}">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        # No request may leave the page, whatever a text in it says: the browser enforces it.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">",
        f"<title>{_e(words['title'])}</title>",
        f"<style>{STYLE}</style>",
        "</head>",
        "<body>",
        f"<h1>{_e(words['title'])}</h1>",
        f'<p class="sub">{_e(subtitle)}</p>',
        _banner(words, list(figures.get("nobody_responsible") or [])),
        _section(
            "waiting",
            words["waiting"],
            [
                _waiting_chart(words, unit, n, guarantee, _scale(organisations, unit, BUCKETS))
                for n, unit in _numbered(units)
            ],
        ),
        _section("reviews", words["reviews"], _review_charts(words, units, list(figures.get("weekly_reviews") or []))),
        _section(
            "owners",
            words["owners"],
            [_owners_chart(words, unit, n, _owners_scale(organisations, unit)) for n, unit in _numbered(units)],
        ),
        _table(words, units),
        "</body>",
        "</html>",
    ]
    return "\n".join(parts) + "\n"


# ------------------------------------------------------------------ pieces


def _banner(words: Mapping[str, Any], nobody: Sequence[Any]) -> str:
    if not nobody:
        return f'<div class="banner ok" id="responsibility">{_e(words["banner"]["everyone"])}</div>'
    items = "".join(f"<li>{_e(identifier)}</li>" for identifier in nobody)
    return (
        '<div class="banner alarm" id="responsibility" role="alert">'
        f"<strong>{_e(words['banner']['nobody'].format(n=len(nobody)))}</strong>"
        f"{_e(words['banner']['nobody_help'])}<ul>{items}</ul></div>"
    )


def _section(key: str, words: Mapping[str, Any], charts: Iterable[str]) -> str:
    return (
        f'<section id="{key}"><h2>{_e(words["title"])}</h2><p class="intro">{_e(words["intro"])}</p>'
        f'<div class="charts">{"".join(charts)}</div></section>'
    )


def _figure(
    kind: str, n: int, unit: Mapping[str, Any], title: str, desc: str, width: float, height: float, body: str, data: str
) -> str:
    """One chart: an SVG image named by its title and description, and its numbers as a table."""
    ident = f"{kind}-{n}"
    return (
        f'<figure class="chart {kind}" data-organization="{_e(unit.get("organization") or "")}">'
        f'<figcaption id="{ident}-caption">{_e(_name(unit))}</figcaption>'
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-labelledby="{ident}-title {ident}-desc" '
        f'width="{_n(width)}" height="{_n(height)}" viewBox="0 0 {_n(width)} {_n(height)}">'
        f'<title id="{ident}-title">{_e(title)}</title><desc id="{ident}-desc">{_e(desc)}</desc>'
        f"{body}</svg>{data}</figure>"
    )


def _waiting_chart(words: Mapping[str, Any], unit: Mapping[str, Any], n: int, guarantee: int, top: float) -> str:
    """Four bars on a day axis (0-30, 31-60, 61-90, over 90), the guarantee as a line at its day,
    bars wholly past it in red; patient-chosen waiting as a grey bar set apart, off the axis."""
    w = words["waiting"]
    labels: Mapping[str, str] = w["buckets"]
    gap = 14.0
    axis_end = LEFT + BAR_W * len(BUCKETS)
    width = axis_end + gap + BAR_W + LEFT
    height = TOP + PLOT_H + BOTTOM
    base = TOP + PLOT_H
    body = [f'<line class="axis" x1="{_n(LEFT)}" y1="{_n(base)}" x2="{_n(axis_end)}" y2="{_n(base)}"/>']
    for i, key in enumerate([*BUCKETS, PATIENT_CHOSEN]):
        x = LEFT + BAR_W * i + (gap if key == PATIENT_CHOSEN else 0.0)
        lower = i * BUCKET_DAYS + 1  # the first day a referral in the bucket has waited (0-30 from day 0)
        css = "chosen" if key == PATIENT_CHOSEN else ("beyond" if i and lower > guarantee else "")
        body.append(_bar(key, _int(unit.get(key)), x + 6, BAR_W - 12, top, css, labels[key]))
    gx = LEFT + BAR_W * min(guarantee, BUCKET_DAYS * len(BUCKETS)) / BUCKET_DAYS
    body.append(f'<line class="guarantee" x1="{_n(gx)}" y1="{_n(TOP - 8)}" x2="{_n(gx)}" y2="{_n(base + 4)}"/>')
    anchor = "end" if gx > axis_end / 2 else "start"
    label = w["guarantee"].format(n=guarantee)
    body.append(
        f'<text class="guarantee-label" x="{_n(gx + (-3 if anchor == "end" else 3))}" y="{_n(TOP - 10)}" '
        f'text-anchor="{anchor}">{_e(label)}</text>'
    )
    pairs = [(labels[key], _int(unit.get(key))) for key in [*BUCKETS, PATIENT_CHOSEN]]
    beyond = sum(_int(unit.get(k)) for i, k in enumerate(BUCKETS) if i and i * BUCKET_DAYS + 1 > guarantee)
    desc = "; ".join(f"{label}: {value}" for label, value in pairs) + f"; {label}; {w['beyond']}: {beyond}"
    return _figure(
        "waiting",
        n,
        unit,
        w["chart"].format(name=_name(unit)),
        desc,
        width,
        height,
        "".join(body),
        _numbers([label for label, _ in pairs], [[str(v) for _, v in pairs]]),
    )


def _review_charts(words: Mapping[str, Any], units: Sequence[Mapping[str, Any]], weekly: Sequence[Any]) -> list[str]:
    """Per organisation (and the region, summed), one bar per week: the share decided within the
    deadline, 0-100 %, with ``within/decided`` under it; every chart has the same weeks."""
    w = words["reviews"]
    weeks = sorted({str(row.get("week")) for row in weekly if isinstance(row, Mapping)})
    per: dict[str | None, dict[str, tuple[int, int]]] = {}
    for row in weekly:
        if not isinstance(row, Mapping):
            continue
        for owner in (row.get("organization"), None):  # None: the region's sum
            done, within = per.setdefault(owner, {}).get(str(row.get("week")), (0, 0))
            per[owner][str(row.get("week"))] = (
                done + _int(row.get("decided")),
                within + _int(row.get("within_deadline")),
            )
    charts = []
    for n, unit in _numbered(units):
        owner = unit.get("organization") if unit.get("kind") != "region" else None
        counts = per.get(owner, {})
        charts.append(_week_chart(w, unit, n, weeks, counts))
    return charts


def _week_chart(
    w: Mapping[str, Any], unit: Mapping[str, Any], n: int, weeks: Sequence[str], counts: Mapping[str, tuple[int, int]]
) -> str:
    height = TOP + PLOT_H + BOTTOM + 12
    base = TOP + PLOT_H
    width = max(LEFT * 2 + WEEK_W * len(weeks), 180.0)
    body = [
        f'<line class="full" x1="{_n(LEFT)}" y1="{_n(TOP)}" x2="{_n(width - LEFT)}" y2="{_n(TOP)}"/>',
        f'<text x="{_n(width - LEFT)}" y="{_n(TOP - 4)}" text-anchor="end">100 %</text>',
        f'<line class="axis" x1="{_n(LEFT)}" y1="{_n(base)}" x2="{_n(width - LEFT)}" y2="{_n(base)}"/>',
    ]
    cells: list[str] = []
    described: list[str] = []
    for i, week in enumerate(weeks):
        decided, within = counts.get(week, (0, 0))
        x = LEFT + WEEK_W * i
        share = within / decided if decided else None
        short = week.rpartition("-")[2] or week
        if share is not None:
            h = PLOT_H * share
            css = "bar" if share >= 1 else "bar moved"
            body.append(
                f'<rect class="{css}" data-key="{_e(week)}" data-value="{_n(share * 100)}" '
                f'x="{_n(x + 4)}" y="{_n(base - h)}" width="{_n(WEEK_W - 8)}" height="{_n(h)}">'
                f"<title>{_e(week)}: {within}/{decided}</title></rect>"
                f'<text class="value" x="{_n(x + WEEK_W / 2)}" y="{_n(base - h - 3)}" text-anchor="middle">'
                f"{_n(round(share * 100))}%</text>"
            )
        body.append(
            f'<text x="{_n(x + WEEK_W / 2)}" y="{_n(base + 13)}" text-anchor="middle">{_e(short)}</text>'
            f'<text x="{_n(x + WEEK_W / 2)}" y="{_n(base + 26)}" text-anchor="middle">'
            f"{f'{within}/{decided}' if decided else '–'}</text>"
        )
        cells.append(f"{within}/{decided}" if decided else "–")
        described.append(f"{week}: {within}/{decided}" if decided else f"{week}: –")
    if not weeks:
        body.append(f'<text x="{_n(LEFT)}" y="{_n(TOP + 20)}">{_e(w["nothing"])}</text>')
    table = _numbers([w["week"], *weeks], [[w["counts"], *cells]]) if weeks else ""
    return _figure(
        "reviews",
        n,
        unit,
        w["chart"].format(name=_name(unit)),
        "; ".join(described) or w["nothing"],
        width,
        height,
        "".join(body),
        table,
    )


def _owners_chart(words: Mapping[str, Any], unit: Mapping[str, Any], n: int, top: float) -> str:
    """One horizontal bar per number of organisations that held a referral; more than one (the
    patient was sent on) in amber."""
    w = words["owners"]
    distribution = _distribution(unit)
    height = max(len(distribution), 1) * ROW_H + 12
    width = OWNERS_LABEL_W + OWNERS_BAR_W + 40
    body = []
    labels, values = [], []
    for i, (count, referrals) in enumerate(distribution):
        label = (w["row"] if count == "1" else w["rows"]).format(n=count)
        y = 6 + i * ROW_H
        length = OWNERS_BAR_W * referrals / top if top else 0.0
        body.append(
            f'<text x="{_n(OWNERS_LABEL_W - 6)}" y="{_n(y + ROW_H / 2 + 4)}" text-anchor="end">{_e(label)}</text>'
            f'<rect class="bar{"" if count == "1" else " moved"}" data-key="{_e(count)}" data-value="{referrals}" '
            f'x="{_n(OWNERS_LABEL_W)}" y="{_n(y + 3)}" width="{_n(length)}" height="{_n(ROW_H - 6)}">'
            f"<title>{_e(label)}: {referrals}</title></rect>"
            f'<text class="value" x="{_n(OWNERS_LABEL_W + length + 4)}" y="{_n(y + ROW_H / 2 + 4)}">{referrals}</text>'
        )
        labels.append(label)
        values.append(str(referrals))
    if not distribution:
        body.append(f'<text x="{_n(LEFT)}" y="{_n(20)}">{_e(w["nothing"])}</text>')
    desc = "; ".join(f"{label}: {value}" for label, value in zip(labels, values, strict=True)) or w["nothing"]
    table = _numbers(labels, [values]) if distribution else ""
    return _figure("owners", n, unit, w["chart"].format(name=_name(unit)), desc, width, height, "".join(body), table)


def _table(words: Mapping[str, Any], units: Sequence[Mapping[str, Any]]) -> str:
    """Every figure, one row each, the organisations as columns (few columns, many rows: readable)."""
    t = words["table"]
    head = "".join(
        f'<th scope="col" data-organization="{_e(u.get("organization") or "")}">{_e(_name(u))}'
        f"<br><small>{_e(u.get('organization') or words['kinds'].get(u.get('kind'), ''))}</small></th>"
        for u in units
    )
    rows = []
    reasons = sorted({r for u in units for r in (u.get("on_hold_median_days") or {})})
    for key in TABLE_ROWS:
        if key == "on_hold":
            for reason in reasons:
                label = t["rows"]["on_hold"].format(reason=t["hold_reasons"].get(reason, reason))
                cells = [_cell((u.get("on_hold_median_days") or {}).get(reason), words) for u in units]
                rows.append(_row(f"on_hold_median_days.{reason}", label, cells))
            continue
        if key == "nobody_responsible":
            cells = [_cell(len(u.get(key) or []), words) for u in units]
        else:
            cells = [_cell(u.get(key), words) for u in units]
        rows.append(_row(key, t["rows"][key], cells))
    return (
        f'<section id="figures"><h2>{_e(t["title"])}</h2><table class="figures">'
        f'<thead><tr><th scope="col">{_e(t["figure"])}</th>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></section>"
    )


# ------------------------------------------------------------------ helpers


def _row(key: str, label: str, cells: Sequence[str]) -> str:
    return f'<tr data-key="{_e(key)}"><th scope="row">{_e(label)}</th>{"".join(cells)}</tr>'


def _cell(value: Any, words: Mapping[str, Any]) -> str:
    if value is None:
        return f'<td class="none">{_e(words["none"])}</td>'
    return f"<td>{_e(_number(value))}</td>"


def _numbers(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A chart's numbers as text: one small table under it."""
    header = "".join(f'<th scope="col">{_e(h)}</th>' for h in head)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="numbers"><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>'


def _bar(key: str, value: int, x: float, width: float, top: float, css: str, label: str) -> str:
    """A vertical bar from the base line, its height ``value / top`` of the plot, its number above
    it and its label below."""
    h = PLOT_H * value / top if top else 0.0
    base = TOP + PLOT_H
    klass = f"bar {css}".strip()
    return (
        f'<rect class="{klass}" data-key="{_e(key)}" data-value="{value}" x="{_n(x)}" y="{_n(base - h)}" '
        f'width="{_n(width)}" height="{_n(h)}"><title>{_e(label)}: {value}</title></rect>'
        f'<text class="value" x="{_n(x + width / 2)}" y="{_n(base - h - 4)}" text-anchor="middle">{value}</text>'
        f'<text x="{_n(x + width / 2)}" y="{_n(base + 14)}" text-anchor="middle">{_e(label)}</text>'
    )


def _scale(organisations: Sequence[Mapping[str, Any]], unit: Mapping[str, Any], keys: Sequence[str]) -> float:
    """The value a full-height bar stands for: the largest among the organisations (the region's own)."""
    pool = [unit] if unit.get("kind") == "region" or unit not in organisations else organisations
    return float(max([_int(u.get(k)) for u in pool for k in [*keys, PATIENT_CHOSEN]] + [1]))


def _owners_scale(organisations: Sequence[Mapping[str, Any]], unit: Mapping[str, Any]) -> float:
    pool = [unit] if unit.get("kind") == "region" or unit not in organisations else organisations
    return float(max([v for u in pool for _, v in _distribution(u)] + [1]))


def _distribution(unit: Mapping[str, Any]) -> list[tuple[str, int]]:
    raw = unit.get("organisations_per_referral") or {}
    return sorted(((str(k), _int(v)) for k, v in raw.items()), key=lambda kv: (len(kv[0]), kv[0]))


def _numbered(units: Sequence[Mapping[str, Any]]) -> list[tuple[int, Mapping[str, Any]]]:
    return list(enumerate(units))


def _name(unit: Mapping[str, Any]) -> str:
    if unit.get("kind") == "region":
        return str(load("flow-page")["region"])
    return str(unit.get("name") or unit.get("organization") or "")


def _moment(value: Any) -> str:
    """The snapshot as a Swedish reader reads it: Stockholm's date and time to the minute."""
    try:
        return datetime.fromisoformat(str(value)).astimezone(STOCKHOLM).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return str(value or "")


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _number(value: Any) -> str:
    """Swedish style: a decimal comma, whole numbers without decimals."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:.1f}".replace(".", ",")
    return str(value)


def _n(value: float) -> str:
    """An SVG coordinate: at most two decimals, no trailing zeros."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _e(value: Any) -> str:
    return escape(str(value), quote=True)
