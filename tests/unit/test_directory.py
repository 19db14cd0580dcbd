import json
from pathlib import Path
from typing import Any

import pytest

from miners.directory import (
    CAPABILITIES,
    CombinedDirectory,
    MinerInfo,
    MinersFileError,
    StaticMinerDirectory,
    load_miners_file,
)

ALICE = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
BOB = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty"
CHARLIE = "5FLSigC9HGRKVhB9FiEo4Y3koPsNmBmLJbpXg2mp1hXcS59Y"


def _write(tmp_path: Path, document: Any) -> Path:
    path = tmp_path / "miners.json"
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return path


def _entry(**overrides: Any) -> dict[str, Any]:
    entry = {"hotkey": ALICE, "url": "http://127.0.0.1:9001", "capabilities": ["tts"]}
    entry.update(overrides)
    return entry


def test_loads_a_valid_file(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        [
            _entry(url="https://miner.example.org:8443/"),
            _entry(hotkey=BOB, capabilities=["transcription", "summarization"]),
        ],
    )
    assert load_miners_file(path) == [
        MinerInfo(ALICE, "https://miner.example.org:8443", frozenset({"tts"})),
        MinerInfo(BOB, "http://127.0.0.1:9001", frozenset({"transcription", "summarization"})),
    ]


def test_empty_list_is_no_miners(tmp_path: Path) -> None:
    assert load_miners_file(_write(tmp_path, [])) == []


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("[{", r"not valid JSON: .* line 1 column 3"),
        ({"hotkey": ALICE}, r"expected a JSON list of miners, got object"),
        (["5F..."], r"entries\[0\]: expected an object, got string"),
        ([_entry(), {"url": "http://x"}], r"entries\[1\]: missing field\(s\) capabilities, hotkey"),
        (
            [{"hotkey": ALICE, "url": "http://x"}],
            rf"entries\[0\] \(hotkey {ALICE}\): missing field\(s\) capabilities",
        ),
        ([_entry(capabilites=["tts"])], r"unknown field\(s\) capabilites"),
        ([_entry(hotkey=7)], r"entries\[0\]: hotkey must be a string, got number"),
        ([_entry(hotkey="5NotAnAddress")], r"\(hotkey 5NotAnAddress\): hotkey is not a valid SS58"),
        ([_entry(url=None)], r"url must be a string, got null"),
        ([_entry(url="ftp://127.0.0.1:21")], r"url 'ftp://127.0.0.1:21' is not an http\(s\) URL"),
        ([_entry(url="127.0.0.1:9001")], r"is not an http\(s\) URL"),
        ([_entry(url="http://:9001")], r"is not an http\(s\) URL with a host"),
        ([_entry(url="http://h:1/?a=b")], r"without query, fragment"),
        ([_entry(capabilities="tts")], r"capabilities must be a list of strings"),
        ([_entry(capabilities=[])], r"capabilities is empty"),
        (
            [_entry(capabilities=["tts", "translation"])],
            rf"entries\[0\] \(hotkey {ALICE}\): unknown capabilities \['translation'\]",
        ),
        ([_entry(), _entry(hotkey=BOB), _entry()], r"entries\[2\] repeats hotkey .* entries\[0\]"),
    ],
)
def test_invalid_files_name_the_problem(tmp_path: Path, document: Any, message: str) -> None:
    path = _write(tmp_path, document)
    with pytest.raises(MinersFileError, match=message) as raised:
        load_miners_file(path)
    assert str(raised.value).startswith(f"miners file {path}: ")


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(MinersFileError, match="cannot read"):
        load_miners_file(tmp_path / "absent.json")


def test_miner_info_guards_its_invariants() -> None:
    with pytest.raises(ValueError, match="unknown capabilities"):
        MinerInfo(ALICE, "http://h:1", frozenset({"video"}))
    with pytest.raises(ValueError, match="trailing"):
        MinerInfo(ALICE, "http://h:1/", CAPABILITIES)
    with pytest.raises(ValueError, match="hotkey is empty"):
        MinerInfo("", "http://h:1", CAPABILITIES)


async def test_static_directory() -> None:
    miner = MinerInfo(ALICE, "http://h:1", CAPABILITIES)
    directory = StaticMinerDirectory([miner], validators=[BOB])
    assert await directory.miners() == [miner]
    assert await directory.validators() == frozenset({BOB})
    with pytest.raises(ValueError, match="duplicate miner hotkeys"):
        StaticMinerDirectory([miner, miner])


async def test_combined_is_the_union_and_the_first_directory_wins() -> None:
    from_file = MinerInfo(ALICE, "http://file:1", frozenset({"tts"}))
    from_chain = MinerInfo(ALICE, "http://chain:1", CAPABILITIES)
    other = MinerInfo(BOB, "http://chain:2", CAPABILITIES)
    combined = CombinedDirectory(
        StaticMinerDirectory([from_file], validators=[CHARLIE]),
        StaticMinerDirectory([from_chain, other], validators=[ALICE]),
    )
    assert await combined.miners() == [from_file, other]
    assert await combined.validators() == frozenset({ALICE, CHARLIE})


async def test_combined_of_nothing_is_empty() -> None:
    assert await CombinedDirectory().miners() == []
    assert await CombinedDirectory().validators() == frozenset()


class _Broken:
    async def miners(self) -> list[MinerInfo]:
        raise RuntimeError("chain down")

    async def validators(self) -> frozenset[str]:
        raise RuntimeError("chain down")


async def test_combined_does_not_hide_a_failing_directory() -> None:
    combined = CombinedDirectory(StaticMinerDirectory([]), _Broken())
    with pytest.raises(RuntimeError, match="chain down"):
        await combined.miners()
