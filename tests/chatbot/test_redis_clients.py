"""The process's Redis client is made once, however many threads ask for it first at the same moment."""

import sys
import threading

from chatbot.realtime import connections


def test_threads_asking_for_the_client_at_the_same_moment_all_get_the_same_one(monkeypatch):
    # A client made twice and dropped closes its pool's connections when collected, under whoever still uses them.
    monkeypatch.setattr(connections, "_sync_client", None)
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads take turns inside the client's construction, as busy threads do
    ready = threading.Barrier(16)
    clients = []

    def ask() -> None:
        ready.wait()
        clients.append(connections.sync_client())

    try:
        threads = [threading.Thread(target=ask) for _ in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
    finally:
        sys.setswitchinterval(switch_interval)

    assert len(clients) == 16
    assert len({id(client) for client in clients}) == 1
