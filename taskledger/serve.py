"""`taskledger serve`: the same pieces as `dev`, from settings, for production backends."""

from __future__ import annotations

import sys

from taskledger.serving import serve_until_stopped
from taskledger.settings import Settings, SettingsError
from taskledger.system import build_system


async def run_serve(settings: Settings, *, role: str) -> int:
    edge = role in ("all", "edge")
    if edge and not settings.api_keys and not settings.admin_keys:
        raise SettingsError(
            "TASKLEDGER_API_KEYS and TASKLEDGER_ADMIN_KEYS are empty: "
            "no client could authenticate, and no operator could create keys"
        )
    system = build_system(settings, with_processors=role in ("all", "processors"))
    if role == "projections":
        system.add_projections()

    async def ready() -> None:
        parts = {
            "all": "edge and processors",
            "edge": "edge",
            "processors": "processors",
            "projections": "projections",
        }[role]
        where = f" on {settings.base_url}" if edge else ""
        print(f"taskledger serve: {parts}{where}, proxy hotkey {system.identity.ss58}", flush=True)

    await serve_until_stopped(system, edge=edge, processors=role != "edge", on_ready=ready)
    print("taskledger serve: stopped", file=sys.stderr)
    return 0
