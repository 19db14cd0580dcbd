"""The command-line arguments of `taskledger miner` and `taskledger validator`.

Apart from the peers themselves, so that building the command line imports
neither bittensor nor aiohttp: every `taskledger` command builds it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from events import TASK_TYPES


def add_miner_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--wallets-dir", type=Path, default=Path(".taskledger/wallets"))
    parser.add_argument("--wallet", default="reference-miner")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8091)
    parser.add_argument(
        "--capabilities", default=",".join(sorted(TASK_TYPES)), help="comma-separated"
    )
    parser.add_argument("--proxy-hotkey", action="append", help="accept work only from these")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to each task")
    parser.add_argument("--error-rate", type=float, default=0.0, help="share answered with 500")
    parser.add_argument("--silence-rate", type=float, default=0.0, help="share never answered")
    parser.add_argument("--deferred", action="store_true", help="answer 202, post the result later")
    parser.add_argument(
        "--receipts",
        type=Path,
        help="where to keep the proxy's receipts, JSON lines "
        "(default: .taskledger/receipts/<wallet>.jsonl)",
    )


def add_validator_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--wallets-dir", type=Path, default=Path(".taskledger/wallets"))
    parser.add_argument("--wallet", default="reference-validator")
    parser.add_argument("--proxy", default="http://127.0.0.1:8080", help="the proxy's base URL")
    parser.add_argument("--proxy-hotkey", help="default: asked from the proxy's /api/v1/health")
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument("--once", action="store_true", help="evaluate one batch and stop")
    parser.add_argument(
        "--batch", type=positive_int, default=50, help="DONE tasks asked for at a time"
    )
    parser.add_argument(
        "--concurrency", type=positive_int, default=16, help="evaluations in flight at most"
    )
    chain = parser.add_argument_group("weights on chain")
    chain.add_argument(
        "--set-weights",
        action="store_true",
        help="submit the proxy's weights to the subnet with bittensor's SetWeights",
    )
    chain.add_argument("--network", help="bittensor network or ws(s):// endpoint")
    chain.add_argument("--netuid", type=int)
    chain.add_argument("--version-key", type=int, default=0)
    chain.add_argument(
        "--weights-interval", type=float, default=600.0, help="seconds between submissions"
    )
    chain.add_argument(
        "--ledger",
        type=Path,
        default=Path(".taskledger/validator-ledger"),
        help="where each submission is recorded (an embedded event log)",
    )


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value
