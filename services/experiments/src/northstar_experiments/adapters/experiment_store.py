"""Experiments in the log: one subject each (`domain.experiments.<tenant>.experiment.<key>`),
folded and appended with optimistic concurrency by the shared aggregate store."""

from __future__ import annotations

import orjson

from northstar_experiments.domain.experiment import (
    SCHEMA_VERSION,
    Experiment,
    ExperimentEvent,
    event_from_json,
    event_to_json,
    evolve,
)
from northstar_runtime.aggregates import AggregateStore
from northstar_runtime.codec import SCHEMA_HEADER, UnknownRecord
from northstar_runtime.log import LogClient


def decode_event(data: bytes, headers: dict[str, str] | None) -> ExperimentEvent:
    """An experiment event from a log message; UnknownRecord for another schema."""
    schema = (headers or {}).get(SCHEMA_HEADER, SCHEMA_VERSION)
    if schema != SCHEMA_VERSION:
        raise UnknownRecord(f"experiment event schema v{schema}")
    return event_from_json(orjson.loads(data))


class ExperimentStore(AggregateStore[ExperimentEvent, Experiment]):
    """Loads an experiment by folding its subject; appends changes with OCC."""

    def __init__(self, log: LogClient) -> None:
        super().__init__(
            log,
            service="experiments",
            aggregate="experiment",
            noun="experiment",
            exists_reason="EXPERIMENT_EXISTS",
            schema_version=SCHEMA_VERSION,
            decode=decode_event,
            encode=lambda event: orjson.dumps(event_to_json(event)),
            evolve=evolve,
        )
