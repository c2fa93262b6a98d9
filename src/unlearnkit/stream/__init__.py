"""Continual unlearning: a stream of deletion requests applied to a model in turn.

Deletion requests arrive over months, one data subject at a time. This package reads them (a JSONL file, one request
per line, each checked on its own so that one bad line never stops the others: :mod:`unlearnkit.stream.requests`),
resolves them to sample ids against the data a checkpoint was trained on, and generates realistic streams for
experiments. The engine (:mod:`unlearnkit.stream.engine`, :func:`run_stream`) applies a stream with a method and a
policy, keeps every model version with its lineage, verifies against retraining, catches reversals and falls back to
exact retraining when the model drifts; it resumes after a kill without applying a request twice, so a
deletion-request service can drive it. :mod:`unlearnkit.stream.report` draws the accuracy trajectory.
"""

from unlearnkit.stream.engine import StreamResult, StreamStep, load_result, parse_policy, read_manifest, run_stream
from unlearnkit.stream.requests import (
    Request,
    RequestProblem,
    ResolvedRequest,
    make_requests,
    parse_requests,
    read_requests,
    resolve_requests,
    write_requests,
)

__all__ = [
    "Request", "RequestProblem", "ResolvedRequest", "make_requests", "parse_requests", "read_requests",
    "resolve_requests", "write_requests", "StreamResult", "StreamStep", "load_result", "parse_policy",
    "read_manifest", "run_stream",
]
