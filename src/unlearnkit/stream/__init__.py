"""Continual unlearning: a stream of deletion requests applied to a model in turn.

Deletion requests arrive over months, one data subject at a time. This package reads them (a JSONL file, one request
per line, each checked on its own so that one bad line never stops the others: :mod:`unlearnkit.stream.requests`),
resolves them to sample ids against the data a checkpoint was trained on, and generates realistic streams for
experiments. The engine that applies a stream with a method and a policy, keeps every model version and falls back
to exact retraining when the model drifts is the next part of this package; a deletion-request service will drive
it.
"""

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
    "resolve_requests", "write_requests",
]
