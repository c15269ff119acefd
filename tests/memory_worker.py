"""A writer process for the episodic server test: ``python -m tests.memory_worker URL NAMESPACE WRITER N``.

Says it is ready (a file ``ready-WRITER`` beside the start file, once its embedder is loaded and the server
answers), waits for the start file, then writes N episodes one upsert at a time through the episodic tier at URL
(a ``chroma run`` server over HTTP, or PostgreSQL with pgvector)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ace.llm.embeddings import MiniLMEmbedder
from ace.memory import Episode, open_episodic


def main() -> None:
    url, namespace, writer, n, start = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), Path(sys.argv[5])
    store = open_episodic(url, MiniLMEmbedder(), namespace=namespace)
    store.count()  # the connection is up
    (start.parent / f"ready-{writer}").touch()
    deadline = time.monotonic() + 120
    while not start.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    for i in range(n):
        store.add(
            [
                Episode(
                    id=f"w{writer}-e{i}",
                    task=f"writer {writer} task {i}: compute the ratio of item {i * 7 + writer}",
                    summary=f"answered {i}",
                    outcome="success" if i % 2 else "failure",
                )
            ]
        )


if __name__ == "__main__":
    main()
