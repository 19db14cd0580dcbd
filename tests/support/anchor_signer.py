"""The proxy identity that signs checkpoints in the anchored-audit tests, and how often it signs."""

from __future__ import annotations

from miners.identity import Identity

PROXY = Identity.from_seed(b"proxy-hotkey-of-issue-15-tests!!", "proxy")


EVERY = 16  # events per checkpoint: 5 tasks of 8 events -> checkpoints at 16 and 32
