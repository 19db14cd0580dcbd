"""`taskledger bench …`: measured figures, printed and written to BENCHMARKS.md."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.report import machine, publish
from miners.reference_arguments import positive_int


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
    from bench.storage_floor import floor_in_tempdir

    # Anything else running shares the 2 cores: the figures are read with the load beside them.
    figures: dict[str, Any] = {"machine": machine(), "load_before": os.getloadavg()}
    figures["taskledger"] = engine_in_tempdir(tasks_for(arguments.events))
    figures["storage_floor"] = floor_in_tempdir(tasks_for(arguments.events))
    figures.update(_floor_ratios(figures["taskledger"], figures["storage_floor"]))
    figures["eventsourcing"] = run_reference(tasks_for(arguments.reference_events))
    ours = figures["taskledger"]["events_per_second"]
    theirs = figures["eventsourcing"]["events_per_second"]
    figures["speedup_vs_eventsourcing"] = ours / theirs
    if not arguments.no_accountability:
        from bench.accountability import accountability_figures

        figures["accountability"] = accountability_figures(tasks_for(arguments.events))
    figures["load_after"] = os.getloadavg()
    if arguments.memory:
        small = _engine_subprocess(100_000)
        large = _engine_subprocess(1_000_000)
        # Both processes count: the command path and the projection following the log.
        small_total = small["peak_rss_mib"] + small["projection_peak_rss_mib"]
        large_total = large["peak_rss_mib"] + large["projection_peak_rss_mib"]
        figures["memory"] = {
            "peak_rss_mib_100k": small_total,
            "peak_rss_mib_1m": large_total,
            "ratio": large_total / small_total,
        }
    return publish(
        "engine",
        figures,
        _engine_text(figures),
        _engine_markdown(figures, arguments),
        as_json=arguments.json,
        keep=not arguments.no_record,
    )


def _floor_ratios(ours: dict[str, Any], floor: dict[str, Any]) -> dict[str, float]:
    """The issue's goals are ratios within one run: machines here differ threefold."""
    return {
        "ratio_vs_storage_floor": ours["events_per_second"] / floor["events_per_second"],
        "audit_ratio_vs_hash_loop": ours["audit_events_per_second"]
        / floor["hash_events_per_second"],
    }


def _engine_text(figures: dict[str, Any]) -> str:
    ours, theirs = figures["taskledger"], figures["eventsourcing"]
    lines = [
        f"machine: {figures['machine']}; {_load(figures)}",
        f"taskledger: {ours['events']:,} events appended and projected in {ours['seconds']:.2f}s "
        f"= {ours['events_per_second']:,.0f} events/s",
        f"audit: {ours['audit_events_per_second']:,.0f} events/s",
        f"peak memory: {ours['peak_rss_mib']:.0f} MiB commands, "
        f"{ours['projection_peak_rss_mib']:.0f} MiB projection",
        f"eventsourcing (SQLite, append only): {theirs['events_per_second']:,.0f} events/s",
        f"speed-up: {figures['speedup_vs_eventsourcing']:.1f}x",
    ]
    if "storage_floor" in figures:
        floor = figures["storage_floor"]
        lines += [
            f"storage floor (one plain loop, one core): {floor['events_per_second']:,.0f} "
            f"events/s (its appends alone {floor['append_events_per_second']:,.0f}); "
            f"engine / floor = {figures['ratio_vs_storage_floor']:.2f}x (goal >= 1.2)",
            f"hash-recompute loop (one core): {floor['hash_events_per_second']:,.0f} events/s; "
            f"audit / hash loop = {figures['audit_ratio_vs_hash_loop']:.2f}x (goal >= 1.0)",
        ]
    if "accountability" in figures:
        proofs = figures["accountability"]
        lines += [
            f"audit with anchors verified: {proofs['audit_events_per_second_anchored']:,.0f} "
            f"events/s = {proofs['audit_anchored_ratio']:.2f} of the plain audit (goal >= 0.8)",
            f"appends with checkpointing on: "
            f"{proofs['appended_events_per_second_checkpointing_on']:,.0f} events/s vs "
            f"{proofs['appended_events_per_second_checkpointing_off']:,.0f} off = "
            f"{proofs['checkpointing_ratio']:.2f} (goal >= 0.95)",
        ]
    if "memory" in figures:
        memory = figures["memory"]
        lines.append(
            f"peak memory 100k events: {memory['peak_rss_mib_100k']:.0f} MiB, "
            f"1M events: {memory['peak_rss_mib_1m']:.0f} MiB (ratio {memory['ratio']:.2f})"
        )
    return "\n".join(lines)


def _load(figures: dict[str, Any]) -> str:
    before, after = figures["load_before"], figures["load_after"]
    return f"load average (1 min) {before[0]:.2f} before the run, {after[0]:.2f} after"


def _engine_markdown(figures: dict[str, Any], arguments: argparse.Namespace) -> str:
    """Ratios first (the issue's goals are ratios within one run), then the absolute figures."""
    ours, theirs = figures["taskledger"], figures["eventsourcing"]
    floor = figures["storage_floor"]
    command = f"taskledger bench engine --events {arguments.events}"
    if arguments.memory:
        command += " --memory"
    rows = [
        "## Engine (embedded SQLite log)",
        "",
        f"Command: `{command}`. Workload: whole lifecycles of 8 events with 3 miners each "
        "(create, distribute, 3 responses, completion, evaluation, approval); each step of "
        "1,000 lifecycles in flight is one batch of commands (`EmbeddedCommands.execute_many`): "
        "decided, sealed into the hash chain and appended in one durable group commit "
        "(`synchronous=FULL`). The projection runs in a process of its own, following the "
        "log file and folding it into the SQLite read models; the clock stops when its "
        "committed checkpoint reaches the last event. The log is then audited.",
        "",
        "The storage floor (`bench/storage_floor.py`) is one plain single-core loop doing the "
        "same storage work: the log's schema and indexes, `synchronous=FULL`, one commit per "
        "step of 1,000 lifecycles with the streams' heads read in it, the full envelope as "
        "canonical JSON, the SHA-256 chain; then the step read back and folded into one row "
        "per task in the read-model store's own table, indexes, pages and durability, with "
        "the checkpoint.",
        "",
        "| ratio (one run) | goal | measured |",
        "|---|---|---|",
        f"| events/s appended and projected ÷ the storage floor | ≥ 1.2x | "
        f"{figures['ratio_vs_storage_floor']:.2f}x |",
        f"| events/s ÷ `eventsourcing` SQLite (append only) | ≥ 6x | "
        f"{figures['speedup_vs_eventsourcing']:.1f}x |",
        f"| audit events/s (all checks, all cores) ÷ a plain single-core hash-recompute loop "
        f"| ≥ 1.0x | {figures['audit_ratio_vs_hash_loop']:.2f}x |",
    ]
    if "accountability" in figures:
        proofs = figures["accountability"]
        rows += [
            f"| audit events/s with anchors verified ÷ without | ≥ 0.8 | "
            f"{proofs['audit_anchored_ratio']:.2f} |",
            f"| appended events/s with checkpointing on ÷ off | ≥ 0.95 | "
            f"{proofs['checkpointing_ratio']:.2f} |",
        ]
    if "memory" in figures:
        memory = figures["memory"]
        rows.append(
            f"| peak memory 1M ÷ 100k events | ≤ 1.5 | {memory['ratio']:.2f} "
            f"({memory['peak_rss_mib_1m']:.0f} / {memory['peak_rss_mib_100k']:.0f} MiB) |"
        )
    rows += [
        "",
        "| absolute figure | goal | measured |",
        "|---|---|---|",
        f"| events/s appended and projected | ≥ 50,000 | {ours['events_per_second']:,.0f} |",
        f"| storage floor events/s (its appends alone) | | "
        f"{floor['events_per_second']:,.0f} ({floor['append_events_per_second']:,.0f}) |",
        f"| `eventsourcing` events/s ({theirs['events']:,} events) | | "
        f"{theirs['events_per_second']:,.0f} |",
        f"| audit events/s | ≥ 200,000 | {ours['audit_events_per_second']:,.0f} |",
        f"| hash-recompute loop events/s | | {floor['hash_events_per_second']:,.0f} |",
    ]
    if "accountability" in figures:
        proofs = figures["accountability"]
        rows += [
            f"| audit events/s with anchors verified | | "
            f"{proofs['audit_events_per_second_anchored']:,.0f} |",
            f"| appended events/s, checkpointing on / off | | "
            f"{proofs['appended_events_per_second_checkpointing_on']:,.0f} / "
            f"{proofs['appended_events_per_second_checkpointing_off']:,.0f} |",
        ]
    rows += [
        f"| peak memory ({ours['events']:,} events): commands + projection | | "
        f"{ours['peak_rss_mib']:.0f} + {ours['projection_peak_rss_mib']:.0f} MiB |",
        "",
        f"Machine load during the run: {_load(figures)}.",
    ]
    return "\n".join(rows)


def http(arguments: argparse.Namespace) -> int:
    if arguments.dashboard:
        return http_dashboard(arguments)
    from bench.http_load import run_http_bench

    figures: dict[str, Any] = {"machine": machine()}
    figures.update(
        run_http_bench(
            rate=arguments.rate,
            rate_seconds=arguments.rate_seconds,
            tasks=arguments.tasks,
            intake_seconds=arguments.intake_seconds,
            peers_apart=arguments.peers_apart,
        )
    )
    latency, lifecycles, intake = figures["latency"], figures["lifecycles"], figures["intake"]
    text = (
        f"machine: {figures['machine']}\n"
        f"intake: {intake['intakes_per_second']:,.0f} requests/s\n"
        f"full lifecycles: {lifecycles['lifecycles_per_second']:,.0f}/s "
        f"({lifecycles['lifecycles']:,} tasks)\n"
        f"at {latency['offered_per_second']:.0f} tasks/s offered: intake to DISTRIBUTED "
        f"p50 {latency['to_distributed_p50_ms']:.1f} ms, p99 "
        f"{latency['to_distributed_p99_ms']:.1f} ms; to DONE p50 "
        f"{latency['to_done_p50_ms']:.1f} ms, p99 {latency['to_done_p99_ms']:.1f} ms"
    )
    command = "taskledger bench http" + (" --peers-apart" if arguments.peers_apart else "")
    peers = (
        "fast miners answering at once and the reference validator posting over HTTP "
        "(up to 16 evaluations in flight) run "
        + (
            "in a process of their own"
            if arguments.peers_apart
            else "inside the processors process"
        )
    )
    markdown = "\n".join(
        [
            "## HTTP (embedded log; edge and processors as two processes)",
            "",
            f"Command: `{command}`. The edge and the processors run as two processes on "
            f"one data directory, the processors projecting inline; {peers}. The load comes "
            "from another process over loopback (a lean HTTP/1.1 client, 64 connections), "
            "polling the oldest unfinished tasks' status. Phases: open-loop latency at the "
            "offered rate, then lifecycles as fast as they go, then intake alone.",
            "",
            "| figure | goal | measured |",
            "|---|---|---|",
            f"| intakes/s | ≥ 2,000 | {intake['intakes_per_second']:,.0f} |",
            f"| full lifecycles/s (to APPROVED) | ≥ 500 | "
            f"{lifecycles['lifecycles_per_second']:,.0f} |",
            f"| intake → DISTRIBUTED p99 at {latency['offered_per_second']:.0f} tasks/s "
            f"offered | < 25 ms | {latency['to_distributed_p99_ms']:.1f} ms "
            f"(p50 {latency['to_distributed_p50_ms']:.1f} ms) |",
            f"| intake → DONE at the same rate | | p50 {latency['to_done_p50_ms']:.1f} ms, "
            f"p99 {latency['to_done_p99_ms']:.1f} ms |",
        ]
    )
    return publish(
        "http", figures, text, markdown, as_json=arguments.json, keep=not arguments.no_record
    )


def http_dashboard(arguments: argparse.Namespace) -> int:
    from bench.dashboard_load import run_dashboard_bench

    figures: dict[str, Any] = {"machine": machine()}
    figures.update(run_dashboard_bench(arguments.tasks, arguments.rounds))
    text = (
        f"machine: {figures['machine']}\n"
        f"full lifecycles without the dashboard: {figures['without_dashboard_per_second']:,.0f}/s, "
        f"with it open: {figures['with_dashboard_per_second']:,.0f}/s "
        f"(median of {figures['rounds']} alternating runs of {figures['tasks']:,} tasks)\n"
        f"ratio: {figures['ratio']:.3f} ({figures['dashboard_polls']} dashboard polls answered)"
    )
    markdown = "\n".join(
        [
            "## HTTP with the operators' dashboard open",
            "",
            f"Command: `taskledger bench http --dashboard --tasks {figures['tasks']} "
            f"--rounds {figures['rounds']}`. As `bench http`'s lifecycle phase, each run on a "
            "fresh system, alternating runs without and with one dashboard client polling "
            "as the page does (stats every second, miners every two); medians compared.",
            "",
            "| figure | goal | measured |",
            "|---|---|---|",
            f"| lifecycles/s with the dashboard / without | ≥ 0.97 | {figures['ratio']:.3f} "
            f"({figures['with_dashboard_per_second']:,.0f} / "
            f"{figures['without_dashboard_per_second']:,.0f}) |",
        ]
    )
    return publish(
        "http-dashboard",
        figures,
        text,
        markdown,
        as_json=arguments.json,
        keep=not arguments.no_record,
    )


def kafka(arguments: argparse.Namespace) -> int:
    from bench.kafka import Plan, run_kafka_bench
    from bench.kafka_report import kafka_markdown, kafka_text

    figures: dict[str, Any] = {"machine": machine()}
    plan = Plan(
        rate=arguments.rate,
        seconds=arguments.seconds,
        tasks=arguments.tasks,
        warm_seconds=arguments.warm_seconds,
        repeats=arguments.repeats,
        processors=tuple(arguments.processors),
        embedded_warm_seconds=arguments.embedded_warm_seconds,
        profile=arguments.profile,
        steady_rate=arguments.steady_rate,
    )
    figures.update(run_kafka_bench(arguments.bootstrap, plan))
    return publish(
        "kafka",
        figures,
        kafka_text(figures, plan),
        kafka_markdown(figures, plan, arguments.bootstrap),
        as_json=arguments.json,
        keep=not arguments.no_record,
    )


def answers(arguments: argparse.Namespace) -> int:
    from bench.answers import answers_markdown, answers_text, run_answers_bench

    figures: dict[str, Any] = {"machine": machine()}
    figures.update(run_answers_bench(arguments.rate, arguments.seconds, arguments.held))
    command = (
        f"taskledger bench answers --rate {arguments.rate:g} --seconds {arguments.seconds:g} "
        f"--held {arguments.held}"
    )
    return publish(
        "answers",
        figures,
        answers_text(figures),
        answers_markdown(figures, command),
        as_json=arguments.json,
        keep=not arguments.no_record,
    )


def add_parser(commands: Any) -> None:
    bench = commands.add_parser("bench", help="measure and record figures in BENCHMARKS.md")
    kinds = bench.add_subparsers(dest="bench_kind", required=True)
    engine_parser = kinds.add_parser("engine", help="append+project throughput, audit, memory")
    engine_parser.add_argument("--events", type=int, default=100_000)
    engine_parser.add_argument("--reference-events", type=int, default=16_000)
    engine_parser.add_argument("--memory", action="store_true", help="also 100k vs 1M events")
    engine_parser.add_argument("--json", action="store_true")
    engine_parser.add_argument("--no-record", action="store_true")
    engine_parser.add_argument(
        "--no-accountability",
        action="store_true",
        help="skip the anchored audit and checkpointing on/off ratios",
    )
    engine_parser.set_defaults(handler=engine)
    http_parser = kinds.add_parser("http", help="intake, lifecycles and latency over HTTP")
    http_parser.add_argument("--rate", type=float, default=200.0, help="tasks/s offered")
    http_parser.add_argument("--rate-seconds", type=float, default=10.0)
    http_parser.add_argument("--tasks", type=int, default=2000, help="lifecycles to run")
    http_parser.add_argument("--intake-seconds", type=float, default=5.0)
    http_parser.add_argument(
        "--peers-apart",
        action="store_true",
        help="the fast miners and the validator in a process of their own "
        "(default: inside the processors process)",
    )
    http_parser.add_argument(
        "--dashboard",
        action="store_true",
        help="lifecycles/s with one dashboard client polling, as a ratio to without",
    )
    http_parser.add_argument(
        "--rounds", type=int, default=3, help="--dashboard: alternating runs of each side"
    )
    http_parser.add_argument("--json", action="store_true")
    http_parser.add_argument("--no-record", action="store_true")
    http_parser.set_defaults(handler=http)
    kafka_parser = kinds.add_parser("kafka", help="the pipeline on Kafka: events/s, latency")
    kafka_parser.add_argument("--bootstrap", help="an existing broker (default: start one)")
    kafka_parser.add_argument("--rate", type=float, default=200.0, help="tasks/s offered")
    kafka_parser.add_argument("--seconds", type=float, default=10.0)
    kafka_parser.add_argument("--tasks", type=int, default=1000, help="lifecycles to run")
    kafka_parser.add_argument(
        "--warm-seconds",
        type=float,
        default=60.0,
        help="load at the offered rate before measuring (the broker's JIT warm-up)",
    )
    kafka_parser.add_argument(
        "--repeats",
        type=positive_int,
        default=5,
        help="latency runs in a row; the one with the median p99 is reported (default 5)",
    )
    kafka_parser.add_argument(
        "--processors",
        type=positive_int,
        nargs="+",
        default=[1],
        help="processors processes; several counts run one pipeline each, in turn, and "
        "compare their lifecycles/s and CPU (default 1)",
    )
    kafka_parser.add_argument(
        "--embedded-warm-seconds",
        type=float,
        default=15.0,
        help="warm-up of the embedded pipeline and of each Kafka pipeline after the first",
    )
    kafka_parser.add_argument(
        "--steady-rate",
        type=float,
        default=50.0,
        help="tasks/s of the steady phase (--seconds long), which both pipelines keep up "
        "with, for CPU per lifecycle at the same work per second",
    )
    kafka_parser.add_argument(
        "--profile",
        type=Path,
        help="a folder: py-spy (if on PATH) samples each process over the lifecycle "
        "phases into it (its CPU figures are then not for recording)",
    )
    kafka_parser.add_argument("--json", action="store_true")
    kafka_parser.add_argument("--no-record", action="store_true")
    kafka_parser.set_defaults(handler=kafka)
    answers_parser = kinds.add_parser("answers", help="time to first response, held waits")
    answers_parser.add_argument("--rate", type=float, default=20.0, help="tasks/s offered")
    answers_parser.add_argument("--seconds", type=float, default=10.0)
    answers_parser.add_argument("--held", type=positive_int, default=10_000)
    answers_parser.add_argument("--json", action="store_true")
    answers_parser.add_argument("--no-record", action="store_true")
    answers_parser.set_defaults(handler=answers)
    from bench.projections import add_projection_bench

    add_projection_bench(kinds)
    from bench.projection_workers import add_projection_workers_bench

    add_projection_workers_bench(kinds)
