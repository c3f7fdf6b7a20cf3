"""Bulk import of JSON Lines, CSV or Parquet files: batched, concurrent, resumable."""

from __future__ import annotations

import asyncio
import csv
import gzip
import hashlib
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from northstar.ingest.v1 import ingest_pb2
from northstar_client.clients import MAX_TRACK_EVENTS, AsyncIngestClient
from northstar_client.config import ClientConfig
from northstar_client.errors import NorthstarClientError
from northstar_client.events import to_timestamp

__all__ = [
    "Checkpoint",
    "FileFormat",
    "ImportFailed",
    "ImportSummary",
    "count_records",
    "derive_event_id",
    "detect_format",
    "read_records",
    "run_import",
]

FileFormat = Literal["jsonl", "csv", "parquet"]
_EVENT_FIELDS = ("event_id", "event", "user_id", "org_id", "session_id")
_TIME_FIELDS = ("timestamp", "timestamp_us", "time", "ts")
CHECKPOINT_VERSION = 1


class ImportFailed(NorthstarClientError):
    """The import cannot start or had to stop; the checkpoint says where to resume."""


@dataclass(frozen=True, slots=True)
class LocalRejection:
    """A record that could not be turned into an event at all."""

    field: str
    rule: str
    description: str


@dataclass(slots=True)
class Record:
    """One input record: its number in the file, the event or why there is none."""

    number: int
    event: ingest_pb2.Event | None
    raw: dict[str, Any]
    rejection: LocalRejection | None = None


@dataclass(slots=True)
class Checkpoint:
    """How far an import got: the records answered, in file order, and their outcome."""

    source: str
    records: int = 0
    accepted: int = 0
    duplicate: int = 0
    rejected: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    rejects_offset: int = 0
    complete: bool = False

    def save(self, path: Path) -> None:
        """Write atomically: a reader (or a resumed run) sees the old or the new one."""
        tmp = path.with_name(path.name + ".tmp")
        data = {"version": CHECKPOINT_VERSION, **{k: getattr(self, k) for k in self.__slots__}}
        with tmp.open("w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> Checkpoint | None:
        """The checkpoint at `path`, or None when there is none."""
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            raise ImportFailed(f"checkpoint {path} is unreadable: {e}") from e
        if data.pop("version", None) != CHECKPOINT_VERSION:
            raise ImportFailed(f"checkpoint {path} has an unknown version")
        return cls(**data)


@dataclass(slots=True)
class ImportSummary:
    """The outcome of an import, including the records answered by earlier runs."""

    source: str
    records: int
    accepted: int
    duplicate: int
    rejected: int
    reasons: dict[str, int]
    resumed_from: int
    elapsed_seconds: float
    rejects_path: Path | None
    checkpoint_path: Path


def detect_format(path: Path) -> FileFormat:
    """From the file name: .jsonl / .ndjson / .json, .csv, .parquet / .pq."""
    name = path.name.lower()
    if name.endswith((".jsonl", ".ndjson", ".json", ".jsonl.gz")):
        return "jsonl"
    if name.endswith(".csv"):
        return "csv"
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    raise ImportFailed(f"cannot tell the format of {path.name}; pass --format jsonl|csv|parquet")


def derive_event_id(source: str, number: int) -> str:
    """A stable id for a record without one: the same file and record give the same id."""
    digest = hashlib.blake2b(f"{source}\x1f{number}".encode(), digest_size=16).hexdigest()
    return f"imp-{digest}"


def count_records(path: Path, fmt: FileFormat) -> int | None:
    """How many records the file holds (for the progress bar); None when unknown."""
    if fmt == "parquet":
        pq = _parquet()
        return int(pq.ParquetFile(path).metadata.num_rows)
    if path.name.endswith(".gz"):
        return None
    lines = 0
    last = b"\n"
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    if last != b"\n":
        lines += 1
    return max(0, lines - 1) if fmt == "csv" else lines


def read_records(path: Path, fmt: FileFormat, *, source: str, skip: int = 0) -> Iterator[Record]:
    """The file's records from number `skip` on (0-based), each converted to an event."""
    for number, raw in enumerate(_raw_records(path, fmt)):
        if number < skip:
            continue
        if isinstance(raw, LocalRejection):
            yield Record(number, None, {}, raw)
        else:
            yield _to_record(raw, number, source)


def _lines(path: Path) -> Iterator[str]:
    if path.name.endswith(".gz"):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            yield from f
    else:
        with path.open(encoding="utf-8") as f:
            yield from f


def _raw_records(path: Path, fmt: FileFormat) -> Iterator[dict[str, Any] | LocalRejection]:
    if fmt == "jsonl":
        for line in _lines(path):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except ValueError as e:
                yield LocalRejection("record", "json", f"not valid JSON: {e}")
                continue
            if isinstance(value, dict):
                yield value
            else:
                yield LocalRejection("record", "json", "a line must be a JSON object")
    elif fmt == "csv":
        with path.open(newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                yield {k: _csv_value(k, v) for k, v in row.items() if k and v not in (None, "")}
    else:
        pq = _parquet()
        for batch in pq.ParquetFile(path).iter_batches(batch_size=10_000):
            for row in batch.to_pylist():
                yield {k: v for k, v in row.items() if v is not None}


def _csv_value(column: str, text: str) -> Any:
    if column in _EVENT_FIELDS or column == "timestamp":
        return text
    if column == "properties":
        return text
    # CSV has no types: numbers and booleans are read as such, everything else as text.
    if text in ("true", "false") or _looks_numeric(text):
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


def _looks_numeric(text: str) -> bool:
    return bool(text) and (text[0].isdigit() or (text[0] == "-" and text[1:2].isdigit()))


def _to_record(raw: dict[str, Any], number: int, source: str) -> Record:
    try:
        event = _to_event(raw)
    except ValueError as e:
        field_name, _, description = str(e).partition(": ")
        return Record(number, None, raw, LocalRejection(field_name, "format", description))
    if not event.event_id:
        event.event_id = derive_event_id(source, number)
    return Record(number, event, raw)


def _to_event(raw: dict[str, Any]) -> ingest_pb2.Event:
    event = ingest_pb2.Event()
    properties: dict[str, Any] = {}
    for key, value in raw.items():
        if key in _EVENT_FIELDS:
            setattr(event, key, str(value))
        elif key == "name" and "event" not in raw:
            event.event = str(value)
        elif key in _TIME_FIELDS:
            event.timestamp.CopyFrom(_timestamp(key, value))
        elif key == "properties":
            loaded = value
            if isinstance(value, str):
                try:
                    loaded = json.loads(value)
                except ValueError as e:
                    raise ValueError(f"properties: not valid JSON: {e}") from e
            if not isinstance(loaded, dict):
                raise ValueError("properties: must be a JSON object")
            properties.update(loaded)
        else:
            properties[key] = value
    if properties:
        event.properties_json = json.dumps(
            properties, separators=(",", ":"), ensure_ascii=False, default=str
        )
    return event


def _timestamp(key: str, value: Any) -> Any:
    try:
        if key == "timestamp_us":
            return to_timestamp(int(value) / 1_000_000)
        if isinstance(value, datetime):
            return to_timestamp(value)
        if isinstance(value, int | float):
            return to_timestamp(float(value))
        text = str(value).strip()
        if text.replace(".", "", 1).isdigit():
            return to_timestamp(float(text))
        return to_timestamp(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except (ValueError, OverflowError) as e:
        raise ValueError(f"timestamp: cannot read {value!r} as a time: {e}") from e


def _absolute(path: Path) -> Path:
    return path.resolve()


def _parquet() -> Any:
    try:
        import pyarrow.parquet as pq  # type: ignore[import-untyped]  # noqa: PLC0415
    except ImportError as e:
        raise ImportFailed("Parquet needs pyarrow: pip install 'northstar-client[parquet]'") from e
    return pq


@dataclass(slots=True)
class _BatchResult:
    records: list[Record]
    accepted: int = 0
    duplicate: int = 0
    rejects: list[dict[str, Any]] = field(default_factory=list)


async def run_import(
    path: Path,
    *,
    config: ClientConfig,
    fmt: FileFormat | None = None,
    batch_size: int = 500,
    concurrency: int = 4,
    checkpoint_path: Path | None = None,
    rejects_path: Path | None = None,
    historical_import: bool = False,
    restart: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> ImportSummary:
    """Send every record of `path`, resuming from the checkpoint of an interrupted run.

    `on_progress(records, events)` is called as batches are answered. The checkpoint
    advances only over a prefix of the file whose every record was answered (ACCEPTED,
    DUPLICATE or REJECTED), after their rejects were written, so a resumed run re-sends
    at most the batches in flight at the interruption, which are answered DUPLICATE.
    """
    if not 1 <= batch_size <= MAX_TRACK_EVENTS:
        raise ImportFailed(f"--batch-size must be 1 to {MAX_TRACK_EVENTS}")
    if concurrency < 1:
        raise ImportFailed("--concurrency must be at least 1")
    path = _absolute(path)
    if not path.is_file():
        raise ImportFailed(f"{path} is not a file")
    fmt = fmt or detect_format(path)
    source = str(path)
    checkpoint_path = checkpoint_path or path.with_name(path.name + ".checkpoint.json")
    rejects_path = rejects_path or path.with_name(path.name + ".rejects.jsonl")

    checkpoint = None if restart else Checkpoint.load(checkpoint_path)
    if checkpoint is not None and checkpoint.source != source:
        raise ImportFailed(
            f"checkpoint {checkpoint_path} belongs to {checkpoint.source};"
            " pass --restart or another --checkpoint"
        )
    checkpoint = checkpoint or Checkpoint(source=source)
    resumed_from = checkpoint.records
    started = time.monotonic()
    if not checkpoint.complete:
        await _send_all(
            path,
            fmt,
            checkpoint,
            checkpoint_path=checkpoint_path,
            rejects_path=rejects_path,
            config=config,
            batch_size=batch_size,
            concurrency=concurrency,
            historical_import=historical_import,
            on_progress=on_progress,
        )
    return ImportSummary(
        source=source,
        records=checkpoint.records,
        accepted=checkpoint.accepted,
        duplicate=checkpoint.duplicate,
        rejected=checkpoint.rejected,
        reasons=dict(checkpoint.reasons),
        resumed_from=resumed_from,
        elapsed_seconds=time.monotonic() - started,
        rejects_path=rejects_path if checkpoint.rejected else None,
        checkpoint_path=checkpoint_path,
    )


async def _send_all(
    path: Path,
    fmt: FileFormat,
    checkpoint: Checkpoint,
    *,
    checkpoint_path: Path,
    rejects_path: Path,
    config: ClientConfig,
    batch_size: int,
    concurrency: int,
    historical_import: bool,
    on_progress: Callable[[int, int], None] | None,
) -> None:
    # Rejects past the checkpoint were written by batches that will be sent again.
    with rejects_path.open("ab") as rejects_file:
        rejects_file.truncate(checkpoint.rejects_offset)
    done: dict[int, _BatchResult] = {}
    next_to_commit = 0
    slots = asyncio.Semaphore(concurrency)
    reasons = Counter(checkpoint.reasons)

    def commit() -> None:
        """Fold the answered batches that continue the prefix into the checkpoint."""
        nonlocal next_to_commit
        if next_to_commit not in done:
            return
        with rejects_path.open("a", encoding="utf-8") as rejects_file:
            while next_to_commit in done:
                result = done.pop(next_to_commit)
                for reject in result.rejects:
                    rejects_file.write(json.dumps(reject, ensure_ascii=False, default=str) + "\n")
                    reasons[f"{reject['field']}: {reject['rule']}"] += 1
                checkpoint.records += len(result.records)
                checkpoint.accepted += result.accepted
                checkpoint.duplicate += result.duplicate
                checkpoint.rejected += len(result.rejects)
                next_to_commit += 1
            rejects_file.flush()
            os.fsync(rejects_file.fileno())
            checkpoint.rejects_offset = rejects_file.tell()
        checkpoint.reasons = dict(reasons)
        checkpoint.save(checkpoint_path)

    async with AsyncIngestClient(config) as client:

        async def send(index: int, records: list[Record]) -> None:
            try:
                result = await _send_batch(client, records, historical_import)
            finally:
                slots.release()
            done[index] = result
            commit()
            if on_progress is not None:
                on_progress(len(records), sum(1 for r in records if r.event is not None))

        try:
            async with asyncio.TaskGroup() as group:
                batch: list[Record] = []
                index = 0
                records = read_records(path, fmt, source=checkpoint.source, skip=checkpoint.records)
                for record in records:
                    batch.append(record)
                    if len(batch) == batch_size:
                        await slots.acquire()
                        group.create_task(send(index, batch))
                        index += 1
                        batch = []
                if batch:
                    await slots.acquire()
                    group.create_task(send(index, batch))
        except* ImportFailed as group_error:
            raise group_error.exceptions[0] from None
    checkpoint.complete = True
    checkpoint.save(checkpoint_path)


async def _send_batch(
    client: AsyncIngestClient, records: list[Record], historical_import: bool
) -> _BatchResult:
    result = _BatchResult(records)
    for r in records:
        if r.rejection is not None:
            result.rejects.append(
                _reject(r, "", r.rejection.field, r.rejection.rule, r.rejection.description)
            )
    sendable = [r for r in records if r.event is not None]
    if not sendable:
        return result
    events = [r.event for r in sendable if r.event is not None]
    try:
        response = await client.track(events, historical_import=historical_import)
    except NorthstarClientError as e:
        raise ImportFailed(
            f"a batch of records {records[0].number}..{records[-1].number} failed: {e};"
            " run the same command again to resume"
        ) from e
    result.accepted = response.accepted
    result.duplicate = response.duplicate
    for r, answer in zip(sendable, response.results, strict=True):
        if answer.status == ingest_pb2.EVENT_STATUS_REJECTED:
            rej = answer.rejection
            result.rejects.append(_reject(r, answer.event_id, rej.field, rej.rule, rej.description))
    result.rejects.sort(key=lambda x: int(x["record"]))
    return result


def _reject(
    r: Record, event_id: str, field_name: str, rule: str, description: str
) -> dict[str, Any]:
    return {
        "record": r.number,
        "event_id": event_id or (r.event.event_id if r.event is not None else ""),
        "field": field_name,
        "rule": rule,
        "description": description,
        "input": r.raw,
    }
