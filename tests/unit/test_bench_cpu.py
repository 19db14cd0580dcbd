"""`bench kafka`'s CPU figures: read from /proc, per lifecycle, and written as its table."""

from __future__ import annotations

import os
import time
from pathlib import Path

from bench.cpu import CpuMeter, cpu_seconds, top_functions
from bench.kafka import Plan
from bench.kafka_report import command_line, kafka_markdown


def test_a_process_cpu_seconds_grow_with_the_work_it_does() -> None:
    meter = CpuMeter({"me": os.getpid()})
    meter.start()
    deadline = time.process_time() + 0.2
    while time.process_time() < deadline:
        pass
    assert meter.stop()["me"] >= 0.15
    alone = cpu_seconds(os.getpid())  # read first: this process's CPU only grows after it
    assert cpu_seconds(os.getpid(), descendants=True) >= alone


def test_top_functions_count_each_function_once_per_sample(tmp_path: Path) -> None:
    collapsed = tmp_path / "stacks.txt"
    collapsed.write_text(
        "main (a.py:1);work (a.py:5);work (a.py:7) 3\nmain (a.py:1);idle (b.py:2) 1\n"
    )
    top = {name: (inclusive, own) for name, inclusive, own in top_functions(collapsed)}
    assert top["main (a.py)"] == (1.0, 0.0)
    assert top["work (a.py)"] == (0.75, 0.75)
    assert top["idle (b.py)"] == (0.25, 0.25)


def _phases(cpu: dict[str, float], rate: float) -> dict[str, object]:
    steady = {name: value / 2 for name, value in cpu.items()}
    return {
        "lifecycles_per_second": rate,
        "cpu_ms_per_lifecycle": cpu,
        "steady": {"cpu_ms_per_lifecycle": steady},
    }


def _pipeline(processors: int, cpu: dict[str, float], rate: float) -> dict[str, object]:
    return {"processors": processors, "lifecycles": _phases(cpu, rate)}


def test_the_kafka_section_shows_cpu_per_lifecycle_beside_the_embedded_pipeline() -> None:
    one = _pipeline(1, {"edge": 3.0, "processors-1": 5.0, "broker": 3.0, "load": 1.0}, 80)
    two = _pipeline(2, {"edge": 3.0, "processors-1": 4.0, "processors-2": 3.0, "broker": 4.0}, 90)
    embedded = {"lifecycles": _phases({"edge": 2.0, "processors-1": 2.0, "load": 0.5}, 300)}
    latency = {
        "offered_per_second": 200.0,
        "to_distributed_p50_ms": 20.0,
        "to_distributed_p99_ms": 40.0,
    }
    figures = {
        **one,
        "latency": latency,
        "latency_runs": [{"latency": latency}],
        "status_topic": {"to_status_topic_p50_ms": 30.0, "to_status_topic_p99_ms": 60.0},
        "pipeline_events_per_second": 640.0,
        "by_processors": [one, two],
        "embedded": embedded,
        "cpu_ratio_to_embedded": 2.0,
        "steady_cpu_ratio_to_embedded": 1.25,
    }
    markdown = kafka_markdown(figures, Plan(processors=(1, 2), repeats=5), None)
    assert "| CPU ms per lifecycle | Kafka, 1 processor | Kafka, 2 processors | embedded" in (
        markdown
    )
    assert "| ours (edge + processors) | 8.00 | 10.00 | 4.00 |" in markdown
    assert "| ours + broker | 11.00 | 14.00 | 4.00 |" in markdown
    assert "| processors-2 |  | 3.00 |  |" in markdown
    assert "| lifecycles/s | 80 | 90 | 300 |" in markdown
    assert "| ours (edge + processors) | 4.00 | 5.00 | 2.00 |" in markdown  # steady
    assert "1.25x at 50 tasks/s, 2.00x as fast as they go" in markdown
    assert "`taskledger bench kafka --processors 1 2`" in markdown
    # Busiest processor: 5.00 ms per lifecycle alone, 4.00 of two: 1.25x with a core each.
    assert "2 processors / 1: 1.12x lifecycles/s on this machine" in markdown
    assert "1.25x predicted with a core each" in markdown
    shorter = Plan(processors=(1,), repeats=3, warm_seconds=30)
    assert command_line(shorter) == "taskledger bench kafka --warm-seconds 30 --repeats 3"
