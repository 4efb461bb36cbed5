"""Fault injection for the resume tests: a real stage that kills its own worker process once."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from thresher.document import Document
from thresher.stage import Stage


@dataclass
class KillOnceConfig:
    marker: str = ""
    """File created just before the kill; its presence means the kill already happened."""
    after_docs: int = 1
    """Kill while processing the first block once this many documents were processed."""


class KillWorkerOnce(Stage):
    """Passes documents through; the first time it reaches ``after_docs`` it creates ``marker``
    and ends the worker process abruptly (``os._exit``), as an OOM kill or a lost node would."""

    name = "kill_worker_once"
    Config = KillOnceConfig

    def __init__(self, config=None):
        super().__init__(config)
        self.seen = 0

    def process(self, doc: Document) -> Document:
        self.seen += 1
        marker = Path(self.config.marker)
        if self.seen >= self.config.after_docs and not marker.exists():
            marker.write_text(str(os.getpid()))
            os._exit(1)
        return doc


class RecordNode(Stage):
    """Writes the Ray node that processed each document into its metadata (cluster tests)."""

    name = "record_node"

    def process(self, doc: Document) -> Document:
        import ray

        doc.metadata["ray_node"] = ray.get_runtime_context().get_node_id()
        return doc
