"""The day report: one self-contained HTML page (inline SVG chart, no scripts, no downloads).

Plain Python, no Airflow, no database: the DAG's ``report_day`` task runs the queries of
include/sql/day_report.sql and hands the rows here.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

__all__ = ["day_report", "day_report_name", "render_day_report", "write_day_report"]

_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")


def _y_ticks(peak: int, most: int = 5) -> list[int]:
    """The y axis' labels: 0 up to the first round number at or above ``peak``, in at most ``most`` equal steps.

    Steps are 1, 2, 2.5 or 5 times a power of ten (whole numbers: these are counts).
    """
    peak = max(int(peak), 1)
    for power in itertools.count():
        unit = 10**power
        for step in (unit, 2 * unit, max(25 * unit // 10, 1), 5 * unit):
            if step * most >= peak:
                return list(range(0, -(-peak // step) * step + 1, step))
    raise AssertionError("unreachable")


def _chart(hourly: Sequence[tuple[int, str, int]], top: int = 5) -> str:
    """Events per hour for the day's busiest services, one line each, as inline SVG."""
    per_service: dict[str, list[int]] = defaultdict(lambda: [0] * 24)
    for hour, service, events in hourly:
        per_service[service][int(hour)] += int(events)
    busiest = sorted(per_service, key=lambda s: -sum(per_service[s]))[:top]
    if not busiest:
        return "<p>No events.</p>"
    width, height, left, bottom = 720, 260, 60, 30
    ticks = _y_ticks(max(max(per_service[s]) for s in busiest))
    top = ticks[-1]
    x = lambda h: left + h * (width - left - 10) / 23  # noqa: E731
    y = lambda v: 10 + (height - bottom - 10) * (1 - v / top)  # noqa: E731
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 20 * len(busiest)}" role="img">']
    for value in ticks[1:]:
        parts.append(f'<line x1="{left}" y1="{y(value):.1f}" x2="{width - 10}" y2="{y(value):.1f}" stroke="#e5e5e5"/>')
    parts.append(f'<line x1="{left}" y1="{height - bottom}" x2="{width - 10}" y2="{height - bottom}" stroke="#999"/>')
    for hour in range(0, 24, 3):
        parts.append(f'<text x="{x(hour):.0f}" y="{height - 10}" font-size="11" text-anchor="middle">{hour:02d}h</text>')
    for value in ticks:
        parts.append(f'<text x="{left - 5}" y="{y(value) + 4:.0f}" font-size="11" text-anchor="end">{value:,}</text>')
    for index, service in enumerate(busiest):
        colour = _COLOURS[index % len(_COLOURS)]
        points = " ".join(f"{x(h):.1f},{y(v):.1f}" for h, v in enumerate(per_service[service]))
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}"/>')
        parts.append(
            f'<text x="{left}" y="{height + 15 + 20 * index}" font-size="12" fill="{colour}">'
            f"{escape(service)} ({sum(per_service[service])} events)</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _table(title: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<h2>{escape(title)}</h2><table><tr>{head}</tr>{body or '<tr><td>none</td></tr>'}</table>"


def _findings(findings: Sequence[Any], titles: dict[str, str]) -> str:
    """The Findings section: count per control and its first rows; nothing on a clean day."""
    if not findings:
        return ""
    parts = ["<h2>Findings</h2>", "<table><tr><th>control</th><th>findings</th><th>title</th></tr>"]
    parts += [
        f"<tr><td>{escape(f.control)}</td><td>{f.count}</td><td>{escape(titles.get(f.control, ''))}</td></tr>" for f in findings
    ]
    parts.append("</table>")
    header = ("time (UTC)", "account", "region", "principal", "source", "event", "error code")
    for f in findings:
        shown = f" (first {len(f.rows)} of {f.count})" if len(f.rows) < f.count else ""
        rows = [
            (r["eventTime"], r["recipientAccountId"], r["awsRegion"], r["principal"], r["sourceIPAddress"],
             r["eventName"], r["errorCode"] or "")
            for r in f.rows
        ]
        parts.append(_table(f"{f.control}{shown}", header, rows).replace("<h2>", "<h3>").replace("</h2>", "</h3>"))
    return "".join(parts)


def render_day_report(
    day: str,
    table: str,
    files: Sequence[Sequence[Any]],
    hourly: Sequence[tuple[int, str, int]],
    errors: Sequence[Sequence[Any]],
    principals: Sequence[Sequence[Any]],
    source_ips: Sequence[Sequence[Any]],
    replaced: Sequence[Sequence[Any]] = (),
    findings: Sequence[Any] = (),
    titles: dict[str, str] | None = None,
) -> str:
    """The HTML page for one event day."""
    style = (
        "body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin-bottom:1.5em}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}th{background:#f3f3f3}"
    )
    return "".join(
        [
            f"<!doctype html><html><head><meta charset='utf-8'><title>CloudTrail {escape(day)}</title>",
            f"<style>{style}</style></head><body>",
            f"<h1>CloudTrail events of {escape(day)} (table {escape(table)})</h1>",
            "<p>Counts come from the daily summary tables: each event once, by its own time (UTC). "
            "The day is complete once the next day's files are loaded too.</p>",
            _table("Files delivered that day", ("status", "files", "rows"), files),
            _findings(findings, titles or {}),
            _table("Files that replaced an earlier version of themselves", ("file", "replaced"), replaced) if replaced else "",
            "<h2>Events per hour, busiest services</h2>",
            _chart(hourly),
            _table("Top errors", ("service", "error code", "events"), errors),
            _table("Top principals", ("principal", "events", "errors"), principals),
            _table("Top source IP addresses", ("source", "events", "errors"), source_ips),
            "</body></html>",
        ]
    )


def write_day_report(
    query: Any, table: str, day: str, directory: Path, titles: dict[str, str] | None = None
) -> tuple[Path, dict[str, dict[str, int]]]:
    """Run the report's queries with ``query(sql, parameters) -> rows`` and write <dir>/<table>/<day>.html.

    Returns the page's path and the day's files and rows by manifest status. ``titles``: the
    controls' titles by id, for the Findings section.
    """
    page, files = day_report(query, table, day, titles)
    path = directory / day_report_name(table, day)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path, files


def day_report_name(table: str, day: str) -> str:
    """Where a day's page goes under any report location: <table>/<day>.html."""
    return f"{table}/{day}.html"


def day_report(
    query: Any, table: str, day: str, titles: dict[str, str] | None = None
) -> tuple[str, dict[str, dict[str, int]]]:
    """The day's page (HTML text) from ``query(sql, parameters) -> rows``, and its files and rows by status."""
    from cloudtrail_mysql import sql
    from cloudtrail_mysql.findings import day_findings

    def rows(name: str) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in query(sql.macro("day_report.sql", name, table), {"day": day})]

    files = rows("files_by_status")
    page = render_day_report(
        day, table, files, rows("events_by_hour"), rows("top_errors"), rows("top_principals"), rows("top_source_ips"),
        rows("replaced_files"), day_findings(query, table, day, limit=10), titles,
    )
    return page, {str(status): {"files": int(n), "rows": int(total)} for status, n, total in files}
