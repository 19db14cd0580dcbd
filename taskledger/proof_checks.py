"""What ``taskledger audit --anchors … --proxy … --receipts …`` adds to the plain audit."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from audit.anchors import AnchorReport
from events import EventLog
from events.capabilities import LogFeatures
from taskledger.accountability import (
    audit_against_anchors,
    audit_receipts,
    load_anchors,
    read_receipts,
)


@dataclass(frozen=True)
class ProofsToCheck:
    anchors: str | None = None
    proxy: str | None = None
    receipts: Path | None = None


@dataclass
class ProofsReport:
    anchors: AnchorReport | None = None
    receipts_checked: int = 0
    receipt_problems: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return (self.anchors is None or self.anchors.clean) and not self.receipt_problems

    def to_document(self) -> dict[str, Any]:
        document: dict[str, Any] = {}
        if self.anchors is not None:
            document["anchors"] = self.anchors.to_document()
        if self.receipts_checked or self.receipt_problems:
            document["receipts"] = {
                "checked": self.receipts_checked,
                "problems": self.receipt_problems,
            }
        return document

    def print(self, out: TextIO) -> None:
        anchors = self.anchors
        if anchors is not None:
            for finding in anchors.findings:
                print(f"ANCHOR {finding}", file=out)
            verdict = "clean" if anchors.clean else f"{len(anchors.findings)} finding(s)"
            print(
                f"anchors: {anchors.checkpoints} checkpoint(s), {anchors.verified} signed by the "
                f"proxy, {anchors.reproduced} reproduced by the log: {verdict}",
                file=out,
            )
            print(
                f"unanchored: {anchors.unanchored_events:,} event(s) after the last checkpoint",
                file=out,
            )
        for problem in self.receipt_problems:
            print(f"RECEIPT {problem}", file=out)
        if self.receipts_checked:
            print(
                f"receipts: {self.receipts_checked} checked, "
                f"{len(self.receipt_problems)} not matched by the log",
                file=out,
            )


async def check_proofs(log: EventLog, features: LogFeatures, proofs: ProofsToCheck) -> ProofsReport:
    report = ProofsReport()
    if proofs.anchors is not None:
        if not proofs.proxy:
            raise ValueError("--anchors needs --proxy SS58: whose signatures to trust")
        checkpoints = await load_anchors(proofs.anchors)
        report.anchors = await audit_against_anchors(log, features, checkpoints, proofs.proxy)
    if proofs.receipts is not None:
        receipts = read_receipts(proofs.receipts)
        report.receipts_checked = len(receipts)
        report.receipt_problems = await audit_receipts(log, receipts, proofs.proxy)
    return report
