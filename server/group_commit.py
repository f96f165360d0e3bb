"""Group commit: the requests that arrive while one batch is being written go together in the next."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.errors import AppError, RateLimited

log = logging.getLogger("group_commit")
R = TypeVar("R")  # a request
A = TypeVar("A")  # an answer

Write = Callable[[AsyncSession, Sequence[R]], Awaitable[Sequence[A | AppError]]]


class BatchFailed(Exception):
    """The transaction of a batch failed: nothing of it was written (the cause is chained)."""


class RetryBatch(Exception):
    """Raised by `write` when what it read was overtaken: the transaction is rolled back and the batch
    written again in a new one (up to MAX_ATTEMPTS times in all)."""


MAX_ATTEMPTS = 3


class GroupCommit(Generic[R, A]):
    """Writes requests in batches, one transaction per batch and one batch at a time in this process.

    A request that finds nothing being written goes at once, so a quiet service adds no wait. In a rush,
    each transaction carries everything that queued while the previous one ran (up to `max_batch`): the
    round trips, the BEGIN and the COMMIT are paid once per batch instead of once per request.

    `write(session, batch)` returns one answer per request, in order: its result, or the AppError that
    request alone caused (the rest of the batch still commits). Answers are given once the transaction
    has committed. `write` may raise RetryBatch to have the batch written again in a new transaction.
    If `write` or the commit raises anything else, every request of the batch gets BatchFailed.
    More than `max_waiting()` requests waiting are refused with 429 at once rather than left to time out."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        write: Write[R, A],
        *,
        max_waiting: Callable[[], int],
        max_batch: int = 200,
    ) -> None:
        self._sessions = sessions
        self._write = write
        self._max_waiting = max_waiting
        self._max_batch = max_batch
        self._waiting: list[tuple[R, asyncio.Future[A | AppError]]] = []
        self._writer: asyncio.Task[None] | None = None
        self.batches = 0  # transactions committed, for tests and operators
        self.retries = 0  # transactions rolled back to be written again (RetryBatch)

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
        try:
            while self._waiting:
                batch = self._waiting[: self._max_batch]
                del self._waiting[: self._max_batch]
                await self._write_batch(batch)
        finally:
            self._writer = None

    async def _write_batch(self, batch: list[tuple[R, asyncio.Future[A | AppError]]]) -> None:
        requests = [request for request, _ in batch]
        try:
            for attempt in range(1, MAX_ATTEMPTS + 1):
                try:
                    async with self._sessions() as session, session.begin():
                        answers = await self._write(session, requests)
                    break
                except RetryBatch:
                    self.retries += 1
                    if attempt == MAX_ATTEMPTS:
                        raise
            self.batches += 1
        except BaseException as exc:
            log.exception("a batch of %d requests failed", len(batch))
            for _, future in batch:
                if not future.done():
                    failed = BatchFailed(f"the batch of {len(batch)} failed")
                    failed.__cause__ = exc
                    future.set_exception(failed)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, future), answer in zip(batch, answers, strict=True):
            if not future.done():
                future.set_result(answer)
