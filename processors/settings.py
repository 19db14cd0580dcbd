"""What the processors need to know, handed in by the composition root."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class ProcessorSettings:
    public_url: str = "http://127.0.0.1:8080"
    miners_per_type: dict[str, int] = field(
        default_factory=lambda: {"transcription": 3, "tts": 3, "summarization": 3}
    )
    miner_timeout_seconds: float = 30.0
    task_deadline_seconds: float = 120.0
    input_link_seconds: int = 300
    deadline_tick_seconds: float = 0.1
    retention_seconds: float = 7 * 24 * 3600.0
    retention_tick_seconds: float = 60.0
    directory_refresh_seconds: float = 5.0

    def miners_for(self, task_type: str) -> int:
        return self.miners_per_type.get(task_type, 3)
