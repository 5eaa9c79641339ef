#!/usr/bin/env python3
"""Summarizes a benches/run.sh results directory as Markdown: each variant's numbers
over the rounds, the ratios taken within each round, and where each goal stands."""
import json
import re
import statistics
import sys
from pathlib import Path

runs = {}
for path in sorted(Path(sys.argv[1]).glob("*.json")):
    match = re.fullmatch(r"(.+?)(?:-r(\d+))?", path.stem)
    name, round_ = match.group(1), int(match.group(2) or 0)
    runs.setdefault(name, {})[round_] = json.loads(path.read_text())


def spread(values, fmt="{:.0f}"):
    if not values:
        return "–"
    values = sorted(values)
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(statistics.median(values))} ({fmt.format(values[0])}–{fmt.format(values[-1])})"


def errors(report):
    return sum(n for k, n in report["total"]["outcomes"].items() if not k.startswith("2"))


print("| variant | ok/s | p50 ms | p99 ms | p99.9 ms | not 2xx | command-to-visible p99 ms |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for name, by_round in runs.items():
    reports = list(by_round.values())
    visible = [r["command_to_visible"]["p99_ms"] for r in reports if r.get("command_to_visible")]
    print(
        f"| {name} | {spread([r['total']['ok_per_sec'] for r in reports])}"
        f" | {spread([r['total']['latency']['p50_ms'] for r in reports], '{:.2f}')}"
        f" | {spread([r['total']['latency']['p99_ms'] for r in reports], '{:.2f}')}"
        f" | {spread([r['total']['latency']['p999_ms'] for r in reports], '{:.2f}')}"
        f" | {sum(errors(r) for r in reports)}"
        f" | {spread(visible, '{:.1f}')} |"
    )


def ratio(a, b, field=lambda r: r["total"]["ok_per_sec"]):
    """The ratio a/b of each round both ran in, as a spread."""
    rounds = sorted(set(runs.get(a, {})) & set(runs.get(b, {})))
    return [field(runs[a][r]) / max(field(runs[b][r]), 1e-9) for r in rounds]


def median(name, field):
    values = [field(r) for r in runs.get(name, {}).values()]
    return statistics.median(values) if values else None


print()
print("| goal | measured | |")
print("| --- | --- | --- |")


def goal(text, measured, met):
    print(f"| {text} | {measured} | {'met' if met else '**not met**'} |")


seq = ratio("ours-1", "floor-1")
if seq:
    goal("one client, one command at a time ≥ 0.9× the floor", f"{spread(seq, '{:.2f}')}×", statistics.median(seq) >= 0.9)
for name, what in (("ours-64", "64 accounts"), ("ours-64-hot", "one hot account")):
    ok = median(name, lambda r: r["total"]["ok_per_sec"])
    p99 = median(name, lambda r: r["total"]["latency"]["p99_ms"])
    if ok is not None:
        goal(f"64 connections, {what}: ≥ 25K schedule/s, p99 ≤ 25 ms", f"{ok:.0f}/s, p99 {p99:.1f} ms", ok >= 25000 and p99 <= 25)
if "ours-spike" in runs:
    spike = runs["ours-spike"][0]
    shed = spike["total"]["outcomes"].get("503", 0)
    bad = errors(spike) - shed
    late = spike["total"]["outcomes"].get("timeout", 0)
    goal(
        f"a {spike['rate']:.0f}/s spike for {spike['duration_secs']:.0f} s, no errors (503 = shed, never a timeout)",
        f"{spike['total']['ok_per_sec']:.0f} ok/s until the last answer at {spike['elapsed_secs']:.0f} s;"
        f" {shed} shed, {late} later than a 10 s client waits, {bad - late} other errors;"
        f" p99 {spike['total']['latency']['p99_ms'] / 1000:.1f} s",
        bad == 0,
    )
q = median("ours-query-10k", lambda r: r["ops"]["status"]["latency"]["p99_ms"])
if q is not None:
    goal("tracking query p99 ≤ 2 ms at 10K req/s", f"p99 {q:.2f} ms", q <= 2)
v = median("ours-visible-5k", lambda r: (r.get("command_to_visible") or {}).get("p99_ms", 1e9))
if v is not None:
    goal("command-to-visible p99 ≤ 50 ms at 5K commands/s", f"p99 {v:.1f} ms", v <= 50)
for ours, peer, what, want in (
    ("ours-1", "peer-1", "commands (schedule), 1 connection", 10),
    ("ours-64", "peer-64", "commands (schedule), 64 connections", 10),
    ("ours-register-1", "peer-register-1", "commands (register account), 1 connection", 10),
    ("ours-register-64", "peer-register-64", "commands (register account), 64 connections", 10),
    ("ours-query", "peer-query", "reads, 64 connections", 5),
):
    r = ratio(ours, peer)
    if r:
        peer_rate = median(peer, lambda r: r["total"]["ok_per_sec"])
        floor_rate = median("floor-1", lambda r: r["total"]["ok_per_sec"])
        if what.endswith("1 connection") and floor_rate and want * peer_rate > floor_rate:
            # The issue: then the floor ratio is the goal, reported beside the peer ratio.
            goal(
                f"≥ {want}× the peer's {what} (above the floor: the floor ratio is the goal)",
                f"{spread(r, '{:.1f}')}× the peer; {want}× the peer would be"
                f" {want * peer_rate / floor_rate:.1f}× the floor",
                statistics.median(seq) >= 0.9 if seq else False,
            )
        else:
            goal(f"≥ {want}× the peer's {what}", f"{spread(r, '{:.1f}')}×", statistics.median(r) >= want)


def bar_chart(path):
    """Median ok/s of each variant as horizontal bars (the spike left out: its rate is
    over its queueing, not comparable)."""
    rows = [
        (name, statistics.median([r["total"]["ok_per_sec"] for r in by_round.values()]))
        for name, by_round in runs.items()
        if name != "ours-spike"
    ]
    rows.sort(key=lambda row: -row[1])
    top = max((v for _, v in rows), default=1.0)
    height, left, width = 22, 170, 520
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 90}" height="{len(rows) * height + 50}" font-family="sans-serif" font-size="12">',
        '<rect width="100%" height="100%" fill="white"/>',
        '<text x="10" y="18" font-size="14">ok responses per second, median of the rounds (benches/run.sh)</text>',
    ]
    for i, (name, value) in enumerate(rows):
        y = 30 + i * height
        w = value / top * width
        color = "firebrick" if name.startswith("peer") else "gray" if name.startswith("floor") else "steelblue"
        parts.append(f'<text x="{left - 6}" y="{y + 14}" text-anchor="end">{name}</text>')
        parts.append(f'<rect x="{left}" y="{y + 2}" width="{w:.1f}" height="{height - 6}" fill="{color}"/>')
        parts.append(f'<text x="{left + w + 4:.1f}" y="{y + 14}">{value:,.0f}</text>')
    parts.append("</svg>")
    Path(path).write_text("\n".join(parts) + "\n")


bar_chart(Path(sys.argv[1]) / "chart.svg")
