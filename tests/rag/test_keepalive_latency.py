"""Searches on a kept-alive connection are not held back by Nagle's algorithm.

The SDKs keep their connections open. When the server's accepted sockets lack TCP_NODELAY, a response
written in two pieces (headers, then body) waits for the client's delayed ACK: every request after the
first on a connection takes 40 ms or more, whatever it does. A keyword search over a small collection takes
a few milliseconds, so a median far below 40 ms shows the sockets are right (see ``bind_socket`` in
``inferhub/server.py``: the listening socket must say IPPROTO_TCP for asyncio to set TCP_NODELAY).
"""

from __future__ import annotations

import statistics
import time


def test_searches_on_one_connection_are_not_delayed(rag) -> None:
    collection = rag.create_collection()["name"]
    rag.add_ready(collection, "The lost-and-found box is kept at the reception desk until the end of the month.")
    timings = []
    for _ in range(25):  # rag.http reuses one connection
        started = time.perf_counter()
        hits = rag.search(collection, "Where is the lost-and-found box kept?", mode="keyword")
        timings.append(time.perf_counter() - started)
        assert hits
    median = statistics.median(timings[5:])
    assert median < 0.035, f"median {median * 1000:.1f} ms per search on a kept-alive connection"
