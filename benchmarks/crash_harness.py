"""Crash injection: kill real `unlearn` commands with SIGKILL at seeded random moments, resume, compare to clean runs.

    OMP_NUM_THREADS=1 python benchmarks/crash_harness.py --kills 60 --seed 0 [--work DIR] [--scenario NAME ...]

Every scenario is one long command of the CLI, run as a subprocess exactly as a user runs it:
- ``bench``, ``bench-neurips``, ``bench-ray``: ``unlearn bench CONFIG --out DIR --resume`` on a small digits grid
  (plain, with the NeurIPS-2023 metric, and with ``--executor ray``);
- ``tune``: ``unlearn tune ... --trials 4 --resume``;
- ``neurips``: ``unlearn neurips ... --save FILE --force`` (its reference models cached in the run folder);
- ``sisa``: ``unlearn train --sisa shards=3,slices=3 --force``;
- ``stream``: ``unlearn stream ... --policy batch:2 --verify-every 2 --out out --resume`` (six id requests).
Each is the command a user reruns after a kill (README, "Interrupted runs"): ``--resume`` continues a bench, a
study or a stream; ``--force`` lets a rerun replace the result a kill may have left complete, while the reference
cache and ``OUT.sisa.partial/`` keep the finished work.

For each scenario the command first runs once to the end in a folder of its own (the clean run). Then, in fresh
folders ("rounds"), it is started again and again, each run killed with SIGKILL, until a run ends by itself or
the round's kills are spent; then it is run once more to the end. A kill comes either after a random delay (up to
the clean run's duration; the whole process group dies, Ray included, as on a preempted machine) or, for the
local commands, from inside the process at a crash point (``unlearnkit.files.crash_point``: between a temporary
file and its rename, inside a result-store transaction, between a checkpoint's weights and its sidecar) on a
random pass. A round passes when
- no run refused: every run that was not killed exited 0;
- the final result equals the clean run's (bench: every stored cell's report and notes, exactly; timing columns
  aside; tune: the number of finished trials, none running, the defaults trial's value; neurips: the saved JSON
  without its seconds; sisa: the weights' and every slice file's sha256; stream: every version's requests and
  weights sha256, the verification gaps and reversals);
- nothing temporary is left in the folder (``.tmp-``, ``.old-``, ``.new-`` names, ``.sisa.partial``, SQLite
  journals).

Prints one line per scenario (kills, rounds, refusals, unequal results, leftovers) and the totals; exits 1 if any
round failed. ``tests/test_crash.py`` runs the same code with a few kills per command.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

CRASH_POINTS = ("write", "store", "checkpoint")
TIMING_KEYS = {"seconds", "unlearn_seconds", "speedup", "finished", "train_seconds"}
LEFTOVER = re.compile(r"\.tmp-|\.old-|\.new-|\.sisa\.partial$|-journal$|-wal$")

BENCH_CONFIG = """\
[bench]
name = "crash"
seeds = [0]
{metrics}
[[datasets]]
name = "digits"
model = "mlp"
recipe = {{ epochs = 4 }}
forget = ["random:0.1", "class:3"]

[methods]
finetune = {{}}
gradient-ascent = {{}}
"""


def unlearn_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "unlearnkit.cli", *args]


def environment(crash_at: str | None = None) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0",
           "RAY_AUTH_MODE": "disabled", "RAY_DEDUP_LOGS": "0"}
    env.pop("UNLEARNKIT_CRASH_AT", None)
    if crash_at:
        env["UNLEARNKIT_CRASH_AT"] = crash_at
    return env


@dataclass
class Outcome:
    rc: int
    seconds: float
    killed: bool  # ended by SIGKILL (a timer kill or a crash point)
    tail: str  # the last lines of stderr


def run_command(argv: list[str], cwd: Path, *, kill_after: float | None = None, crash_at: str | None = None,
                timeout: float = 600) -> Outcome:
    """Run ``argv`` in a new process group; SIGKILL the group after ``kill_after`` seconds (if still running)."""
    log = cwd / f".harness-{os.getpid()}.log"
    start = time.perf_counter()
    with open(log, "wb") as err:
        proc = subprocess.Popen(argv, cwd=cwd, env=environment(crash_at), stdout=subprocess.DEVNULL, stderr=err,
                                start_new_session=True)
        timer_kill = False
        try:
            proc.wait(timeout=kill_after if kill_after is not None else timeout)
        except subprocess.TimeoutExpired:
            timer_kill = kill_after is not None
            _kill_group(proc.pid)
            proc.wait()
        finally:
            _kill_group(proc.pid)  # whatever the command started (Ray's processes) goes with it
    seconds = time.perf_counter() - start
    tail = "\n".join(log.read_text(errors="replace").strip().splitlines()[-3:])
    log.unlink()
    return Outcome(proc.returncode, seconds, timer_kill or proc.returncode == -signal.SIGKILL, tail)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


# --- what a run leaves: the result to compare, and leftovers ----------------------------------------------------
def bench_result(folder: Path) -> list:
    with sqlite3.connect(folder / "out" / "results.sqlite") as db:
        rows = db.execute("SELECT key, method, forget, seed, params, report, notes FROM cells ORDER BY key").fetchall()
    return [(k, m, f, s, json.loads(p), json.loads(r), json.loads(n)) for k, m, f, s, p, r, n in rows]


def tune_result(folder: Path) -> dict:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{folder / 'out' / 'tune.db'}"
    (summary,) = optuna.get_all_study_summaries(storage)
    study = optuna.load_study(study_name=summary.study_name, storage=storage)
    state = optuna.trial.TrialState
    finished = [t for t in study.trials if t.state in (state.COMPLETE, state.PRUNED)]
    defaults = [t for t in finished if "auto" in t.user_attrs]
    return {"finished": len(finished), "running": sum(t.state == state.RUNNING for t in study.trials),
            "defaults_trials": len(defaults), "defaults_value": defaults[0].value if defaults else None,
            "overlay": (folder / "out" / "gradient-ascent.toml").is_file()}


def neurips_result(folder: Path) -> dict:
    doc = json.loads((folder / "result.json").read_text())
    return {k: v for k, v in doc.items() if k not in TIMING_KEYS}


def sisa_result(folder: Path) -> dict:
    sidecar = json.loads((folder / "model.json").read_text())
    index = json.loads((folder / sidecar["sisa"]["dir"] / "assignment.json").read_text())
    return {"weights": sidecar["weights"]["sha256"], "slices": index["files"]}


def stream_result(folder: Path) -> list:
    doc = json.loads((folder / "out" / "stream.json").read_text())
    return [(s["request_ids"], s["weights_sha256"], s["fallback"],
             None if s["verified"] is None else (s["verified"]["gap"], s["verified"]["reversals"]))
            for s in doc["steps"]]


def _stream_requests(folder: Path) -> None:
    from unlearnkit.data import load_dataset

    ids = load_dataset("digits").train.ids.tolist()  # the shared original's training set
    lines = [json.dumps({"request_id": f"r{k}", "ids": ids[5 * k:5 * k + 5]}) for k in range(6)]
    (folder / "requests.jsonl").write_text("\n".join(lines) + "\n")


def leftovers(folder: Path) -> list[str]:
    """Temporary names left in ``folder``; a side folder a checkpoint's sidecar names (``OUT.sisa.new-X`` after a
    replacement) is the checkpoint's, not a leftover."""
    named = set()
    for sidecar in folder.rglob("*.json"):
        try:
            doc = json.loads(sidecar.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(doc, dict):
            named |= {sidecar.parent / d["dir"] for d in doc.values() if isinstance(d, dict) and "dir" in d}
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if LEFTOVER.search(p.name) and not any(p == n or n in p.parents for n in named))


# --- scenarios -------------------------------------------------------------------------------------------------
@dataclass
class Scenario:
    name: str
    argv: Callable[[Path, Path], list[str]]  # (run folder, shared folder) -> the command
    result: Callable[[Path], object]
    prepare: Callable[[Path], None] | None = None  # writes inputs into a fresh run folder
    crash_points: tuple[str, ...] = CRASH_POINTS  # () for Ray: timer kills of the whole group only


def _bench_config(metrics: str) -> Callable[[Path], None]:
    def prepare(folder: Path) -> None:
        (folder / "crash.toml").write_text(BENCH_CONFIG.format(metrics=metrics))
    return prepare


def _bench_argv(*extra: str) -> Callable[[Path, Path], list[str]]:
    return lambda folder, _shared: unlearn_argv("bench", "crash.toml", "--out", "out", "--resume", *extra)


SCENARIOS = {
    "bench": Scenario("bench", _bench_argv(), bench_result, _bench_config("")),
    "bench-neurips": Scenario("bench-neurips", _bench_argv(), bench_result,
                              _bench_config("metrics = { neurips = { models = 2 } }")),
    "bench-ray": Scenario("bench-ray", _bench_argv("--executor", "ray"), bench_result, _bench_config(""),
                          crash_points=()),
    "tune": Scenario("tune", lambda folder, _shared: unlearn_argv(
        "tune", "--method", "gradient-ascent", "--config", "crash.toml", "--trials", "4", "--out", "out", "--resume"),
        tune_result, _bench_config("")),
    "neurips": Scenario("neurips", lambda folder, shared: unlearn_argv(
        "neurips", "--checkpoint", str(shared / "original"), "--forget", "random:0.1", "--method", "finetune",
        "--models", "3", "--no-calibration", "--cache-dir", "cache", "--save", "result.json", "--force"),
        neurips_result),
    "sisa": Scenario("sisa", lambda folder, _shared: unlearn_argv(
        "train", "--dataset", "digits", "--epochs", "3", "--sisa", "shards=3,slices=3", "--out", "model", "--force"),
        sisa_result),
    "stream": Scenario("stream", lambda folder, shared: unlearn_argv(
        "stream", "--checkpoint", str(shared / "original"), "--requests", "requests.jsonl", "--method", "finetune",
        "--param", "epochs=1", "--policy", "batch:2", "--verify-every", "2", "--out", "out", "--resume"),
        stream_result, _stream_requests),
}


def prepare_shared(shared: Path) -> None:
    """Inputs some scenarios read and never write: a trained digits checkpoint."""
    if not (shared / "original.json").is_file():
        shared.mkdir(parents=True, exist_ok=True)
        out = run_command(unlearn_argv("train", "--dataset", "digits", "--epochs", "4", "--out", "original",
                                       "--force"), shared)
        if out.rc != 0:
            raise RuntimeError(f"could not train the shared checkpoint: {out.tail}")


# --- rounds ----------------------------------------------------------------------------------------------------
@dataclass
class Tally:
    kills: int = 0
    at_points: int = 0  # of the kills, those at a crash point (the rest: timer kills of the process group)
    rounds: int = 0
    refused: list[str] = field(default_factory=list)
    unequal: list[str] = field(default_factory=list)
    leftover: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.refused or self.unequal or self.leftover)

    def line(self, name: str) -> str:
        return (f"{name:14s} kills {self.kills:3d} ({self.at_points:2d} at crash points)  rounds {self.rounds:2d}  "
                f"refused {len(self.refused)}  "
                f"unequal {len(self.unequal)}  leftovers {len(self.leftover)}")


def clean_run(scenario: Scenario, work: Path, shared: Path) -> tuple[object, float]:
    folder = work / scenario.name / "clean"
    folder.mkdir(parents=True)
    if scenario.prepare:
        scenario.prepare(folder)
    out = run_command(scenario.argv(folder, shared), folder)
    if out.rc != 0:
        raise RuntimeError(f"{scenario.name}: the clean run failed (exit {out.rc}): {out.tail}")
    return scenario.result(folder), out.seconds


def crash_round(scenario: Scenario, folder: Path, shared: Path, rng: random.Random, max_kills: int,
                duration: float, expected, tally: Tally) -> None:
    """Kill the command up to ``max_kills`` times in ``folder``, run it to the end, check the result."""
    folder.mkdir(parents=True)
    if scenario.prepare:
        scenario.prepare(folder)
    argv = scenario.argv(folder, shared)
    tally.rounds += 1
    done = False
    for _ in range(max_kills):
        at_point = bool(scenario.crash_points) and rng.random() < 0.5
        if at_point:
            point = rng.choice(scenario.crash_points)
            out = run_command(argv, folder, crash_at=f"{point}:{rng.randint(1, 4)}")
        else:
            out = run_command(argv, folder, kill_after=rng.uniform(0.15, 1.0) * duration)
        if out.killed:
            tally.kills += 1
            tally.at_points += at_point
            continue
        if out.rc != 0:
            tally.refused.append(f"{folder.name}: exit {out.rc}: {out.tail}")
            return
        done = True  # it ended by itself before its kill: the round's command is done
        break
    if not done:
        out = run_command(argv, folder)
        if out.rc != 0:
            tally.refused.append(f"{folder.name}: final run, exit {out.rc}: {out.tail}")
            return
    got = scenario.result(folder)
    if got != expected:
        tally.unequal.append(f"{folder.name}: result differs from the clean run's")
    left = leftovers(folder)
    if left:
        tally.leftover.append(f"{folder.name}: {left[:5]}")


def run_scenario(name: str, kills: int, work: Path, shared: Path, seed: int, kills_per_round: int = 3) -> Tally:
    """Rounds of ``scenario`` until ``kills`` kills have landed (or a round fails)."""
    scenario = SCENARIOS[name]
    if name in ("neurips", "stream"):
        prepare_shared(shared)
    expected, duration = clean_run(scenario, work, shared)
    rng = random.Random(f"{seed}:{name}")
    tally = Tally()
    while tally.kills < kills and tally.ok:
        before = tally.kills
        crash_round(scenario, work / name / f"round-{tally.rounds + 1}", shared, rng,
                    min(kills_per_round, kills - tally.kills), duration, expected, tally)
        if tally.kills == before and tally.rounds > 3 * kills + 3:
            break  # every run outran its kill (should not happen: kills come before the clean run's end)
    return tally


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=60, help="kills in all, spread over the scenarios")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default=None, help="working folder (default: a new one under /tmp)")
    parser.add_argument("--scenario", action="append", choices=sorted(SCENARIOS), help="repeat; default: all")
    args = parser.parse_args(argv)
    import tempfile

    work = Path(args.work or tempfile.mkdtemp(prefix="unlearnkit-crash-"))
    names = args.scenario or list(SCENARIOS)
    per = -(-args.kills // len(names))
    total = Tally()
    print(f"# {sys.argv[0]} --kills {args.kills} --seed {args.seed}: {per} kills per scenario, work folder {work}")
    for name in names:
        start = time.perf_counter()
        tally = run_scenario(name, per, work, work / "shared", args.seed)
        print(tally.line(name) + f"  ({time.perf_counter() - start:.0f}s)", flush=True)
        for problem in tally.refused + tally.unequal + tally.leftover:
            print(f"    {problem}")
        total.kills += tally.kills
        total.at_points += tally.at_points
        total.rounds += tally.rounds
        total.refused += tally.refused
        total.unequal += tally.unequal
        total.leftover += tally.leftover
    print(total.line("total"))
    print(f"# {'all rounds equal to a clean run' if total.ok else 'FAILED'}")
    return 0 if total.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
