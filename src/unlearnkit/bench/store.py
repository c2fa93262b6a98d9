"""The benchmark result store: one row per finished cell, in SQLite (or any SQLAlchemy URL).

A cell is one (dataset, forget spec, method, parameters, seed). Its row is written in one transaction
once the cell has finished, so an interrupted run (Ctrl-C, kill) loses at most the cell in flight, and
SQLite's journal keeps the file consistent whatever happens mid-write. ``--resume`` reads the finished
keys and skips them.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from sqlalchemy import Column, Float, Integer, MetaData, String, Table, Text, create_engine, insert, select

from unlearnkit.errors import ConfigError
from unlearnkit.files import crash_point

METADATA = MetaData()
CELLS = Table(
    "cells", METADATA,
    Column("key", String(64), primary_key=True),  # sha256 of the cell's identity (cell_key)
    Column("bench", String(200), nullable=False),
    Column("dataset", Text, nullable=False),  # DatasetEntry.key: data, model and recipe of the original
    Column("forget", String(500), nullable=False),
    Column("method", String(100), nullable=False),
    Column("params", Text, nullable=False),  # JSON
    Column("seed", Integer, nullable=False),
    Column("seconds", Float, nullable=False),
    Column("speedup", Float, nullable=False),
    Column("report", Text, nullable=False),  # the evaluate JSON (metrics, reference, gap, comparison)
    Column("notes", Text, nullable=False),  # JSON list
    Column("finished", Float, nullable=False),  # unix time
)


def cell_key(dataset_key: str, forget: str, method: str, params: dict, seed: int, metrics: dict | None = None) -> str:
    """The one identity of a cell: the planner, the store and the lookup of a split's reference all use it.

    Optional metrics (e.g. ``{"neurips": {...}}``) join the key only when asked for, so adding one reruns the cells
    and the keys of plain configs stay as they were.
    """
    extra = json.dumps(metrics, sort_keys=True) if metrics else ""
    text = json.dumps([dataset_key + extra, forget, method, params, seed], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def default_url(out: str | Path) -> str:
    return f"sqlite:///{Path(out) / 'results.sqlite'}"


class ResultStore:
    """Finished cells, keyed by :func:`cell_key`."""

    def __init__(self, url: str):
        try:
            # several Ray workers may write to one SQLite file: wait for its lock instead of failing at once
            self.engine = create_engine(url, connect_args={"timeout": 60} if url.startswith("sqlite") else {})
            METADATA.create_all(self.engine)
        except Exception as exc:  # a bad URL or an unreachable database: say which
            raise ConfigError(f"cannot open the result store {url!r} ({type(exc).__name__}: {exc}); "
                              "pass --db with a valid SQLAlchemy URL, e.g. sqlite:///results.sqlite") from exc

    def finished(self) -> set[str]:
        with self.engine.connect() as conn:
            return {row.key for row in conn.execute(select(CELLS.c.key))}

    def add(self, *, key: str, bench: str, dataset: str, forget: str, method: str, params: dict, seed: int,
            seconds: float, speedup: float, report: dict, notes: list[str]) -> None:
        """Write one finished cell, atomically."""
        with self.engine.begin() as conn:
            conn.execute(insert(CELLS).values(
                key=key, bench=bench, dataset=dataset, forget=forget, method=method,
                params=json.dumps(params, sort_keys=True), seed=seed, seconds=seconds, speedup=speedup,
                report=json.dumps(report), notes=json.dumps(notes), finished=time.time(),
            ))
            crash_point("store")  # inside the transaction, before its commit: the crash tests stop here

    def rows(self) -> list[dict]:
        """Every finished cell, with JSON columns decoded, in the order they finished."""
        with self.engine.connect() as conn:
            result = conn.execute(select(CELLS).order_by(CELLS.c.finished))
            return [{**row._mapping, "params": json.loads(row.params), "report": json.loads(row.report),
                     "notes": json.loads(row.notes)} for row in result]
