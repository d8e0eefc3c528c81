"""JSON-lines file sink: one event per line, exactly the contract fields, size-based rotation.

Each batch is written, flushed and (by default) fsynced before the delivery loop advances the cursor, so a
crash can only repeat the tail of the file (same ids), never lose it. A crash in the middle of a write can leave
a partial last line; it is cut off at the next start, because its events are resent anyway.

Writes run on the sink's own thread, one at a time. A write that outlives ``send_timeout`` (a slow fsync on a
network mount) keeps its thread: the retry waits for it to finish and writes only what it did not, so the file
never gets two writers nor the same lines twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO, Literal

import structlog
from pydantic import Field

from bridge.journal import Record
from bridge.options import BatchOptions, RetryOptions, SinkConfigBase, Size
from bridge.sinks.base import Delivered, Health, Outcome, Retry, Sink

log = structlog.get_logger("bridge.sinks.file")


class FileSinkConfig(SinkConfigBase):
    """A JSON-lines file (``type: file``)."""

    type: Literal["file"]
    path: Path
    rotate_bytes: Size = 100 * 1024 * 1024
    keep_files: int = Field(default=5, ge=0, le=1000)
    fsync: bool = True
    batch: BatchOptions = BatchOptions(max_events=1000, max_wait=0.2)
    retry: RetryOptions = RetryOptions()


class FileSink(Sink):
    type_name = "file"
    Config = FileSinkConfig

    def __init__(self, config: Any) -> None:
        super().__init__(config.name)
        self.config: FileSinkConfig = config
        self.path = Path(config.path)
        self._fh: BinaryIO | None = None
        self._size = 0
        self._lock = asyncio.Lock()
        self._open_error: str | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"file-{config.name}")
        # The write on the thread now, and the seqs of the last completed write (both survive a send that timed
        # out). A set, not "up to seq": events held by a filter window or replayed come after higher seqs.
        self._writing: asyncio.Future[None] | None = None
        self._written: frozenset[int] = frozenset()

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    async def start(self) -> None:
        try:
            await self._run(self._open)
        except OSError as exc:
            # Not fatal: send() opens the file again and returns Retry until it can; events wait in the journal.
            self._open_error = f"cannot open {self.path}: {exc.strerror or exc}"
            log.error("cannot open the event file; events wait in the journal", sink=self.name, error=self._open_error)

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "ab+")  # noqa: SIM115 - kept open for the life of the sink
        size = fh.seek(0, os.SEEK_END)
        if size:
            fh.seek(max(0, size - 1))
            if fh.read(1) != b"\n":
                self._cut_partial_line(fh, size)
                size = fh.seek(0, os.SEEK_END)
        self._fh, self._size = fh, size
        self._open_error = None

    def _cut_partial_line(self, fh: BinaryIO, size: int) -> None:
        # Scan back for the last newline in chunks; the torn tail is at most one event long in practice.
        pos, chunk = size, 65536
        keep = 0
        while pos > 0:
            start = max(0, pos - chunk)
            fh.seek(start)
            data = fh.read(pos - start)
            nl = data.rfind(b"\n")
            if nl >= 0:
                keep = start + nl + 1
                break
            pos = start
        fh.truncate(keep)
        fh.flush()
        os.fsync(fh.fileno())
        log.warning(
            "removed a partial last line left by an interrupted write; its events are written again",
            sink=self.name,
            path=str(self.path),
            bytes_removed=size - keep,
        )

    async def close(self) -> None:
        await super().close()
        async with self._lock:
            if self._writing is not None and not self._writing.done():
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._writing)
            if self._fh is not None:
                fh, self._fh = self._fh, None
                with contextlib.suppress(OSError):
                    await self._run(fh.close)
        self._thread.shutdown(wait=False)

    async def health(self) -> Health:
        directory = self.path.parent
        if self._open_error is not None and self._fh is None:
            return Health(False, self._open_error)
        if self.path.is_dir():
            return Health(False, f"{self.path} is a directory")
        if not os.access(directory, os.W_OK):
            return Health(False, f"directory {directory} is not writable")
        return Health(True, f"writing to {self.path}")

    async def send(self, batch: Sequence[Record]) -> Outcome:
        self._check_open()
        async with self._lock:
            previous = self._writing
            if previous is not None and not previous.done():
                # The write of an attempt that timed out is still on the thread: let it finish first.
                with contextlib.suppress(Exception):
                    await asyncio.shield(previous)
            todo = [r for r in batch if r.seq not in self._written]
            if not todo:
                return Delivered()
            data = "".join([r.body + "\n" for r in todo]).encode("utf-8")
            self._writing = write = asyncio.get_running_loop().run_in_executor(
                self._thread, self._write, data, frozenset(r.seq for r in todo)
            )
            try:
                await asyncio.shield(write)
            except OSError as exc:
                # Disk full or a vanished mount: the events stay in the journal until the file can be written.
                return Retry(f"cannot write {self.path}: {exc.strerror or exc}")
        return Delivered()

    def _write(self, data: bytes, seqs: frozenset[int]) -> None:
        if self._fh is None:
            self._open()
        if self._size and self._size + len(data) > self.config.rotate_bytes:
            self._rotate()
        fh = self._fh
        assert fh is not None
        try:
            fh.write(data)
            fh.flush()
            if self.config.fsync:
                os.fsync(fh.fileno())
        except OSError:
            # Whatever part reached the file is a torn line; reopen (which cuts it) before the retry.
            self._fh = None
            fh.close()
            raise
        self._size += len(data)
        self._written = seqs

    def _rotate(self) -> None:
        assert self._fh is not None
        self._fh.close()
        self._fh = None
        keep = self.config.keep_files
        if keep == 0:
            self.path.unlink(missing_ok=True)
        else:
            for n in range(keep - 1, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{n}")
                if older.exists():
                    older.replace(self.path.with_name(f"{self.path.name}.{n + 1}"))
            self.path.replace(self.path.with_name(f"{self.path.name}.1"))
        log.info("rotated event file", sink=self.name, path=str(self.path), keep_files=keep)
        self._open()
