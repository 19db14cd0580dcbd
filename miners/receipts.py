"""Receipts: the proxy hotkey's signed word that a miner's response is in the log."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from bittensor.signing import Signer

from events import Envelope, canonical
from events.log_chain import MalformedProof, Receipt, receipt_message
from miners.proofs import sign_hex, verify_hex

RESPONSE_EVENT = "MinerResponded"


def issue_receipt(signer: Signer, envelope: Envelope) -> Receipt:
    """Sign ``taskledger-receipt/1`` over the event's task, sequence and hash."""
    message = receipt_message(envelope.task_id, envelope.sequence, envelope.hash)
    return Receipt(
        task_id=envelope.task_id,
        sequence=envelope.sequence,
        event_hash=envelope.hash,
        proxy_hotkey=signer.ss58_address,
        signature=sign_hex(signer, message),
    )


def response_event(events: Iterable[Envelope], hotkey: str) -> Envelope | None:
    """The ``MinerResponded`` of ``hotkey`` among the events a response produced."""
    for envelope in events:
        if envelope.type == RESPONSE_EVENT and envelope.data.get("hotkey") == hotkey:
            return envelope
    return None


class ReceiptBook:
    """A miner's file of receipts (JSON lines), appended as the proxy hands them out.

    A receipt is kept only when its signature is the proxy's (the hotkey the work
    came from): a receipt that does not verify proves nothing to an auditor.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def keep(self, document: object, proxy_ss58: str) -> Receipt | None:
        try:
            receipt = Receipt.from_document(document)
        except MalformedProof:
            return None
        if receipt.proxy_hotkey != proxy_ss58 or not verify_hex(
            proxy_ss58, receipt.message(), receipt.signature
        ):
            return None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("ab") as book:
            book.write(canonical(receipt.to_document()) + b"\n")
        return receipt
