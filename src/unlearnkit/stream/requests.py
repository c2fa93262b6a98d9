"""Deletion requests: a JSONL file, one request per line, read and checked line by line.

Each line is a JSON object ``{"request_id": "...", "subjects": [17, 42]}`` or ``{"request_id": "...", "ids":
[3, 9]}``, with an optional ``"received_at"`` (an ISO-8601 time, kept as text). Blank lines and lines starting with
``#`` are skipped. A line that cannot be used is reported as a :class:`RequestProblem` (its line number, request id
when known, and what is wrong) and the others go on:

- malformed JSON, not an object, a missing or empty ``request_id``, both or neither of ``subjects`` / ``ids``, an
  empty list, entries that are not integers, unknown keys;
- a ``request_id`` an earlier line already used (the later line is the one refused);
- after :func:`resolve_requests` against the training data: ids or subjects the data does not have, and requests
  whose samples an earlier request (or the checkpoint's history) already removed. A request whose samples were only
  partly removed keeps the rest, with a note.

    >>> lines = ['{"request_id": "r1", "subjects": [3]}', '{"request_id": "r1", "ids": [5]}']
    >>> requests, problems = parse_requests(lines)
    >>> [r.request_id for r in requests], problems[0].message
    (['r1'], "request_id 'r1' was already used on line 1; give every request its own id")
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import torch

from unlearnkit.data.dataset import IndexedDataset
from unlearnkit.errors import ConfigError, DataError
from unlearnkit.files import write_text_atomic

KEYS = ("request_id", "subjects", "ids", "received_at")


@dataclass(frozen=True)
class Request:
    """One deletion request as the file gives it: its id, the subjects or the sample ids it names, and its line."""

    request_id: str
    line: int
    subjects: tuple[int, ...] = ()
    ids: tuple[int, ...] = ()
    received_at: str | None = None

    def to_json(self) -> dict:
        out: dict = {"request_id": self.request_id}
        out["subjects" if self.subjects else "ids"] = list(self.subjects or self.ids)
        if self.received_at is not None:
            out["received_at"] = self.received_at
        return out


@dataclass(frozen=True)
class RequestProblem:
    """Why a line (or a request) cannot be applied; the others are not affected."""

    line: int
    request_id: str | None
    message: str

    def to_json(self) -> dict:
        return {"line": self.line, "request_id": self.request_id, "message": self.message}

    def __str__(self) -> str:
        who = f" ({self.request_id})" if self.request_id is not None else ""
        return f"line {self.line}{who}: {self.message}"


@dataclass(frozen=True)
class ResolvedRequest:
    """A request with the sample ids it removes from the data (sorted; already removed ones dropped)."""

    request: Request
    sample_ids: tuple[int, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def request_id(self) -> str:
        return self.request.request_id


def _int_list(value, key: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not value:
        raise ValueError(f"{key!r} must be a non-empty list of integers")
    if any(isinstance(v, bool) or not isinstance(v, int) for v in value):
        raise ValueError(f"{key!r} must hold integers only, got {value[:5]!r}")
    return tuple(value)


def _parse_line(text: str, line: int) -> Request:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc.msg} at column {exc.colno}); write one JSON object per line") from None
    if not isinstance(obj, dict):
        raise ValueError("a request must be a JSON object such as {\"request_id\": \"r1\", \"subjects\": [17]}")
    unknown = sorted(set(obj) - set(KEYS))
    if unknown:
        raise ValueError(f"unknown key(s) {unknown}; a request has {', '.join(KEYS)}")
    request_id = obj.get("request_id")
    if not isinstance(request_id, str) or not request_id.strip():
        raise ValueError("missing request_id; give every request a non-empty string id")
    has_subjects, has_ids = "subjects" in obj, "ids" in obj
    if has_subjects == has_ids:
        raise ValueError("give exactly one of \"subjects\" or \"ids\"")
    received_at = obj.get("received_at")
    if received_at is not None and not isinstance(received_at, str):
        raise ValueError("received_at must be a string (an ISO-8601 time)")
    key = "subjects" if has_subjects else "ids"
    values = _int_list(obj[key], key)
    return Request(request_id, line, subjects=values if has_subjects else (), ids=values if has_ids else (),
                   received_at=received_at)


def parse_requests(lines: Iterable[str]) -> tuple[list[Request], list[RequestProblem]]:
    """The usable requests of ``lines`` in order, and one problem per line that is not (see the module docstring)."""
    requests: list[Request] = []
    problems: list[RequestProblem] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(lines, 1):
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        try:
            request = _parse_line(text, number)
        except ValueError as exc:
            rid = None
            try:
                maybe = json.loads(text)
                rid = maybe.get("request_id") if isinstance(maybe, dict) and isinstance(maybe.get("request_id"),
                                                                                         str) else None
            except json.JSONDecodeError:
                pass
            problems.append(RequestProblem(number, rid, str(exc)))
            continue
        if request.request_id in seen:
            problems.append(RequestProblem(number, request.request_id, f"request_id {request.request_id!r} was "
                                           f"already used on line {seen[request.request_id]}; give every request "
                                           "its own id"))
            continue
        seen[request.request_id] = number
        requests.append(request)
    return requests, problems


def read_requests(path: str | Path) -> tuple[list[Request], list[RequestProblem]]:
    """:func:`parse_requests` on a JSONL file; a missing or unreadable file is a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"requests file {str(path)!r} does not exist; give a JSONL file with one request per line "
                          "(`unlearn requests make` writes one)")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read requests file {str(path)!r} ({type(exc).__name__}); give a UTF-8 JSONL "
                          "file") from exc
    return parse_requests(text.splitlines())


def resolve_requests(requests: list[Request], train: IndexedDataset, *, removed: Iterable[int] = ()
                     ) -> tuple[list[ResolvedRequest], list[RequestProblem]]:
    """Each request's sample ids in ``train``, in request order; ``removed`` are ids already forgotten (a
    checkpoint's history). Unknown ids or subjects, and requests left with nothing to remove, are problems."""
    gone = {int(i) for i in removed}
    resolved: list[ResolvedRequest] = []
    problems: list[RequestProblem] = []
    known_ids = set(train.ids.tolist())
    for request in requests:
        if request.subjects:
            if train.subjects is None:
                problems.append(RequestProblem(request.line, request.request_id, "the data has no subjects; load it "
                                               "with --subjects N, or name sample ids"))
                continue
            subjects = torch.tensor(request.subjects, dtype=torch.int64)
            missing = subjects[~torch.isin(subjects, train.subjects)].tolist()
            if missing:
                problems.append(RequestProblem(request.line, request.request_id, f"unknown subject(s) {missing[:5]}; "
                                               "list only subjects the training data has"))
                continue
            ids = train.ids[torch.isin(train.subjects, subjects)].tolist()
        else:
            missing = [i for i in request.ids if i not in known_ids and i not in gone]
            if missing:
                problems.append(RequestProblem(request.line, request.request_id, f"unknown id(s) {missing[:5]}; list "
                                               "only training-set ids (test-split ids cannot be forgotten)"))
                continue
            ids = list(request.ids)
        wanted = sorted(set(int(i) for i in ids))
        fresh = [i for i in wanted if i not in gone]
        if not fresh:
            problems.append(RequestProblem(request.line, request.request_id, "every sample of this request was already "
                                           "forgotten; nothing to do"))
            continue
        notes = () if len(fresh) == len(wanted) else (
            f"{len(wanted) - len(fresh)} of its {len(wanted)} samples were already forgotten",)
        gone.update(fresh)
        resolved.append(ResolvedRequest(request, tuple(fresh), notes))
    return resolved, problems


def make_requests(train: IndexedDataset, count: int, *, seed: int = 0, start: datetime | None = None,
                  mean_gap_hours: float = 72.0) -> list[Request]:
    """A realistic stream for experiments: ``count`` requests, each for one distinct data subject drawn at random
    (seeded), received at increasing times (exponential gaps with the given mean, from ``start``)."""
    if train.subjects is None:
        raise DataError("the data has no subjects; load it with --subjects N to make subject requests")
    subjects = np.unique(train.subjects.numpy())
    if not 1 <= count <= len(subjects):
        raise ConfigError(f"--count must lie in [1, {len(subjects)}] (the data's subjects), got {count}")
    rng = np.random.default_rng(seed)
    chosen = rng.permutation(subjects)[:count]
    when = start or datetime(2026, 1, 1, tzinfo=UTC)
    out = []
    for k, subject in enumerate(chosen):
        when = when + timedelta(hours=float(rng.exponential(mean_gap_hours)))
        out.append(Request(f"req-{k + 1:04d}", k + 1, subjects=(int(subject),),
                           received_at=when.isoformat(timespec="seconds")))
    return out


def write_requests(path: str | Path, requests: list[Request], *, force: bool = False) -> Path:
    """Write ``requests`` as JSONL, atomically (a crash leaves the old file or none)."""
    text = "".join(json.dumps(r.to_json()) + "\n" for r in requests)
    return write_text_atomic(path, text, force=force)
