"""The `taskledger` command line: the same contract as the HTTP API, for scripts."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from events.kafka import configure_kafka_logging
from taskledger.collector import tune_collector
from taskledger.settings import Settings, SettingsError, from_environment

# What one `taskledger serve` process runs: everything, or one of the roles a deployment
# splits into (docker-compose.kafka.yml runs each split role as a service).
SERVE_ROLES = ("all", "edge", "processors", "projections")


def _settings(arguments: argparse.Namespace) -> Settings:
    return from_environment().with_overrides(
        data_dir=getattr(arguments, "data_dir", None),
        host=getattr(arguments, "host", None),
        port=getattr(arguments, "port", None),
    )


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _audit(arguments: argparse.Namespace) -> int:
    from taskledger.inspect_log import audit
    from taskledger.proof_cli import proofs_of, refused

    try:
        proofs = proofs_of(arguments)
        return asyncio.run(
            audit(
                _settings(arguments),
                as_json=arguments.json,
                workers=arguments.workers,
                proofs=proofs,
            )
        )
    except refused() as error:
        print(f"taskledger audit: {error}", file=sys.stderr)
        return 2


def _replay(arguments: argparse.Namespace) -> int:
    from taskledger.inspect_log import replay

    return asyncio.run(replay(_settings(arguments)))


def _events(arguments: argparse.Namespace) -> int:
    from taskledger.inspect_log import events

    return asyncio.run(events(_settings(arguments), arguments.task_id, as_json=arguments.json))


def _dev(arguments: argparse.Namespace) -> int:
    from taskledger.dev import run_dev

    return asyncio.run(
        run_dev(_settings(arguments), miners=arguments.miners, validator=not arguments.no_validator)
    )


def _serve(arguments: argparse.Namespace) -> int:
    from taskledger.serve import run_serve

    return asyncio.run(run_serve(_settings(arguments), role=arguments.role))


def _miner(arguments: argparse.Namespace) -> int:
    from miners.reference_cli import run_miner

    return asyncio.run(run_miner(arguments))


def _validator(arguments: argparse.Namespace) -> int:
    from miners.reference_cli import run_validator

    return asyncio.run(run_validator(arguments))


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="taskledger", description="Event-sourced job-routing proxy for a Bittensor subnet."
    )
    top.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    commands = top.add_subparsers(dest="command", required=True)

    def data_dir(command: argparse.ArgumentParser) -> None:
        command.add_argument(
            "--data-dir", type=Path, help="default: $TASKLEDGER_DATA_DIR or .taskledger"
        )

    dev = commands.add_parser("dev", help="everything on the embedded default, in one process")
    data_dir(dev)
    dev.add_argument("--host")
    dev.add_argument("--port", type=int)
    dev.add_argument("--miners", type=int, default=3, help="reference miners on loopback")
    dev.add_argument(
        "--no-validator", action="store_true", help="do not run the reference validator"
    )
    dev.set_defaults(handler=_dev)

    serve = commands.add_parser("serve", help="run from TASKLEDGER_* settings (production)")
    data_dir(serve)
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--role", choices=SERVE_ROLES, default="all")
    serve.set_defaults(handler=_serve)

    audit = commands.add_parser("audit", help="check every hash link and transition of the log")
    data_dir(audit)
    audit.add_argument("--json", action="store_true")
    audit.add_argument(
        "--workers",
        type=_positive,
        default=None,
        help="processes auditing the embedded log, each a share of the tasks "
        "(default: one per available core)",
    )
    from taskledger.proof_cli import add_proof_arguments, add_verify_receipt

    add_proof_arguments(audit)
    audit.set_defaults(handler=_audit)
    add_verify_receipt(commands)

    replay = commands.add_parser("replay", help="rebuild the read models from the log")
    data_dir(replay)
    replay.set_defaults(handler=_replay)

    history = commands.add_parser("events", help="print one task's history")
    history.add_argument("task_id")
    data_dir(history)
    history.add_argument("--json", action="store_true")
    history.set_defaults(handler=_events)

    from miners.reference_arguments import add_miner_arguments, add_validator_arguments

    miner = commands.add_parser("miner", help="run the reference miner against a proxy")
    add_miner_arguments(miner)
    miner.set_defaults(handler=_miner)
    validator = commands.add_parser("validator", help="run the reference validator")
    add_validator_arguments(validator)
    validator.set_defaults(handler=_validator)

    from taskledger.keys_cli import add_keys_parser

    add_keys_parser(commands)

    # Tools built on top of taskledger (the benchmarks) declare their commands as entry
    # points, so the command line reaches them without depending on them.
    for entry in entry_points(group="taskledger.commands"):
        entry.load()(commands)
    from taskledger.submit import add_submit_parser

    add_submit_parser(commands)
    return top


def main(argv: list[str] | None = None) -> int:
    arguments = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if arguments.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    configure_kafka_logging(verbose=arguments.verbose)
    handler: Any = arguments.handler
    tune_collector()
    try:
        return int(handler(arguments))
    except SettingsError as error:
        print(f"taskledger: configuration error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
