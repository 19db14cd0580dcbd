"""Read models: projections of the log that can be thrown away and rebuilt."""

from projections.miner_stats import MinerStats, normalised_weights
from projections.projector import CONSUMER, Projector
from projections.rebuild import rebuild
from projections.state_codec import state_from_doc, state_to_doc
from projections.status_document import status_document
from projections.store import ReadModelStore

__all__ = [
    "CONSUMER",
    "MinerStats",
    "Projector",
    "ReadModelStore",
    "normalised_weights",
    "rebuild",
    "state_from_doc",
    "state_to_doc",
    "status_document",
]
