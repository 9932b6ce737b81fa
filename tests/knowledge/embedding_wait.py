"""A question's embedding that is ready only once a search waits for it: what ran before that ran while it was
still being computed."""

from concurrent.futures import Future


class EmbeddingDoneWhenAskedFor(Future):
    """A Future of `embedded` (a QueryEmbedding) that completes when its result is first asked for (`asked`)."""

    def __init__(self, embedded) -> None:
        super().__init__()
        self.embedded, self.asked = embedded, False

    def result(self, timeout=None):
        if not self.asked:
            self.asked = True
            self.set_result(self.embedded)
        return super().result(timeout)
