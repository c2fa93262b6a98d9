"""``ray_session(address)``: Ray for one fan-out (SISA shards, bench splits), started and stopped only if needed.

Ray is an optional extra (``pip install 'unlearnkit[ray]'``); this is the one place that imports it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from unlearnkit.errors import ConfigError


@contextmanager
def ray_session(address: str | None = None) -> Iterator:
    """Yield the ``ray`` module, initialised: an already running Ray is used as it is; otherwise
    ``ray.init(address=address)`` (a local Ray when None) starts one that is shut down on exit."""
    try:
        import ray
    except ImportError as exc:
        raise ConfigError("--executor ray needs Ray: pip install 'unlearnkit[ray]' (or pip install ray)") from exc
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()
