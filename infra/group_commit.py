"""Group commit: the requests that arrive while one batch is being written go together in the next."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from infra.db import autocommit_connection
from infra.errors import AppError, RateLimited
from infra.metrics import GROUP_COMMIT_BATCH

log = logging.getLogger("group_commit")
R = TypeVar("R")  # a request
A = TypeVar("A")  # an answer

Write = Callable[[asyncpg.Connection, Sequence[R]], Awaitable[Sequence[A | AppError]]]


class BatchFailed(Exception):
    """Writing a batch failed: nothing of it was written (the cause is chained)."""


class RetryBatch(Exception):
    """Raised by `write` when its statement failed because what it read was overtaken (nothing was
    written): the batch is written again (up to MAX_ATTEMPTS times in all)."""


MAX_ATTEMPTS = 3


class GroupCommit(Generic[R, A]):
    """Writes requests in batches, one transaction per batch and one batch at a time in this process.

    A request that finds nothing being written goes at once, so a quiet service adds no wait. In a rush,
    each batch carries everything that queued while the previous one was written (up to `max_batch`):
    the round trips and the commit are paid once per batch instead of once per request.

    `write(connection, batch)` gets a pooled asyncpg connection in autocommit and must write the batch
    atomically, in one statement (its own transaction): nothing is then held between round trips to
    this process, whose event loop may be slow to come back in a rush. It returns one answer per
    request, in order: its result, or the AppError that request alone caused (the rest of the batch is
    still written). Answers are given once `write` has returned. `write` may raise RetryBatch to have
    the batch written again. If it raises anything else, every request of the batch gets BatchFailed.
    More than `max_waiting()` requests waiting are refused with 429 at once rather than left to time out.
    The size of every batch written goes to the group-commit histogram under `name` (by default, the
    name of `write`)."""

    def __init__(
        self,
        engine: AsyncEngine,
        write: Write[R, A],
        *,
        max_waiting: Callable[[], int],
        max_batch: int = 200,
        name: str | None = None,
    ) -> None:
        self.name = name or getattr(write, "__name__", "batch")
        self._batch_sizes = GROUP_COMMIT_BATCH.labels(self.name)
        self._engine = engine
        self._write = write
        self._max_waiting = max_waiting
        self._max_batch = max_batch
        self._waiting: list[tuple[R, asyncio.Future[A | AppError]]] = []
        self._writer: asyncio.Task[None] | None = None
        self.batches = 0  # batches written, for tests and operators
        self.retries = 0  # batches sent again (RetryBatch)

    @property
    def waiting(self) -> int:
        """Requests waiting for the next batch."""
        return len(self._waiting)

    async def submit(self, request: R) -> A:
        if len(self._waiting) >= self._max_waiting():
            raise RateLimited(1, "当前人数较多，请稍后重试", code="overloaded")
        answer: asyncio.Future[A | AppError] = asyncio.get_running_loop().create_future()
        self._waiting.append((request, answer))
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_all())
        result = await answer
        if isinstance(result, AppError):
            raise result
        return result

    async def _write_all(self) -> None:
        """Write batches while requests wait, on one connection: taking it from the pool and giving it
        back each time would add two turns of a busy event loop to every batch."""
        try:
            while self._waiting:
                try:
                    async with autocommit_connection(self._engine) as connection:
                        while self._waiting and await self._write_batch(connection, self._next_batch()):
                            pass
                except Exception as exc:  # no connection to be had: fail what waits rather than hang
                    waiting, self._waiting = self._waiting, []
                    self._fail(waiting, exc)
        finally:
            self._writer = None

    def _next_batch(self) -> list[tuple[R, asyncio.Future[A | AppError]]]:
        batch = self._waiting[: self._max_batch]
        del self._waiting[: self._max_batch]
        return batch

    async def _write_batch(
        self, connection: asyncpg.Connection, batch: list[tuple[R, asyncio.Future[A | AppError]]]
    ) -> bool:
        """Write one batch and answer its requests; False if it failed (then the connection may be
        broken: the next batch gets another)."""
        requests = [request for request, _ in batch]
        try:
            for attempt in range(1, MAX_ATTEMPTS + 1):
                try:
                    answers = await self._write(connection, requests)
                    break
                except RetryBatch:
                    self.retries += 1
                    if attempt == MAX_ATTEMPTS:
                        raise
        except BaseException as exc:
            self._fail(batch, exc)
            if not isinstance(exc, Exception):
                raise
            return False
        self.batches += 1
        self._batch_sizes.observe(len(batch))
        for (_, future), answer in zip(batch, answers, strict=True):
            if not future.done():
                future.set_result(answer)
        return True

    @staticmethod
    def _fail(batch: list[tuple[R, asyncio.Future[A | AppError]]], exc: BaseException) -> None:
        log.error("a batch of %d requests failed", len(batch), exc_info=exc)
        for _, future in batch:
            if not future.done():
                failed = BatchFailed(f"the batch of {len(batch)} failed")
                failed.__cause__ = exc
                future.set_exception(failed)
