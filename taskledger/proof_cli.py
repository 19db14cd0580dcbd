"""Command-line pieces for proofs: ``audit --anchors/--proxy/--receipts`` and ``verify-receipt``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from events.log_chain import MalformedProof
from taskledger.accountability import AnchorsUnavailable, read_receipts, receipt_is_signed
from taskledger.proof_checks import ProofsToCheck


def add_proof_arguments(audit: argparse.ArgumentParser) -> None:
    audit.add_argument(
        "--anchors",
        help="signed checkpoints to hold the log to: an anchor file (JSON lines), "
        "gs://BUCKET/PREFIX, or a proxy's /api/v1/checkpoints URL (needs --proxy)",
    )
    audit.add_argument("--proxy", help="the proxy hotkey's SS58 address (signs checkpoints)")
    audit.add_argument(
        "--receipts", type=Path, help="a miner's receipts (JSON list or JSON lines) to look up"
    )


def proofs_of(arguments: argparse.Namespace) -> ProofsToCheck | None:
    if arguments.anchors is None and arguments.receipts is None:
        return None
    if arguments.anchors is not None and not arguments.proxy:
        raise ValueError("--anchors needs --proxy SS58: whose signatures to trust")
    return ProofsToCheck(arguments.anchors, arguments.proxy, arguments.receipts)


def refused() -> tuple[type[Exception], ...]:
    """What makes the audit refuse its arguments (exit 2) rather than report on the log."""
    return (ValueError, OSError, AnchorsUnavailable, MalformedProof)


def add_verify_receipt(commands: Any) -> None:
    verify = commands.add_parser(
        "verify-receipt", help="check a receipt's signature by the proxy hotkey, offline"
    )
    verify.add_argument("file", type=Path, help="a receipt (JSON), a JSON list or JSON lines")
    verify.add_argument(
        "--proxy", help="the proxy's SS58 address (default: the receipt's own proxy_hotkey)"
    )
    verify.set_defaults(handler=_verify_receipt)


def _verify_receipt(arguments: argparse.Namespace) -> int:
    try:
        receipts = read_receipts(arguments.file)
    except (OSError, MalformedProof) as error:
        print(f"taskledger verify-receipt: {error}", file=sys.stderr)
        return 2
    if not receipts:
        print("taskledger verify-receipt: no receipt in the file", file=sys.stderr)
        return 2
    bad = 0
    for receipt in receipts:
        signed = receipt_is_signed(receipt, arguments.proxy)
        against = arguments.proxy or f"{receipt.proxy_hotkey} (the receipt's own proxy_hotkey)"
        verdict = "valid" if signed else "INVALID"
        print(
            f"{verdict}: task {receipt.task_id} sequence {receipt.sequence} "
            f"event {receipt.event_hash}, signed by {against}"
        )
        bad += not signed
    if not arguments.proxy:
        print(
            "note: checked against the receipt's own proxy_hotkey; "
            "pass --proxy SS58 to check it is your proxy's"
        )
    return 1 if bad else 0
