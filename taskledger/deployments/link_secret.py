"""The secret behind miners' input links, shared by every process of a deployment."""

from __future__ import annotations

import os
import secrets

from taskledger.private_files import write_private
from taskledger.settings import Settings


def link_secret(settings: Settings) -> bytes:
    """Configured, or made once per data dir.

    Processes sharing a data dir must agree on it even when they start together: the
    file appears whole or not at all (a hard link), and whoever loses the race reads it.
    """
    if settings.link_secret:
        return settings.link_secret.encode()
    path = settings.data_dir / "link-secret"
    if not path.exists():
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        draft = path.with_name(f".link-secret.{os.getpid()}.{secrets.token_hex(4)}")
        write_private(draft, secrets.token_hex(32))
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return path.read_text().strip().encode()
