"""Rate limits count in windows aligned to the clock (chatbot.realtime.limits, chatbot.apikeys.services): a count that
crosses into the next window starts again. A test that counts events up to a limit and past it starts far enough
from the end of a window that all of them fall in one; otherwise it fails now and then, when the clock turns the
minute in the middle of it."""

import asyncio
import time


def _seconds_left(window_s: int) -> float:
    return window_s - time.time() % window_s


def clear_of_window_end_now(window_s: int, *, margin_s: float = 5) -> None:
    """`clear_of_window_end` for a synchronous test."""
    left = _seconds_left(window_s)
    if left < margin_s:
        time.sleep(left + 0.1)


async def clear_of_window_end(window_s: int, *, margin_s: float = 5) -> None:
    """Return at once if more than `margin_s` are left in the current window of `window_s`, else once the next one
    has begun."""
    left = _seconds_left(window_s)
    if left < margin_s:
        await asyncio.sleep(left + 0.1)
