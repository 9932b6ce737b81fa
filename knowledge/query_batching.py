"""Questions asked at the same moment embedded in one batch, on one thread per process (`QueryBatcher`);
`knowledge.embeddings` keeps one per embedder."""

import logging
import queue
import threading
from collections import OrderedDict
from concurrent.futures import Future

logger = logging.getLogger(__name__)

# A question longer than this is not kept for the next follow-up (its token embeddings take room).
REMEMBERED_QUERY_MAX_CHARS = 1000


class QueryBatcher:
    """Embeds the questions asked at the same moment in one batch, on one thread per process.

    A burst of visitors asking at once used to run one model call per question, each on its own worker thread,
    all fighting for the same two cores: 50 questions took about twice as long as one batch of 50. A question
    asked alone goes straight in (no waiting for company); while a batch runs, the next questions queue and go
    together in the following one. A question already on its way (started early by the caller, or asked twice
    at once) is embedded once: its askers share the computation."""

    def __init__(self, embed_batch, *, max_batch: int = 64, thread_setup=None, remember: int = 256) -> None:
        """`embed_batch` takes a list of questions and returns one result per question, in order; `thread_setup`,
        if given, runs first on the batcher's thread. The results of the last `remember` short questions are
        kept: a follow-up's search embeds the visitor's earlier messages, which were questions here moments ago."""
        self._embed_batch = embed_batch
        self._max_batch = max_batch
        self._thread_setup = thread_setup
        self._remember = remember
        self._recent: OrderedDict[str, object] = OrderedDict()
        self._in_flight: dict[str, Future] = {}  # queued or being embedded
        self._recent_lock = threading.Lock()
        # Each entry is texts that must share a batch, with their futures.
        self._queue: queue.SimpleQueue[list[tuple[str, Future]]] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="query-embedding", daemon=True)
        self._thread.start()

    def submit(self, text: str) -> Future:
        return self.submit_many([text])[0]

    def submit_many(self, texts: list[str]) -> list[Future]:
        """Futures for `texts`, embedded together in one batch (those embedded lately come back at once)."""
        futures = []
        entry = []
        with self._recent_lock:
            for text in texts:
                if text in self._recent:
                    self._recent.move_to_end(text)
                    future = Future()
                    future.set_result(self._recent[text])
                elif text in self._in_flight:
                    future = self._in_flight[text]
                else:
                    future = self._in_flight[text] = Future()
                    entry.append((text, future))
                futures.append(future)
        if entry:
            self._queue.put(entry)
        return futures

    def _remember_results(self, texts: list[str], results: list) -> None:
        with self._recent_lock:
            for text, result in zip(texts, results, strict=True):
                if len(text) <= REMEMBERED_QUERY_MAX_CHARS:
                    self._recent[text] = result
                    self._recent.move_to_end(text)
            while len(self._recent) > self._remember:
                self._recent.popitem(last=False)

    def _run(self) -> None:
        if self._thread_setup is not None:
            try:
                self._thread_setup()
            except Exception:
                logger.exception("could not set up the query embedding thread; embedding questions as it is")
        while True:
            batch = list(self._queue.get())
            while len(batch) < self._max_batch:
                try:
                    batch += self._queue.get_nowait()
                except queue.Empty:
                    break
            try:
                vectors = self._embed_batch([text for text, _ in batch])
            except Exception as error:
                self._forget_in_flight(batch)
                for _, vector in batch:
                    vector.set_exception(error)
                continue
            self._remember_results([text for text, _ in batch], vectors)
            self._forget_in_flight(batch)
            for (_, vector), values in zip(batch, vectors, strict=True):
                vector.set_result(values)

    def _forget_in_flight(self, batch: list[tuple[str, Future]]) -> None:
        with self._recent_lock:
            for text, future in batch:
                if self._in_flight.get(text) is future:
                    del self._in_flight[text]
