"""A map over a thread pool that runs ahead of its consumer: the next items are worked on while the caller uses
the current one (image decoding and face alignment while the networks code a batch)."""

from __future__ import annotations

import collections
import concurrent.futures
import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


def prefetched_map(
    function: Callable[[Item], Result], items: Iterable[Item], workers: int, ahead: int
) -> Iterator[concurrent.futures.Future]:
    """The futures of ``function(item)``, done, in the order of ``items``, with at most ``ahead`` submitted and not
    yet yielded. ``future.result()`` gives the value or raises the item's own exception, so one bad item does not stop
    the others. Leaving the loop early (an error, Ctrl-C) cancels what has not started and waits for what has."""
    if workers < 1 or ahead < 1:
        raise ValueError(f"workers and ahead must be at least 1, not {workers} and {ahead}")
    pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="prefetch")
    pending: collections.deque[concurrent.futures.Future] = collections.deque()
    items = iter(items)
    try:
        pending.extend(pool.submit(function, item) for item in itertools.islice(items, ahead))
        while pending:
            future = pending.popleft()
            pending.extend(pool.submit(function, item) for item in itertools.islice(items, 1))
            concurrent.futures.wait([future])
            yield future
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
