"""A bounded registry of background refresh tasks, at most one per key.

Contract
--------
``started = tasks.spawn(key, lambda: refresh(key))``

* ``spawn`` starts ``coro_factory()`` as an ``asyncio.Task`` and returns True, unless a task
  for ``key`` is still running, ``limit`` tasks are running, or the registry is closed: then it
  returns False and **does not call the factory** (no coroutine is created, none is left
  un-awaited). It must be called from inside the running event loop; it never blocks.
* The registry keeps a strong reference to every running task (the event loop keeps only weak
  ones) and drops it when the task finishes, whatever the outcome: ``len(tasks)`` is the number
  running now.
* A task that raises is logged on ``logging.getLogger(__name__)`` at ERROR with its traceback
  and ``extra={"refresh_key": key.hex(), "registry": name}``; its exception is retrieved, so
  asyncio never reports "Task exception was never retrieved". A cancelled task is not an
  error (logged at DEBUG).
* The task runs in a copy of the context of the caller of ``spawn`` (asyncio's default), so
  ContextVars set by the request are visible, or in the ``context`` given (the request path
  gives a new, empty one); request-scoped *objects* must not be captured by
  the factory (see docs/resilience.md: a refresh builds its own dependencies).
* ``await tasks.aclose(timeout)``: refuses new tasks from now on, waits up to ``timeout``
  seconds for the running ones to finish, cancels those still running, and awaits them (a task
  that swallows its cancellation delays this; don't write one). If ``aclose`` itself is
  cancelled, it cancels every task before re-raising. Idempotent.
* ``stats``: ``spawned``, ``deduplicated`` (refused: same key running), ``rejected``
  (refused: limit reached or closed), ``failed``, ``cancelled``.
* Not thread-safe. A registry belongs to the event loop it is used in: used in another loop
  (a new loop per test, an app restarted in-process), it forgets the tasks of the previous
  loop, which can never be awaited from the new one (logged at WARNING with their number).
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import logging
from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ["RefreshTaskStats", "RefreshTasks"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class RefreshTaskStats:
    spawned: int = 0
    deduplicated: int = 0
    rejected: int = 0
    failed: int = 0
    cancelled: int = 0


class RefreshTasks:
    """At most one running task per key and ``limit`` in all; drained or cancelled on close."""

    def __init__(self, limit: int, *, name: str = "refresh") -> None:
        if limit < 1:
            raise ValueError("limit must be >= 1")
        self.limit = limit
        self.name = name
        self.stats = RefreshTaskStats()
        self._tasks: dict[bytes, asyncio.Task[Any]] = {}
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None

    def __len__(self) -> int:
        return len(self._tasks)

    def __contains__(self, key: object) -> bool:
        return key in self._tasks

    @property
    def closed(self) -> bool:
        return self._closed

    def get(self, key: bytes) -> asyncio.Task[Any] | None:
        """The running task of ``key``, if any."""
        return self._tasks.get(key)

    def spawn(
        self,
        key: bytes,
        coro_factory: Callable[[], Coroutine[Any, Any, Any]],
        *,
        context: contextvars.Context | None = None,
    ) -> bool:
        """Start ``coro_factory()`` in the background unless refused (then False).

        ``context``: the task's context (default: a copy of the caller's, asyncio's default).
        """
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._rebind(loop)
        if key in self._tasks:
            self.stats.deduplicated += 1
            return False
        if self._closed or len(self._tasks) >= self.limit:
            self.stats.rejected += 1
            return False
        name = f"{self.name}:{key.hex()[:32]}"
        if context is None:
            task = loop.create_task(coro_factory(), name=name)
        else:  # create_task(context=) is 3.11+; a task copies the context it is created in
            task = context.run(loop.create_task, coro_factory(), name=name)
        self._tasks[key] = task
        self.stats.spawned += 1
        task.add_done_callback(lambda t: self._done(key, t))
        return True

    def _rebind(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._tasks:
            logger.warning(
                "%d background refresh task(s) of another event loop forgotten",
                len(self._tasks),
                extra={"registry": self.name},
            )
            self._tasks = {}
        self._loop = loop

    def _done(self, key: bytes, task: asyncio.Task[Any]) -> None:
        if self._tasks.get(key) is task:
            del self._tasks[key]
        if task.cancelled():
            self.stats.cancelled += 1
            logger.debug(
                "background refresh cancelled",
                extra={"refresh_key": key.hex(), "registry": self.name},
            )
            return
        exc = task.exception()  # retrieves it: asyncio will not report it again
        if exc is not None:
            self.stats.failed += 1
            logger.error(
                "background refresh failed: %s: %s",
                type(exc).__name__,
                exc,
                exc_info=exc,
                extra={"refresh_key": key.hex(), "registry": self.name},
            )

    async def aclose(self, timeout: float) -> None:
        """Refuse new tasks, wait up to ``timeout`` s for the running ones, cancel the rest."""
        self._closed = True
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._rebind(loop)
        running = list(self._tasks.values())
        if not running:
            return
        try:
            _, pending = await asyncio.wait(running, timeout=max(0.0, timeout))
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        except asyncio.CancelledError:
            for task in running:
                task.cancel()
            raise
