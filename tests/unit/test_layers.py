"""The layer table of the architecture holds: every import of every module, function-level
ones included, goes where its folder may import.

Two rules beside the table: the domain (the event types and the aggregates) never imports
a driver, and a module reaches another folder's backend only from the composition root,
the benchmarks, or another backend (ports, not backends).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# ARCHITECTURE.md, "Layers and folders": folder -> the folders of ours it may import.
DOMAIN = ("events", "aggregates")
ROOT_IMPORTS = frozenset(
    {"events", "aggregates", "processors", "projections", "audit", "http_edge", "miners", "blobs"}
)
MAY_IMPORT: dict[str, frozenset[str]] = {
    "events": frozenset(),
    "aggregates": frozenset({"events"}),
    "processors": frozenset({"events", "aggregates", "miners", "blobs", "projections"}),
    "projections": frozenset({"events", "aggregates"}),
    # The audit (beside the table's folders: it reads the log, it is not a read model).
    "audit": frozenset({"events", "aggregates"}),
    "http_edge": frozenset(
        {"events", "aggregates", "processors", "projections", "miners", "blobs"}
    ),
    "miners": frozenset({"events"}),
    "blobs": frozenset(),
    # The composition root wires everything; bench, a tool on top, is not wired by it.
    "taskledger": ROOT_IMPORTS,
    "bench": ROOT_IMPORTS | {"taskledger"},
}
FOLDERS = frozenset(MAY_IMPORT)
DRIVERS = frozenset({"aiokafka", "sqlite3", "google", "aiohttp"})
# Modules that may reach any folder's backends: the roots that choose them.
ROOTS = frozenset({"taskledger", "bench"})
# Imports that break a rule today, each with why it is allowed.
ALLOWED: frozenset[tuple[str, str]] = frozenset(
    {
        # The reference miner's audio work sniffs its input as the edge does; the table
        # lets miners import only events.
        ("miners.work.audio", "blobs.sniff"),
        # The reference validator's command line is a composition root of its own: it
        # keeps its weights ledger in a SQLite event log.
        ("miners.reference_cli", "events.sqlite_log"),
    }
)


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_backend(module: str) -> bool:
    """A backend of a port (SQLite, Kafka, Firestore, Cloud Storage, local files)."""
    if module == "blobs.local":
        return True
    return any(
        part.startswith(("sqlite", "kafka", "firestore")) or part == "gcs"
        for part in module.split(".")[1:]
    )


def imports(path: Path) -> Iterator[str]:
    """Every absolute module this file imports, at any depth (function-level too)."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module
            # ``from events import sqlite_log`` names a module too.
            for alias in node.names:
                if is_module(f"{node.module}.{alias.name}"):
                    yield f"{node.module}.{alias.name}"


def is_module(name: str) -> bool:
    path = REPO.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def product_modules() -> list[tuple[str, Path]]:
    found = [
        (module_name(path), path)
        for folder in sorted(FOLDERS)
        for path in sorted((REPO / folder).rglob("*.py"))
    ]
    assert len(found) > 100, "the product's modules were not found"
    return found


MODULES = product_modules()


def known_modules() -> frozenset[str]:
    return frozenset(name for name, _ in MODULES)


def test_every_folder_imports_only_what_the_layer_table_allows() -> None:
    broken = []
    for module, path in MODULES:
        folder = module.split(".")[0]
        for imported in imports(path):
            target = imported.split(".")[0]
            if (
                target in FOLDERS
                and target != folder
                and target not in MAY_IMPORT[folder]
                and (module, imported) not in ALLOWED
            ):
                broken.append(f"{module} imports {imported}")
    assert broken == []


def test_the_domain_never_imports_a_driver() -> None:
    broken = [
        f"{module} imports {imported}"
        for module, path in MODULES
        if module.split(".")[0] in DOMAIN and not is_backend(module)
        for imported in imports(path)
        if imported.split(".")[0] in DRIVERS
    ]
    assert broken == []


def test_other_folders_reach_a_backend_only_from_a_root_or_a_backend() -> None:
    known = known_modules()
    broken = []
    for module, path in MODULES:
        folder = module.split(".")[0]
        if folder in ROOTS or is_backend(module):
            continue
        for imported in imports(path):
            if (
                imported in known
                and imported.split(".")[0] != folder
                and is_backend(imported)
                and (module, imported) not in ALLOWED
            ):
                broken.append(f"{module} imports the backend {imported}")
    assert broken == []


def test_every_allowance_is_still_needed() -> None:
    """An allowance that no import uses any more is removed with the leak it excused."""
    used = {(module, imported) for module, path in MODULES for imported in imports(path)}
    assert sorted(ALLOWED - used) == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import aiokafka\n", {"aiokafka"}),
        ("def f():\n    from events import sqlite_log\n", {"events", "events.sqlite_log"}),
        ("from . import sibling\n", set()),
    ],
)
def test_imports_are_found_at_any_depth(tmp_path: Path, source: str, expected: set[str]) -> None:
    path = tmp_path / "module.py"
    path.write_text(source)
    assert set(imports(path)) == expected


def test_a_violation_is_reported(tmp_path: Path) -> None:
    """The check can fail: a domain module importing a driver or a higher layer is found."""
    path = tmp_path / "module.py"
    path.write_text("import sqlite3\nfrom processors.dispatcher import Dispatcher\n")
    found = set(imports(path))
    assert "sqlite3" in found and "processors.dispatcher" in found
    assert "processors" not in MAY_IMPORT["aggregates"]
    assert is_backend("events.sqlite_log") and is_backend("events.kafka.writer")
    assert not is_backend("events.log") and not is_backend("processors.dispatcher")
