"""One pool of worker threads for the server's lifetime, not one thread per request.

FastAPI runs synchronous routes and dependencies on anyio's worker threads. anyio keeps an
idle worker for reuse only while the event loop's *root task* lives, and it finds that task
by looking for the one ``asyncio.run`` (``run_until_complete``) started. Under Daphne the
loop is run by Twisted's reactor (``run_forever``), so anyio takes each request's own task
as the root: the worker it starts stops when the request ends, and the next request starts
a new thread (about one a request, 2,000 a second under load).

:func:`hold_worker_threads` gives anyio a root task that lives until the server stops, so
its workers are reused (bounded by its limiter, 40 threads by default). anyio offers no
public way to do this; if its internals change, nothing breaks here: requests still work
and the test that counts the server's threads fails.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

__all__ = ["hold_worker_threads"]

_log = logging.getLogger("qrc.transit.server")


def hold_worker_threads() -> asyncio.Task[None]:
    """Start the task anyio's worker threads belong to; cancel it when the server stops.

    Must be called from a coroutine on the server's event loop.
    """
    loop = asyncio.get_running_loop()
    forever: asyncio.Future[None] = loop.create_future()
    task = loop.create_task(_hold(forever), name="qrc-worker-threads")
    try:
        from anyio._backends import _asyncio as anyio_asyncio  # noqa: PLC0415

        root: Any = anyio_asyncio._root_task
        root.set(task)
    except (ImportError, AttributeError) as exc:  # anyio changed: threads per request again
        _log.warning("cannot keep anyio's worker threads between requests: %r", exc)
    return task


async def _hold(forever: asyncio.Future[None]) -> None:
    await forever
