"""Crash injection on the long commands: real `unlearn` subprocesses killed with SIGKILL, resumed, compared.

The harness is benchmarks/crash_harness.py (its docstring says what each round checks); here every command gets a
couple of kills, at seeded moments, half of them at crash points inside model saves and result-store writes. The
larger run (>= 50 kills) is `python benchmarks/crash_harness.py --kills 60`; its figures are in docs/CRASH_SAFETY.md.

Run: .venv/bin/python -m pytest tests/test_crash.py -q
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

HARNESS = Path(__file__).resolve().parents[1] / "benchmarks" / "crash_harness.py"


def _harness():
    spec = importlib.util.spec_from_file_location("crash_harness", HARNESS)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


harness = _harness()


SMALL = {"bench": 2, "bench-neurips": 2, "bench-ray": 1, "tune": 2, "neurips": 2, "sisa": 2}  # kills per command


def test_killed_and_resumed_runs_end_equal_to_a_clean_run(tmp_path):
    """Every long command, killed at seeded moments and resumed, ends as a clean run does: no refusal, the same
    result, nothing temporary left. Two scenarios run at a time (each subprocess uses one thread)."""
    from concurrent.futures import ThreadPoolExecutor

    harness.prepare_shared(tmp_path / "shared")  # before the threads: two scenarios must not both train it

    def one(name: str):
        return name, harness.run_scenario(name, SMALL[name], tmp_path, tmp_path / "shared", seed=0,
                                          kills_per_round=SMALL[name])

    with ThreadPoolExecutor(max_workers=2) as pool:
        tallies = dict(pool.map(one, SMALL))
    problems = [f"{name}: {p}" for name, t in tallies.items() for p in t.refused + t.unequal + t.leftover]
    assert not problems, "\n".join(problems)
    assert {name: t.kills for name, t in tallies.items()} == SMALL  # every planned kill landed before the end


def test_harness_notices_a_refusal_a_result_that_differs_and_a_leftover(tmp_path):
    """The harness can fail. A stand-in command (a few lines of Python that write a result) shows each verdict: a
    result unlike the clean run's, a run that exits non-zero on its own, a temporary file left behind."""
    import random

    script = tmp_path / "cmd.py"
    script.write_text("import pathlib, sys, time\n"
                      "mode = pathlib.Path('mode').read_text() if pathlib.Path('mode').exists() else 'ok'\n"
                      "time.sleep(0.3)\n"
                      "if mode == 'refuse': sys.exit('error: refused')\n"
                      "pathlib.Path('result.txt').write_text('wrong' if mode == 'wrong' else 'right')\n"
                      "if mode == 'leftover': pathlib.Path('.result.txt.tmp-1-0badc0de').write_text('x')\n")

    def scenario(mode: str):
        def prepare(folder: Path) -> None:
            if folder.name != "clean":
                (folder / "mode").write_text(mode)
        return harness.Scenario(mode, lambda folder, shared: [sys.executable, str(script)],
                                lambda folder: (folder / "result.txt").read_text(), prepare, crash_points=())

    verdicts = {}
    for mode in ("ok", "wrong", "refuse", "leftover"):
        case = scenario(mode)
        expected, _ = harness.clean_run(case, tmp_path, tmp_path)
        tally = harness.Tally()
        # a kill after 0.05 s lands before the 0.3 s command ends; then it runs to the end
        harness.crash_round(case, tmp_path / mode / "round", tmp_path, random.Random(0), 1, 0.05 / 0.15, expected,
                            tally)
        verdicts[mode] = (tally.kills, len(tally.refused), len(tally.unequal), len(tally.leftover))
    assert verdicts == {"ok": (1, 0, 0, 0), "wrong": (1, 0, 1, 0), "refuse": (1, 1, 0, 0), "leftover": (1, 0, 0, 1)}
