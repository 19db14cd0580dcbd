"""`taskledger bench kafka`'s figures as text and as its BENCHMARKS.md section."""

from __future__ import annotations

from typing import Any

from bench.kafka import Plan, ours_ms

_GOAL_RATIO = 1.5


# The command's defaults (bench/cli.py): options left at them are not spelled out.
_DEFAULTS = Plan(repeats=5)


def command_line(plan: Plan) -> str:
    """The `bench kafka` command that ran ``plan``, with the options not at their defaults."""
    options = [
        ("--rate", plan.rate, _DEFAULTS.rate),
        ("--seconds", plan.seconds, _DEFAULTS.seconds),
        ("--tasks", plan.tasks, _DEFAULTS.tasks),
        ("--warm-seconds", plan.warm_seconds, _DEFAULTS.warm_seconds),
        ("--repeats", plan.repeats, _DEFAULTS.repeats),
        ("--embedded-warm-seconds", plan.embedded_warm_seconds, _DEFAULTS.embedded_warm_seconds),
        ("--steady-rate", plan.steady_rate, _DEFAULTS.steady_rate),
    ]
    words = ["taskledger bench kafka"]
    if plan.processors != _DEFAULTS.processors:
        words.append("--processors " + " ".join(str(n) for n in plan.processors))
    words += [f"{name} {value:g}" for name, value, default in options if value != default]
    return " ".join(words)


def _spread(figures: dict[str, Any], plan: Plan) -> tuple[list[float], list[float]]:
    runs = figures["latency_runs"]
    p50s = sorted(run["latency"]["to_distributed_p50_ms"] for run in runs)
    p99s = sorted(run["latency"]["to_distributed_p99_ms"] for run in runs)
    return p50s, p99s


def _phase(pipeline: dict[str, Any], steady: bool) -> dict[str, Any]:
    phase: dict[str, Any] = pipeline["lifecycles"]
    return phase["steady"] if steady else phase


def _cpu_rows(figures: dict[str, Any], steady: bool = False) -> list[tuple[str, list[str]]]:
    """(process, CPU ms per lifecycle in each Kafka pipeline then the embedded one)."""
    pipelines = [*figures["by_processors"], figures["embedded"]]
    names: list[str] = []
    for pipeline in pipelines:
        for name in _phase(pipeline, steady)["cpu_ms_per_lifecycle"]:
            if name not in names:
                names.append(name)
    order = {"edge": 0, "broker": 2, "peers": 3, "load": 4}
    names.sort(key=lambda name: (order.get(name, 1), name))
    rows = []
    for name in names:
        cells = []
        for pipeline in pipelines:
            value = _phase(pipeline, steady)["cpu_ms_per_lifecycle"].get(name)
            cells.append("" if value is None else f"{value:.2f}")
        rows.append((name, cells))
    totals: list[tuple[str, list[str]]] = [("ours (edge + processors)", []), ("ours + broker", [])]
    for pipeline in pipelines:
        cpu = _phase(pipeline, steady)["cpu_ms_per_lifecycle"]
        totals[0][1].append(f"{ours_ms(cpu):.2f}")
        totals[1][1].append(f"{ours_ms(cpu) + cpu.get('broker', 0.0):.2f}")
    if steady:
        return [*rows, *totals]
    rates = [f"{p['lifecycles']['lifecycles_per_second']:.0f}" for p in pipelines]
    return [*rows, *totals, ("lifecycles/s", rates)]


def scaling(figures: dict[str, Any]) -> str | None:
    """Dispatch capacity of the largest processors count against the first, as measured
    (lifecycles/s on this machine, where every process shares its cores) and as predicted
    for processes with a core each: the busiest processor is the limit, and it does one
    lifecycle per its CPU ms per lifecycle (of all lifecycles) at most."""
    pipelines = figures["by_processors"]
    if len(pipelines) < 2:
        return None
    first, last = pipelines[0], pipelines[-1]

    def busiest(pipeline: dict[str, Any]) -> float:
        cpu: dict[str, float] = pipeline["lifecycles"]["cpu_ms_per_lifecycle"]
        return max(ms for name, ms in cpu.items() if name.startswith("processors"))

    measured = (
        last["lifecycles"]["lifecycles_per_second"] / first["lifecycles"]["lifecycles_per_second"]
    )
    predicted = busiest(first) / busiest(last)
    return (
        f"{last['processors']} processors / {first['processors']}: {measured:.2f}x lifecycles/s "
        f"on this machine (its 2 cores shared by every process and the broker); "
        f"{predicted:.2f}x predicted with a core each (the busiest processor at "
        f"{busiest(last):.2f} against {busiest(first):.2f} CPU ms per lifecycle)"
    )


def _headers(figures: dict[str, Any]) -> list[str]:
    kafka = [
        f"Kafka, {p['processors']} processor{'' if p['processors'] == 1 else 's'}"
        for p in figures["by_processors"]
    ]
    return [*kafka, "embedded (SQLite)"]


def cpu_text(figures: dict[str, Any]) -> str:
    lines = []
    for steady, title in ((True, "steady phase"), (False, "lifecycle phase")):
        lines.append(f"CPU ms per lifecycle, {title}: " + " | ".join(_headers(figures)))
        for name, cells in _cpu_rows(figures, steady):
            lines.append(f"  {name:26} " + " | ".join(f"{cell:>8}" for cell in cells))
    lines.append(
        f"ours on Kafka / embedded: {figures['steady_cpu_ratio_to_embedded']:.2f}x steady, "
        f"{figures['cpu_ratio_to_embedded']:.2f}x in the lifecycle phase "
        f"(goal ≤ {_GOAL_RATIO}x)"
    )
    capacity = scaling(figures)
    if capacity is not None:
        lines.append("dispatch capacity, " + capacity)
    return "\n".join(lines)


def _table(figures: dict[str, Any], steady: bool) -> list[str]:
    headers = _headers(figures)
    return [
        "| CPU ms per lifecycle | " + " | ".join(headers) + " |",
        "|---|" + "---:|" * len(headers),
        *(f"| {name} | " + " | ".join(cells) + " |" for name, cells in _cpu_rows(figures, steady)),
    ]


def kafka_text(figures: dict[str, Any], plan: Plan) -> str:
    latency, topic, lifecycles = figures["latency"], figures["status_topic"], figures["lifecycles"]
    p50s, p99s = _spread(figures, plan)
    spread = (
        f"the median of {len(p99s)} runs of {plan.seconds:.0f} s; p99 "
        f"{p99s[0]:.1f} to {p99s[-1]:.1f} ms, p50 {p50s[0]:.1f} to {p50s[-1]:.1f} ms"
        if len(p99s) > 1
        else "one run"
    )
    return (
        f"machine: {figures['machine']}\n"
        f"pipeline: {figures['pipeline_events_per_second']:,.0f} events/s "
        f"({lifecycles['lifecycles_per_second']:,.0f} lifecycles/s)\n"
        f"at {latency['offered_per_second']:.0f} tasks/s offered: intake to DISTRIBUTED "
        f"p50 {latency['to_distributed_p50_ms']:.1f} ms, p99 "
        f"{latency['to_distributed_p99_ms']:.1f} ms; to the status topic p50 "
        f"{topic['to_status_topic_p50_ms']:.1f} ms, "
        f"p99 {topic['to_status_topic_p99_ms']:.1f} ms ({spread})\n" + cpu_text(figures)
    )


def kafka_markdown(figures: dict[str, Any], plan: Plan, bootstrap: str | None) -> str:
    latency, topic = figures["latency"], figures["status_topic"]
    p50s, p99s = _spread(figures, plan)
    broker = bootstrap or "a single-node Kafka 4.1.1 started by the command"
    command = command_line(plan)
    return "\n".join(
        [
            "## Kafka (the whole pipeline on one local broker, broker on the same 2 cores)",
            "",
            f"Command: `{command}`; broker: {broker}. The proxy runs with "
            "`TASKLEDGER_EVENT_LOG=kafka://…` as separate processes: `--role edge`, sending "
            "commands through the broker, and `--role processors` (each: the command processor, "
            "the dispatcher and deadlines of the partitions it owns, a projection worker; "
            "the leader also retention and the checkpointer); the fast miners and "
            "the reference validator (over HTTP) run in a process of their own, as with "
            "`bench http --peers-apart`. The load and a plain aiokafka follower of the "
            "status topic run in the command's process, after one task has gone all the way "
            f"and {plan.warm_seconds:.0f} s of load at the offered rate (unmeasured: a "
            "freshly started broker spends its first minute compiling). Events/s "
            "counts 8 events per completed lifecycle. Latency: the run with the median "
            f"p99 of {len(p99s)} open-loop runs of {plan.seconds:.0f} s each, one "
            "after another on the same pipeline"
            + (
                f" (p99 {', '.join(f'{v:.1f}' for v in p99s)} ms; "
                f"p50 {p50s[0]:.1f} to {p50s[-1]:.1f} ms)."
                if len(p99s) > 1
                else "."
            ),
            "",
            "| figure | goal | measured |",
            "|---|---|---|",
            f"| events/s through the pipeline | ≥ 20,000 | "
            f"{figures['pipeline_events_per_second']:,.0f} |",
            f"| intake → DISTRIBUTED p99 at {latency['offered_per_second']:.0f} tasks/s "
            f"offered | < 50 ms | {latency['to_distributed_p99_ms']:.1f} ms "
            f"(p50 {latency['to_distributed_p50_ms']:.1f} ms) |",
            f"| intake → status topic (first status past PENDING) | | p50 "
            f"{topic['to_status_topic_p50_ms']:.1f} ms, p99 "
            f"{topic['to_status_topic_p99_ms']:.1f} ms |",
            f"| CPU per lifecycle, edge + processors on Kafka / embedded | ≤ {_GOAL_RATIO}x | "
            f"{figures['steady_cpu_ratio_to_embedded']:.2f}x at {plan.steady_rate:.0f} "
            f"tasks/s, {figures['cpu_ratio_to_embedded']:.2f}x as fast as they go |",
            *(
                [f"| dispatch capacity, more processors | | {capacity} |"]
                if (capacity := scaling(figures)) is not None
                else []
            ),
            "",
            "CPU per lifecycle: each process's user + system CPU (from /proc, its threads "
            "and, for the broker, its JVM child) over a phase, divided by the lifecycles "
            f"it completed. Steady: {plan.steady_rate:.0f} tasks/s offered for "
            f"{plan.seconds:.0f} s until all are terminal, a rate both pipelines keep up "
            "with, so that both do the same work per second. Lifecycle phase: "
            f"{plan.tasks} tasks submitted by 64 clients as fast as they are accepted, "
            "until all are terminal (it depends more on each one's speed, and on what "
            "else the machine runs). Each processors count runs a pipeline of its own on "
            "the same broker, one after the other; the embedded pipeline (`bench http`'s: "
            "edge and processors on one SQLite log, peers apart) runs last in the same "
            f"command, after {plan.embedded_warm_seconds:.0f} s of warm-up at the offered "
            "rate, with the broker stopped. `load` is the command's own process (the "
            "clients and the status follower); `peers` the fast miners and the validator.",
            "",
            f"Steady phase ({plan.steady_rate:.0f} tasks/s):",
            "",
            *_table(figures, True),
            "",
            "Lifecycle phase (as fast as they go):",
            "",
            *_table(figures, False),
        ]
    )
