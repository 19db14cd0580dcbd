"""The audit: the log checked against its own rules, its anchors and its receipts.

Not a read model: it rebuilds nothing and keeps nothing. It reads the log
(every task's hash chain, sequences, transitions against the table in
``aggregates``), on all cores for the SQLite log (``audit.shards``), and checks
the log chain against the signed checkpoints published outside it (``audit.anchors``).
"""

from audit.log_audit import Auditor, AuditReport, Violation, audit_envelopes, audit_log

__all__ = ["AuditReport", "Auditor", "Violation", "audit_envelopes", "audit_log"]
