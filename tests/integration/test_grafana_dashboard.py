"""docs/grafana/taskledger-dashboard.json queries only metrics the edge really exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.support.edge_system import running_edge

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana" / "taskledger-dashboard.json"
METRIC = re.compile(r"\btaskledger_[a-z0-9_]+")


def queried_metrics() -> set[str]:
    document = json.loads(DASHBOARD.read_text())
    expressions = [
        target["expr"] for panel in document["panels"] for target in panel.get("targets", [])
    ]
    assert expressions, "the dashboard queries nothing"
    return {name for expr in expressions for name in METRIC.findall(expr)}


def exported(text: str) -> set[str]:
    return {
        line.split("{", 1)[0].split(" ", 1)[0]
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


async def test_every_metric_the_grafana_dashboard_queries_is_exported(tmp_path: Path) -> None:
    async with running_edge(tmp_path, miners=("instant",)) as edge:
        task_id = (await edge.submit())["task_id"]
        await edge.wait_for(task_id, "DONE")  # traffic, so that every family has samples
        async with edge.session.get(f"{edge.url}/metrics") as response:
            assert response.status == 200
            text = await response.text()
    wanted = queried_metrics()
    assert {"taskledger_tasks", "taskledger_http_request_duration_seconds_bucket"} <= wanted
    missing = wanted - exported(text)
    assert not missing, f"queried but not exported: {sorted(missing)}"


def test_the_check_would_notice_a_metric_that_does_not_exist() -> None:
    text = '# TYPE taskledger_tasks gauge\ntaskledger_tasks{status="PENDING"} 1\n'
    assert exported(text) == {"taskledger_tasks"}
    assert METRIC.findall("sum(rate(taskledger_nope_total[1m]))") == ["taskledger_nope_total"]
