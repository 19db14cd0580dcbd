"""Two edges of one deployment, on Firestore read models: a signed request replayed to the
other edge is refused, because the nonces are kept in Firestore, not per machine."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.support.edge_system import VALIDATOR, running_edge
from tests.support.signing import signed_request

if TYPE_CHECKING:
    from tests.support.firestore_emulator import FirestoreEmulator

pytestmark = [pytest.mark.firestore, pytest.mark.slow]
PROJECT = "taskledger-two-edges"
WEIGHTS = "/api/v1/validator/weights"


async def test_a_request_replayed_to_another_edge_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, firestore_emulator: FirestoreEmulator
) -> None:
    firestore_emulator.reset(PROJECT)
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", firestore_emulator.host)
    read_models = f"firestore://{PROJECT}"
    async with (
        running_edge(tmp_path / "one", read_models=read_models) as one,
        running_edge(tmp_path / "two", read_models=read_models) as two,
    ):
        assert one.hotkey == two.hotkey  # one proxy, two machines
        status, answer, sent = await signed_request(
            one.session, "GET", one.url + WEIGHTS, VALIDATOR, receiver=one.hotkey,
            content_type=None,
        )  # fmt: skip
        assert status == 200, answer
        status, answer, _ = await signed_request(
            two.session, "GET", two.url + WEIGHTS, VALIDATOR, receiver=two.hotkey,
            content_type=None, headers=sent,
        )  # fmt: skip
        assert status == 401
        assert answer["error"]["code"] == "replayed_signature"
        # A fresh signature is welcome at either.
        status, answer, _ = await signed_request(
            two.session, "GET", two.url + WEIGHTS, VALIDATOR, receiver=two.hotkey,
            content_type=None,
        )  # fmt: skip
        assert status == 200, answer
