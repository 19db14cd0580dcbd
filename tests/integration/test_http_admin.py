"""Operator endpoints over real HTTP: client keys as data, quotas, rates, stats and miners."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.edge_system import API_KEYS, Edge, running_edge

ADMIN = "admin-key-for-tests-0123456789"
ADMIN_AUTH = {"Authorization": f"Bearer {ADMIN}"}
MINER_FIELDS = {
    "hotkey", "uid", "capabilities", "healthy", "in_flight", "assigned", "responded",
    "failed", "timed_out", "success_rate", "latency_ms_avg", "reward_avg", "weight",
}  # fmt: skip


async def _call(
    edge: Edge, method: str, path: str, headers: dict[str, str] | None = None, **kwargs: Any
) -> tuple[int, Any]:
    async with edge.session.request(
        method, f"{edge.url}{path}", headers=ADMIN_AUTH if headers is None else headers, **kwargs
    ) as response:
        body = await response.json() if response.content_type == "application/json" else None
        return response.status, body


async def _submit(edge: Edge, key: str, **headers: str) -> tuple[int, Any]:
    return await _call(
        edge,
        "POST",
        "/api/v1/summarization",
        {"Authorization": f"Bearer {key}", **headers},
        json={"text": "a text worth summarising"},
    )


async def test_operator_endpoints_need_an_admin_key_and_refuse_a_client_key(
    tmp_path: Path,
) -> None:
    async with running_edge(tmp_path, admin_keys={"ops": ADMIN}) as edge:
        for path in ("/api/v1/admin/keys", "/api/v1/admin/stats", "/api/v1/admin/miners"):
            assert (await _call(edge, "GET", path, {}))[0] == 401
            assert (await _call(edge, "GET", path, {"Authorization": "Bearer nope"}))[0] == 401
            status, body = await _call(edge, "GET", path, edge.auth("alice"))
            assert status == 403 and body["error"]["code"] == "not_an_operator"
            assert (await _call(edge, "GET", path))[0] == 200
        # The admin key is not a client key.
        assert (await _submit(edge, ADMIN))[0] == 401


async def test_keys_are_created_used_listed_and_revoked_over_http(tmp_path: Path) -> None:
    async with running_edge(tmp_path, admin_keys={"ops": ADMIN}) as edge:
        status, made = await _call(
            edge, "POST", "/api/v1/admin/keys", json={"name": "carol", "quota_per_day": 10}
        )
        assert status == 201, made
        assert set(made) == {"name", "key", "quota_per_day", "rate_per_second", "created_at"}
        assert (made["name"], made["quota_per_day"], made["rate_per_second"]) == (
            "carol",
            10,
            None,
        )
        assert (await _submit(edge, made["key"]))[0] == 202
        assert (await _submit(edge, API_KEYS["alice"]))[0] == 202  # the environment's still work

        status, listed = await _call(edge, "GET", "/api/v1/admin/keys")
        assert status == 200
        by_name = {entry["name"]: entry for entry in listed["keys"]}
        assert set(by_name) == {"alice", "bob", "carol"}
        assert by_name["carol"]["used_today"] == 1 and by_name["alice"]["used_today"] == 1
        assert all("key" not in entry and not entry["revoked"] for entry in listed["keys"])
        assert made["key"] not in str(listed)

        again = await _call(edge, "POST", "/api/v1/admin/keys", json={"name": "carol"})
        assert again[0] == 409
        for bad in ({"name": "a/b"}, {"name": "x", "quota_per_day": -1}, {"name": "x", "z": 1}):
            status, body = await _call(edge, "POST", "/api/v1/admin/keys", json=bad)
            assert status == 400, (bad, body)

        status, revoked = await _call(edge, "DELETE", "/api/v1/admin/keys/carol")
        assert status == 200 and revoked["revoked"] is True
        status, body = await _submit(edge, made["key"])
        assert status == 401 and body["error"]["code"] == "invalid_credentials"
        assert (await _call(edge, "DELETE", "/api/v1/admin/keys/nobody"))[0] == 404


async def test_a_key_past_its_quota_gets_429_and_a_replay_still_answers(tmp_path: Path) -> None:
    async with running_edge(tmp_path, admin_keys={"ops": ADMIN}) as edge:
        _, made = await _call(
            edge, "POST", "/api/v1/admin/keys", json={"name": "dave", "quota_per_day": 2}
        )
        key = made["key"]
        assert (await _submit(edge, key, **{"Idempotency-Key": "first"}))[0] == 202
        assert (await _submit(edge, key))[0] == 202
        status, body = await _submit(edge, key)
        assert status == 429 and body["error"]["code"] == "quota_exceeded"
        # A repeat of a task it created creates nothing, and is answered as before.
        status, body = await _submit(edge, key, **{"Idempotency-Key": "first"})
        assert status == 202, body
        _, listed = await _call(edge, "GET", "/api/v1/admin/keys")
        assert {e["name"]: e["used_today"] for e in listed["keys"]}["dave"] == 2


async def test_a_key_with_a_rate_is_held_to_it(tmp_path: Path) -> None:
    async with running_edge(tmp_path, admin_keys={"ops": ADMIN}) as edge:
        _, made = await _call(
            edge, "POST", "/api/v1/admin/keys", json={"name": "erin", "rate_per_second": 1}
        )
        answers = [await _submit(edge, made["key"]) for _ in range(5)]
        codes = [body["error"]["code"] for status, body in answers if status == 429]
        assert codes and set(codes) == {"rate_limited"}
        assert sum(status == 202 for status, _ in answers) in (1, 2)


async def test_stats_and_miners_come_from_the_read_models(tmp_path: Path) -> None:
    async with running_edge(tmp_path, miners=("instant",), admin_keys={"ops": ADMIN}) as edge:
        task_id = (await edge.submit())["task_id"]
        await edge.wait_for(task_id, "DONE")
        await edge.evaluate(task_id, {edge.miners[0].identity.ss58: 0.9})
        await edge.wait_for(task_id, "APPROVED")
        await asyncio.sleep(1.1)  # past the stats' one-second cache
        status, stats = await _call(edge, "GET", "/api/v1/admin/stats")
        assert status == 200
        assert stats["tasks_by_status"]["APPROVED"] == 1
        assert sum(row["approved"] for row in stats["throughput"]["per_minute"]) == 1
        assert stats["latency_ms"]["approved"]["count"] == 1
        assert stats["latency_ms"]["first_response"]["count"] == 1
        assert stats["latency_ms"]["first_response"]["p50"] >= 0
        assert stats["anchors"]["configured"] is False
        assert stats["anchors"]["status"] == "none configured"
        assert stats["processors"]["status"] == "ok"
        status, listed = await _call(edge, "GET", "/api/v1/admin/miners")
        assert status == 200
        [miner] = listed["miners"]
        assert set(miner) == MINER_FIELDS
        assert miner["hotkey"] == edge.miners[0].identity.ss58
        assert (miner["assigned"], miner["responded"], miner["healthy"]) == (1, 1, True)
        assert miner["weight"] == 1.0


async def test_the_dashboard_page_and_its_files_are_served(tmp_path: Path) -> None:
    async with running_edge(tmp_path, admin_keys={"ops": ADMIN}) as edge:
        async with edge.session.get(f"{edge.url}/dashboard") as page:
            assert page.status == 200 and page.content_type == "text/html"
            html = await page.text()
        assert "/dashboard/static/dashboard.js" in html
        async with edge.session.get(f"{edge.url}/dashboard/static/dashboard.js") as script:
            assert script.status == 200 and "sessionStorage" in await script.text()
        for name in ("../app.py", "__init__.py", "nope.js"):
            async with edge.session.get(f"{edge.url}/dashboard/static/{name}") as missing:
                assert missing.status == 404


async def test_an_upload_past_the_quota_is_refused_before_its_file_is_stored(
    tmp_path: Path,
) -> None:
    from tests.support.edge_system import wav_bytes

    async with running_edge(tmp_path, admin_keys={"ops": ADMIN}) as edge:
        _, made = await _call(
            edge, "POST", "/api/v1/admin/keys", json={"name": "fay", "quota_per_day": 1}
        )
        auth = {"Authorization": f"Bearer {made['key']}"}

        async def upload(frames: int) -> tuple[int, Any]:
            form = aiohttp.FormData()
            form.add_field("file", wav_bytes(frames), filename="a.wav", content_type="audio/wav")
            async with edge.session.post(
                f"{edge.url}/api/v1/transcription", data=form, headers=auth
            ) as response:
                return response.status, await response.json()

        assert (await upload(1600))[0] == 202
        blobs = sorted(p.name for p in (edge.data_dir / "blobs").rglob("*") if p.is_file())
        status, body = await upload(3200)  # another file
        assert status == 429 and body["error"]["code"] == "quota_exceeded"
        after = sorted(p.name for p in (edge.data_dir / "blobs").rglob("*") if p.is_file())
        assert after == blobs


async def test_stats_show_signed_checkpoints_and_their_anchors(tmp_path: Path) -> None:
    from taskledger.accountability_settings import AccountabilitySettings

    anchors = tmp_path / "outside" / "anchors.jsonl"
    accountability = AccountabilitySettings(
        checkpoint_events=2, checkpoint_seconds=0.2, anchors=(f"file://{anchors}",)
    )
    async with running_edge(
        tmp_path, admin_keys={"ops": ADMIN}, accountability=accountability
    ) as edge:
        for _ in range(3):
            await edge.submit()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 15
        while True:
            _, stats = await _call(edge, "GET", "/api/v1/admin/stats")
            found = stats["anchors"]
            if found["latest"] is not None or loop.time() > deadline:
                break
            await asyncio.sleep(0.3)
        assert found["configured"] is True and found["sinks"] == ["file"]
        assert found["status"] == "ok" and found["checkpoints"] >= 1
        assert found["latest"]["position"] >= 1 and found["latest"]["log_hash"]
        assert anchors.exists()


async def test_the_openai_endpoints_count_against_the_quota(tmp_path: Path) -> None:
    import openai

    from tests.support.edge_system import wav_bytes

    async with running_edge(tmp_path, miners=("instant",), admin_keys={"ops": ADMIN}) as edge:
        _, made = await _call(
            edge, "POST", "/api/v1/admin/keys", json={"name": "gil", "quota_per_day": 2}
        )
        client = openai.AsyncOpenAI(
            base_url=f"{edge.url}/v1", api_key=made["key"], max_retries=0, timeout=20
        )
        await client.audio.speech.create(model="tts-1", input="One.", voice="alloy")
        await client.audio.transcriptions.create(
            model="whisper-1", file=("a.wav", wav_bytes(), "audio/wav")
        )
        with pytest.raises(openai.RateLimitError) as refused:
            await client.audio.speech.create(model="tts-1", input="Three.", voice="alloy")
        assert refused.value.code == "quota_exceeded"
        assert (await _submit(edge, made["key"]))[1]["error"]["code"] == "quota_exceeded"
        await client.close()


async def test_bad_key_requests_are_clear_400s_and_create_nothing(tmp_path: Path) -> None:
    bodies: list[Any] = [
        [],
        "carol",
        {"name": 5},
        {"name": "ok", "quota_per_day": 1.5},
        {"name": "ok", "quota_per_day": True},
        {"name": "ok", "rate_per_second": "2"},
        {"name": "ok", "quota_per_day": 10**13},
        {"name": "ok", "rate_per_second": 1e300},
        {"name": "ok", "rate_per_second": -1},
        {"name": "é"},
        {"name": "x" * 65},
    ]
    async with running_edge(tmp_path, admin_keys={"ops": ADMIN}) as edge:
        for body in bodies:
            status, answer = await _call(edge, "POST", "/api/v1/admin/keys", json=body)
            assert status == 400, (body, answer)
            assert answer["error"]["code"] in ("invalid_request", "invalid_json"), answer
        raws = ((b"{not json", "application/json"), (b"null", "application/json"))
        for raw, content_type in (*raws, (b"\xff\xfe", "text/plain")):
            async with edge.session.post(
                f"{edge.url}/api/v1/admin/keys",
                data=raw,
                headers={**ADMIN_AUTH, "Content-Type": content_type},
            ) as response:
                assert response.status in (400, 415), await response.text()
        status, listed = await _call(edge, "GET", "/api/v1/admin/keys")
        assert {entry["name"] for entry in listed["keys"]} == {"alice", "bob"}
        for name in ("%2F..%2Fx", "a%00b", "x" * 300):
            status, answer = await _call(edge, "DELETE", f"/api/v1/admin/keys/{name}")
            assert status == 404, (name, answer)


@pytest.mark.firestore
async def test_stats_miners_and_keys_on_firestore(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    emulator = request.getfixturevalue("firestore_emulator")
    project = "taskledger-admin"
    emulator.reset(project)
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", emulator.host)
    async with running_edge(
        tmp_path,
        miners=("instant",),
        admin_keys={"ops": ADMIN},
        read_models=f"firestore://{project}",
    ) as edge:
        _, made = await _call(
            edge, "POST", "/api/v1/admin/keys", json={"name": "hal", "quota_per_day": 1}
        )
        status, hals = await _submit(edge, made["key"])
        assert status == 202
        assert (await _submit(edge, made["key"]))[1]["error"]["code"] == "quota_exceeded"
        task_id = (await edge.submit())["task_id"]
        await edge.wait_for(task_id, "DONE")
        async with asyncio.timeout(10):
            while (state := await edge.system.store.get_task(hals["task_id"])) is None or (
                state.status != "DONE"
            ):
                await asyncio.sleep(0.05)
        await edge.evaluate(task_id, {edge.miners[0].identity.ss58: 0.5})
        await edge.wait_for(task_id, "APPROVED")
        await asyncio.sleep(1.1)
        _, stats = await _call(edge, "GET", "/api/v1/admin/stats")
        assert stats["tasks_by_status"]["APPROVED"] == 1
        assert stats["latency_ms"]["approved"]["count"] == 1
        _, listed = await _call(edge, "GET", "/api/v1/admin/miners")
        assert [m["responded"] for m in listed["miners"]] == [2]
        _, keys = await _call(edge, "GET", "/api/v1/admin/keys")
        assert {e["name"]: e["used_today"] for e in keys["keys"]}["hal"] == 1
