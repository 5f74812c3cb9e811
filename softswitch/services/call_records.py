"""Call records: one per call attempt, in the store (batched) and as one JSON line each in
calls.cdr_file, appended in a worker thread, never on the event loop."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

from .batching import GroupWriter
from .model import CALL_RECORD_FIELDS, CallRecord
from .repositories import CallRecordRepository

log = logging.getLogger(__name__)


class CallRecords:
    def __init__(self, repository: CallRecordRepository, cdr_file: Path | None, *,
                 window: float = 0.05) -> None:
        self._repository = repository
        self.cdr_file = cdr_file  # None: the store only
        self._writer: GroupWriter[CallRecord] = GroupWriter(
            self._write, window=window, what="call records")

    def record(self, record: CallRecord) -> None:
        """Queue a finished call attempt; written within a window, off the caller's path."""
        self._writer.add(record)

    async def drain(self) -> None:
        await self._writer.drain()

    async def _write(self, batch: list[CallRecord]) -> None:
        try:
            await self._repository.add_call_records(batch)
        finally:  # the file keeps the records even when the store could not
            if self.cdr_file is not None:
                lines = "".join(json.dumps({name: getattr(record, name)
                                            for name in CALL_RECORD_FIELDS},
                                           ensure_ascii=False) + "\n" for record in batch)
                try:
                    await asyncio.to_thread(_append, self.cdr_file, lines)
                except OSError as error:
                    log.error("appending %d call records to %s failed: %s", len(batch),
                              self.cdr_file, error)


def _append(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as cdr:
        cdr.write(text)
