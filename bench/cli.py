"""`taskledger bench …`: measured figures, printed and written to BENCHMARKS.md."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from typing import Any

from bench.report import machine, record


def _engine_subprocess(events: int) -> dict[str, Any]:
    """Run in a fresh process so that its peak memory is its own."""
    code = (
        "import json, sys\n"
        "from bench.engine import engine_in_tempdir, tasks_for\n"
        f"print(json.dumps(engine_in_tempdir(tasks_for({events}))))\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    result: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return result


def engine(arguments: argparse.Namespace) -> int:
    # The reference library is a test dependency: imported only when measuring.
    from bench.engine import engine_in_tempdir, tasks_for
    from bench.reference import run_reference

    figures: dict[str, Any] = {"machine": machine()}
    figures["taskledger"] = engine_in_tempdir(tasks_for(arguments.events))
    figures["eventsourcing"] = run_reference(tasks_for(arguments.reference_events))
    ours = figures["taskledger"]["events_per_second"]
    theirs = figures["eventsourcing"]["events_per_second"]
    figures["speedup_vs_eventsourcing"] = ours / theirs
    if arguments.memory:
        small = _engine_subprocess(100_000)
        large = _engine_subprocess(1_000_000)
        figures["memory"] = {
            "peak_rss_mib_100k": small["peak_rss_mib"],
            "peak_rss_mib_1m": large["peak_rss_mib"],
            "ratio": large["peak_rss_mib"] / small["peak_rss_mib"],
        }
    if arguments.json:
        print(json.dumps(figures, indent=2))
    else:
        print(_engine_text(figures))
    if not arguments.no_record:
        record("engine", _engine_markdown(figures, arguments))
    return 0


def _engine_text(figures: dict[str, Any]) -> str:
    ours, theirs = figures["taskledger"], figures["eventsourcing"]
    lines = [
        f"machine: {figures['machine']}",
        f"taskledger: {ours['events']:,} events appended and projected in {ours['seconds']:.2f}s "
        f"= {ours['events_per_second']:,.0f} events/s",
        f"audit: {ours['audit_events_per_second']:,.0f} events/s",
        f"peak memory: {ours['peak_rss_mib']:.0f} MiB",
        f"eventsourcing (SQLite, append only): {theirs['events_per_second']:,.0f} events/s",
        f"speed-up: {figures['speedup_vs_eventsourcing']:.1f}x",
    ]
    if "memory" in figures:
        memory = figures["memory"]
        lines.append(
            f"peak memory 100k events: {memory['peak_rss_mib_100k']:.0f} MiB, "
            f"1M events: {memory['peak_rss_mib_1m']:.0f} MiB (ratio {memory['ratio']:.2f})"
        )
    return "\n".join(lines)


def _engine_markdown(figures: dict[str, Any], arguments: argparse.Namespace) -> str:
    ours, theirs = figures["taskledger"], figures["eventsourcing"]
    command = f"taskledger bench engine --events {arguments.events}"
    if arguments.memory:
        command += " --memory"
    rows = [
        "## Engine (embedded SQLite log)",
        "",
        f"Command: `{command}`. Workload: whole lifecycles of 8 events with 3 miners each "
        "(create, distribute, 3 responses, completion, evaluation, approval), each command "
        "decided, sealed into the hash chain and appended, while the projection folds the "
        "log into the SQLite read models; the clock stops when the projection has caught up.",
        "",
        "| figure | goal | measured |",
        "|---|---|---|",
        f"| events/s appended and projected | ≥ 50,000 | {ours['events_per_second']:,.0f} |",
        f"| audit events/s | ≥ 200,000 | {ours['audit_events_per_second']:,.0f} |",
        f"| vs `eventsourcing` SQLite (append only, {theirs['events']:,} events: "
        f"{theirs['events_per_second']:,.0f} events/s) | ≥ 5x | "
        f"{figures['speedup_vs_eventsourcing']:.1f}x |",
        f"| peak memory ({ours['events']:,} events) | | {ours['peak_rss_mib']:.0f} MiB |",
    ]
    if "memory" in figures:
        memory = figures["memory"]
        rows.append(
            f"| peak memory 1M / 100k events | ≤ 1.5 | {memory['ratio']:.2f} "
            f"({memory['peak_rss_mib_1m']:.0f} / {memory['peak_rss_mib_100k']:.0f} MiB) |"
        )
    return "\n".join(rows)


def add_parser(commands: Any) -> None:
    bench = commands.add_parser("bench", help="measure and record figures in BENCHMARKS.md")
    kinds = bench.add_subparsers(dest="bench_kind", required=True)
    engine_parser = kinds.add_parser("engine", help="append+project throughput, audit, memory")
    engine_parser.add_argument("--events", type=int, default=100_000)
    engine_parser.add_argument("--reference-events", type=int, default=16_000)
    engine_parser.add_argument("--memory", action="store_true", help="also 100k vs 1M events")
    engine_parser.add_argument("--json", action="store_true")
    engine_parser.add_argument("--no-record", action="store_true")
    engine_parser.set_defaults(handler=engine)
