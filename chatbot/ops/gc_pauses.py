"""Short garbage-collector pauses in the long-lived server processes (Daphne, the worker).

A full collection walks every object the collector tracks, and no thread of the process runs meanwhile. In a
process that has answered a question that is about 210,000 objects (Django and its models, the libraries, ONNX
Runtime's and the tokenizer's Python side) and 120-160 ms: every answer the process was streaming stood still that
long, which showed as a token lag p95 near 100 ms at only 10 answers at once (docs/scaling-rounds.md, the fourth round).

Nearly all of those objects live as long as the process. Once they are loaded, `gc.freeze()` moves them out of the
collector's view, and later collections look only at what was made since: a full collection after it took 0.0 ms.
Garbage that is frozen is never freed, so a process collects once before it freezes at start; after its first
answer (the embedding model and its tokenizer load with the first question) it freezes without collecting, to
keep that answer's streams running, and leaves what little garbage one answer made.
"""

import gc
import threading

_first_answer_lock = threading.Lock()
_after_first_answer = False


def long_lived_objects_freeze() -> None:
    """At a process's start, once its code and settings are loaded."""
    gc.collect()
    gc.freeze()


def first_answer_objects_freeze() -> None:
    """After this process's first answer; does nothing after later ones."""
    global _after_first_answer
    if _after_first_answer:  # every answer but the first: one read, no lock
        return
    with _first_answer_lock:
        if _after_first_answer:
            return
        _after_first_answer = True
    gc.freeze()
