"""Safe file writes: every file unlearnkit writes goes through this module.

A write goes to a temporary file beside its target (``.NAME.tmp-PID-XXXXXXXX``), is flushed to disk (``fsync``) and
renamed over the target with ``os.replace``, which is atomic: at every instant the target holds either its old
content or the new one, whole, never a mix or a truncated file. The folder is synced after the rename, so the
new name survives a power cut. Readers ignore the temporary names; a crash leaves at most such a file behind,
named with the writer's PID, and the next write of the same target removes it (:func:`sweep_stale`).

An existing target is replaced only when the caller passes ``force=True`` (the commands' ``--force``);
otherwise :func:`refuse_overwrite` stops with a one-line error naming the file and the fix. Commands call it
before their long work starts, so a refusal costs nothing.

Example:
    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "result.json"
    >>> write_json_atomic(target, {"gap": 0.01}, force=False).name
    'result.json'
    >>> write_json_atomic(target, {"gap": 0.02}, force=False)
    Traceback (most recent call last):
    ...
    unlearnkit.errors.ConfigError: ... already exists; choose another path or pass --force to replace it

Multi-file artefacts (a checkpoint with its side folders) build on the same three steps: write each file under a
fresh name, then make one atomic rename the commit point; see :mod:`unlearnkit.models.checkpoint`.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
from pathlib import Path

from unlearnkit.errors import ConfigError, UnlearnError


def refuse_overwrite(path: str | Path | None, force: bool, *, flag: str = "--force",
                     error: type[UnlearnError] = ConfigError) -> None:
    """Raise ``error`` if ``path`` exists (a file or a folder) and ``force`` is false; ``None`` passes."""
    if path is None or force:
        return
    p = Path(path)
    if p.exists() or p.is_symlink():
        raise error(f"{p} already exists; choose another path or pass {flag} to replace it")


def temp_path(path: str | Path) -> Path:
    """A fresh hidden name beside ``path`` for its content while it is written: ``.NAME.tmp-PID-XXXXXXXX``, where
    PID is the writing process's (:func:`sweep_stale` removes those whose writer is gone)."""
    p = Path(path)
    return p.with_name(f".{p.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (true for this process, and when it cannot be told)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else (or cannot tell): leave its files alone
        return True
    return True


_STALE = re.compile(r"^(?:\.(?P<tmp_base>.+)\.tmp|(?P<old_base>.+)\.old)-(?P<pid>\d+)-[0-9a-f]{8}$")


def sweep_stale(path: str | Path) -> list[Path]:
    """Remove what killed writers left beside ``path``: its temporary names (``.NAME.tmp-PID-X``) and folders caught
    mid-delete (``NAME.old-PID-X``) whose process PID no longer runs. Returns what was removed.

    A process killed between writing a temporary file and renaming it (SIGKILL, a preempted machine, the OOM
    killer) cannot clean up; the next write of the same target does it here. Files of a live writer are kept, so
    concurrent writers of one folder are safe. (On a folder shared by several machines a PID names a process on
    the machine that wrote it; run one writer per target there.)
    """
    p = Path(path)
    removed = []
    try:
        entries = list(p.parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _STALE.match(entry.name)
        if match is None or (match["tmp_base"] or match["old_base"]) != p.name:
            continue
        if process_alive(int(match["pid"])):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


CRASH_ENV = "UNLEARNKIT_CRASH_AT"


def crash_point(name: str) -> None:
    """Fault injection for the crash-safety tests: when ``$UNLEARNKIT_CRASH_AT`` is ``NAME:N`` (or ``NAME:N,M,...``
    counts are per process), the N-th time this process passes ``crash_point(NAME)`` it kills itself with SIGKILL,
    as a scheduler or the OOM killer would. Points sit inside the windows a kill is most likely to damage: between
    a temporary file and its rename (``write``), inside a result-store transaction (``store``), between a
    checkpoint's weights and its sidecar (``checkpoint``). Unset (always, outside tests), it costs one lookup."""
    spec = os.environ.get(CRASH_ENV)
    if not spec:
        return
    point, _, counts = spec.partition(":")
    if point != name:
        return
    _CRASH_COUNTS[name] = _CRASH_COUNTS.get(name, 0) + 1
    if str(_CRASH_COUNTS[name]) in counts.split(","):
        os.kill(os.getpid(), signal.SIGKILL)


_CRASH_COUNTS: dict[str, int] = {}


def fresh_path(path: str | Path, tag: str = "new") -> Path:
    """A name beside ``path`` that nothing uses yet: ``NAME.TAG-XXXXXXXX``."""
    p = Path(path)
    while True:
        candidate = p.with_name(f"{p.name}.{tag}-{secrets.token_hex(4)}")
        if not candidate.exists():
            return candidate


def fsync_dir(path: str | Path) -> None:
    """Flush a folder's entries (new and renamed names) to disk; a no-op where folders cannot be opened."""
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:  # Windows
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def replace(src: str | Path, dst: str | Path) -> None:
    """Rename ``src`` to ``dst`` atomically (a file replaces ``dst``; a folder needs ``dst`` absent)."""
    os.replace(src, dst)
    fsync_dir(Path(dst).parent)


def write_bytes_atomic(path: str | Path, data: bytes, *, force: bool) -> Path:
    """Write ``data`` to ``path`` through a temporary file and an atomic rename; returns ``path``.

    Raises:
        ConfigError: ``path`` exists and ``force`` is false.
    """
    p = Path(path)
    refuse_overwrite(p, force)
    p.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(p)
    tmp = temp_path(p)
    try:
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        crash_point("write")
        replace(tmp, p)
    finally:
        tmp.unlink(missing_ok=True)
    return p


def write_text_atomic(path: str | Path, text: str, *, force: bool) -> Path:
    """:func:`write_bytes_atomic` for UTF-8 text."""
    return write_bytes_atomic(path, text.encode("utf-8"), force=force)


def write_json_atomic(path: str | Path, data, *, force: bool, indent: int | None = 2) -> Path:
    """:func:`write_bytes_atomic` for JSON (encoded before anything is written, so a value JSON cannot hold leaves
    no file behind)."""
    return write_text_atomic(path, json.dumps(data, indent=indent) + "\n", force=force)


def make_temp_dir(path: str | Path) -> Path:
    """A new empty hidden folder beside ``path`` to fill before renaming it into place with :func:`replace`."""
    tmp = temp_path(path)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(path)
    tmp.mkdir()
    return tmp


def remove_tree(path: str | Path) -> None:
    """Delete a folder (or a file) if it exists.

    A folder is first renamed to a fresh ``NAME.old-XXXXXXXX`` name, so that no reader ever finds a half-deleted
    folder under its real name; a crash mid-delete leaves only that renamed folder.
    """
    p = Path(path)
    if p.is_dir() and not p.is_symlink():
        trash = fresh_path(p, f"old-{os.getpid()}")
        replace(p, trash)
        shutil.rmtree(trash)
    elif p.exists() or p.is_symlink():
        p.unlink()
