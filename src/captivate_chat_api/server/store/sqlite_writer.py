"""SQLite's writer: one thread, group commit, one loop wake-up per batch.

Every write queued while the previous transaction ran is committed in the next one, and one failing write
fails alone: a write that raises having changed no row needs nothing undone; one that raises half-way
(rare) has the transaction undone and done again with a savepoint per write (so a write function may run
twice, its first run undone: it touches nothing but the database). The whole batch comes back to the event loop with
**one** ``call_soon_threadsafe``, in commit order: the futures are resolved in the order the writes were
committed, so their awaiting coroutines resume (and fan out) in that order. A future is resolved only
after COMMIT returned: acknowledged means committed, whatever the batch size.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
Result = tuple[asyncio.Future[Any], Any, BaseException | None]
"""A write's future and what to resolve it with (a result, or an error)."""
_WAITED = "database is locked (the write waited its whole busy timeout in line)"
MAX_BATCH = 512
"""Writes per transaction at most (bounds a transaction's duration under a burst)."""

_STOP = object()


class WriterThread:
    def __init__(self, connect: Callable[[], sqlite3.Connection], name: str = "sqlite-writer") -> None:
        self._connect = connect
        self._name = name
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        """What the thread has to do: a list of jobs (the loop's, :meth:`_flush`), a job, or ``_STOP``."""
        self._outbox: list[Any] = []
        """Jobs submitted during this turn of the event loop: handed to the thread at its end, together."""
        self._loop_thread = 0
        self._thread: threading.Thread | None = None
        self._alive = False
        """The thread runs (a flag: ``Thread.is_alive`` takes a lock, on every write)."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self.conn: sqlite3.Connection | None = None
        self.batches = 0
        """Transactions committed (for tests and benchmarks: writes / batches is the batch size)."""

    async def start(self) -> None:
        """Open the connection in the writer thread."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._alive = True
        self._thread.start()
        self.conn = await self.call(lambda conn: conn)

    def write(self, fn: Callable[..., T], *args: Any, deadline: float | None = None) -> asyncio.Future[T]:
        """Run ``fn(conn, *args)`` inside the next transaction; the future resolves after its COMMIT. Past
        ``deadline`` (``time.monotonic()``) when its turn comes, it fails at once: it waited its whole busy
        timeout in line behind writes that each waited for a lock held by another process."""
        return self._submit(True, fn, args, deadline)

    def call(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Run ``fn(conn, *args)`` in the writer thread outside any transaction (migrations, reads of an
        in-memory database, closing)."""
        return self._submit(False, fn, args)

    def _submit(
        self,
        transactional: bool,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        deadline: float | None = None,
    ) -> asyncio.Future[Any]:
        if not self._alive or self._loop is None:
            raise RuntimeError("store is not open")
        future = self._loop.create_future()
        outbox = self._outbox
        outbox.append((transactional, fn, args, future, deadline))
        if len(outbox) == 1:  # the first of this turn of the loop: hand them over at its end
            self._loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        """One hand-over (one wake-up of the thread, at most) for every write of a turn of the loop."""
        if self._outbox:
            outbox, self._outbox = self._outbox, []
            self._jobs.put(outbox)

    def submit(self, fn: Callable[..., T], *args: Any) -> concurrent.futures.Future[T]:
        """The ``Executor`` interface (``loop.run_in_executor(writer, fn, *args)``): ``fn(*args)`` in the
        writer thread, between transactions."""
        if self._thread is None or not self._thread.is_alive():
            raise RuntimeError("store is not open")
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        if threading.get_ident() == self._loop_thread:
            self._flush()  # after the writes the loop submitted before it
        self._jobs.put((None, fn, args, future, None))
        return future

    async def stop(self) -> None:
        """Finish what is queued, close the connection, end the thread."""
        if self._thread is None:
            return
        if self._thread.is_alive():
            await self.call(lambda conn: conn.close())
            self._jobs.put(_STOP)
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join)
        self._thread = None
        self.conn = None

    # the thread ----------------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._serve()
        finally:
            self._alive = False

    def _serve(self) -> None:
        conn: sqlite3.Connection | None = None
        jobs = self._jobs
        backlog: deque[Any] = deque()
        """What came and is not done yet, in order (a transaction takes at most MAX_BATCH of it)."""
        while True:
            if not backlog:
                _take(backlog, jobs.get())
            while True:  # everything queued meanwhile
                try:
                    _take(backlog, jobs.get_nowait())
                except queue.Empty:
                    break
            if backlog[0] is _STOP:
                return
            batch: list[Any] = []
            while backlog and len(batch) < MAX_BATCH and backlog[0] is not _STOP:
                batch.append(backlog.popleft())
            if conn is None:
                try:
                    conn = self.conn = self._connect()
                except BaseException as exc:  # noqa: BLE001 -- every waiter hears why, the thread ends
                    self._settle([(job[3], None, exc) for job in [*batch, *backlog] if job is not _STOP])
                    return
            try:
                results = self._execute(conn, batch)
            except BaseException as exc:  # noqa: BLE001 -- never leave a waiter without an answer, nor the thread dead
                _rollback(conn)
                results = [(job[3], None, exc) for job in batch]
            self._settle(results)

    def _execute(self, conn: sqlite3.Connection, batch: list[Any]) -> list[Result]:
        done: list[Result] = []
        pending: list[tuple[Any, Any, BaseException | None]] = []
        """The jobs of the open transaction, with what each returned or raised."""
        for job in batch:
            transactional, fn, args, future, deadline = job
            if deadline is not None and time.monotonic() > deadline:
                done.append((future, None, sqlite3.OperationalError(_WAITED)))
                continue
            if (
                transactional is None
            ):  # an executor job (:meth:`submit`): answered from here, between transactions
                if pending:
                    done += self._commit(conn, pending)
                    pending = []
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(fn(*args))
                    except BaseException as exc:  # noqa: BLE001 -- handed to the waiter
                        future.set_exception(exc)
                continue
            if not transactional:
                if pending:  # keep the order: commit what came before
                    done += self._commit(conn, pending)
                    pending = []
                try:
                    done.append((future, fn(conn, *args), None))
                except BaseException as exc:  # noqa: BLE001 -- handed to the waiter
                    done.append((future, None, exc))
                continue
            if not pending:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                except BaseException as exc:  # noqa: BLE001 -- handed to the waiter
                    done.append((future, None, exc))
                    continue
            changes = conn.total_changes
            try:
                pending.append((job, fn(conn, *args), None))
            except BaseException as exc:  # noqa: BLE001 -- handed to the waiter
                if not conn.in_transaction:  # SQLite rolled the whole transaction back (disk full, I/O error)
                    done += [(j[3], None, exc) for j, _, _ in pending] + [(future, None, exc)]
                    pending = []
                elif conn.total_changes == changes:  # it wrote nothing: it fails alone
                    pending.append((job, None, exc))
                else:  # it failed half-way: undo the transaction, and do it again a savepoint per write
                    _rollback(conn)
                    done_now, pending = self._careful(conn, [j for j, _, _ in pending] + [job])
                    done += done_now
        if pending:
            done += self._commit(conn, pending)
        return done

    def _careful(
        self, conn: sqlite3.Connection, jobs: list[Any]
    ) -> tuple[list[Result], list[tuple[Any, Any, BaseException | None]]]:
        """Run ``jobs`` again in a new transaction, each in a savepoint of its own, so that one failing
        write rolls back alone (the rare path: a write that raised after it had changed rows). Returns the
        jobs already answered (failed) and those of the open transaction."""
        try:
            conn.execute("BEGIN IMMEDIATE")
        except BaseException as exc:  # noqa: BLE001 -- handed to the waiters
            return [(job[3], None, exc) for job in jobs], []
        pending: list[tuple[Any, Any, BaseException | None]] = []
        for job in jobs:
            _, fn, args, future, _ = job
            try:
                conn.execute("SAVEPOINT write")
                result = fn(conn, *args)
            except BaseException as exc:  # noqa: BLE001 -- handed to the waiter
                try:
                    conn.execute("ROLLBACK TO write")
                    conn.execute("RELEASE write")
                except sqlite3.Error:
                    # SQLite rolled the whole transaction back itself: nothing of it is durable
                    _rollback(conn)
                    return [(j[3], None, exc) for j, _, _ in pending] + [(future, None, exc)], []
                pending.append((job, None, exc))
            else:
                conn.execute("RELEASE write")
                pending.append((job, result, None))
        return [], pending

    def _commit(
        self, conn: sqlite3.Connection, pending: list[tuple[Any, Any, BaseException | None]]
    ) -> list[Result]:
        try:
            conn.execute("COMMIT")
        except BaseException as exc:  # noqa: BLE001 -- nothing of the batch is durable: every write of it fails
            _rollback(conn)
            return [(job[3], None, exc) for job, _, _ in pending]
        self.batches += 1
        return [(job[3], result, error) for job, result, error in pending]

    def _settle(self, results: list[Result]) -> None:
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(_resolve, results)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass


def _take(backlog: deque[Any], item: Any) -> None:
    if type(item) is list:
        backlog.extend(item)
    else:
        backlog.append(item)


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass


def _resolve(results: list[Result]) -> None:
    for future, result, error in results:
        if future.cancelled():
            continue
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)
