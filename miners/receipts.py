"""Receipts: the proxy hotkey's signed word that a miner's response is in the log."""

from __future__ import annotations

from collections.abc import Iterable

from bittensor.signing import Signer

from events import Envelope
from events.log_chain import Receipt, receipt_message
from miners.proofs import sign_hex

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
