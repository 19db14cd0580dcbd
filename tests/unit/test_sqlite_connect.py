"""Opening a SQLite database again in a process must not drop the locks its connections hold."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from events.sqlite_connect import open_wal

_VISIT = "import sqlite3, sys; sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchall()"
_COUNT = (
    "import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchone()[0])"
)


def test_another_process_closing_its_connection_leaves_this_ones_log_in_place(
    tmp_path: Path,
) -> None:
    # POSIX locks belong to the process: closing any descriptor of the file drops them all.
    # Had the second open done that, the other process's close would find no one else
    # using the database, checkpoint it and delete the log this process still writes to.
    path = tmp_path / "read.db"
    writer = open_wal(path)
    writer.execute("CREATE TABLE t (x)")
    reader = open_wal(path)
    subprocess.run([sys.executable, "-c", _VISIT, str(path), "SELECT COUNT(*) FROM t"], check=True)
    writer.execute("INSERT INTO t VALUES (1)")
    seen = subprocess.run(
        [sys.executable, "-c", _COUNT, str(path), "SELECT COUNT(*) FROM t"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert seen == "1"
    reader.close()
    writer.close()
