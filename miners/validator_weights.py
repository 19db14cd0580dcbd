"""``taskledger validator --set-weights``: the proxy's weights, set on chain by a validator.

The weights come from the proxy (``GET /api/v1/validator/weights``, btauth/1
signed by the validator); the submission goes through
:class:`~miners.weights.WeightsSetter` with the validator's own hotkey, and
each one is recorded as a ``WeightsSubmitted`` event in the validator's own
embedded log (``--ledger DIR``), which ``taskledger audit --data-dir DIR``
checks like any log.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from events import EventLog
from events.ledger import WeightsSubmitted, record_weights
from miners.client import MinerClient
from miners.weights import Skipped, WeightsSetter


class WeightsUnavailable(Exception):
    pass


async def proxy_weights(client: MinerClient, proxy_url: str, proxy_hotkey: str) -> dict[str, float]:
    response = await client.get_signed(
        proxy_url.rstrip("/"), "/api/v1/validator/weights", receiver_ss58=proxy_hotkey
    )
    if response.status != 200 or not isinstance(response.json, dict):
        raise WeightsUnavailable(
            f"the proxy answered HTTP {response.status}: {response.body[:200]!r}"
        )
    weights = response.json.get("weights")
    if not isinstance(weights, dict):
        raise WeightsUnavailable("the proxy's answer has no weights")
    return {str(hotkey): float(value) for hotkey, value in weights.items()}


async def set_weights_once(
    client: MinerClient,
    proxy_url: str,
    proxy_hotkey: str,
    setter: WeightsSetter,
    ledger: EventLog,
) -> WeightsSubmitted | Skipped:
    weights = await proxy_weights(client, proxy_url, proxy_hotkey)
    if not weights:
        return Skipped("the proxy has no weights yet")
    outcome = await setter.submit(weights)
    if isinstance(outcome, WeightsSubmitted):
        await record_weights(ledger, outcome, datetime.now(UTC), actor=setter.hotkey)
    return outcome


def describe(outcome: WeightsSubmitted | Skipped) -> str:
    if isinstance(outcome, Skipped):
        return f"weights not submitted: {outcome.reason}"
    verdict = "submitted" if outcome.success else "FAILED"
    lines = [
        f"weights {verdict} on netuid {outcome.netuid} for {len(outcome.uids)} uid(s) "
        f"(version key {outcome.version_key}, block {outcome.block}): {outcome.message}"
    ]
    if outcome.dropped:
        lines.append(f"dropped (not registered): {', '.join(outcome.dropped)}")
    return "\n".join(lines)


def chain_client(network: str) -> Any:
    from bittensor import Client

    return Client(network)
