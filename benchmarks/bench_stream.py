"""Continual unlearning: a stream of 50 subject deletion requests on Fashion-MNIST, applied by several methods under
several policies, against retraining after every request.

    python benchmarks/bench_stream.py --work runs/bench-stream --out docs/results/stream/fashion-mnist.json
    python benchmarks/bench_stream.py --report docs/results/stream/fashion-mnist.json   # reprint, run nothing

Set-up (in ``--work``, reused when there): Fashion-MNIST with ``--subjects 1000`` (60 images per subject), the
``mlp`` at its default recipe (``original``), a SISA ensemble of it with all samples of a subject in one shard
(``sisa``: shards=5, by=subjects), a logistic head on the original's frozen features (``head``, for ``certified``),
and ``unlearn requests make --count 50 --seed 0``. Each run is one ``unlearn stream ... --json`` subprocess (one
thread each, ``--jobs`` of them at a time); its JSON is stored in ``--out`` as it finishes, so a rerun skips the
runs already there. Every run verifies against a model retrained on everything remaining at its last version (and
halfway), which gives the final gap, the reversal check of every request, and ``retrain_seconds`` measured in the
same process (for the SISA runs the reference is SISA training without the removed ids, and ``retrain_seconds`` the
time of that). The cost column is the run's unlearning time (fallback retrainings included, verification not)
divided by ``retrain_seconds`` x requests: the cost of retraining after every request.

Prints one row per run and then the two targets of issue 16 with the figures they rest on.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REQUESTS = 50
DRIFT = 0.02


def unlearn(*args: str) -> list[str]:
    return [sys.executable, "-m", "unlearnkit.cli", *args]


def env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def prepare(work: Path, subjects: int, count: int) -> None:
    work.mkdir(parents=True, exist_ok=True)
    data = ["--dataset", "fashion-mnist", "--subjects", str(subjects)]
    steps = [
        ("original", unlearn("train", *data, "--model", "mlp", "--out", str(work / "original"))),
        ("sisa", unlearn("train", *data, "--model", "mlp", "--sisa", "shards=5,by=subjects", "--out",
                         str(work / "sisa"))),
        ("head", unlearn("train", *data, "--model", "logistic", "--features-from", str(work / "original"), "--out",
                         str(work / "head"))),
    ]
    for name, argv in steps:
        if not (work / f"{name}.json").is_file():
            start = time.perf_counter()
            subprocess.run(argv, check=True, env=env(), stdout=subprocess.DEVNULL)
            print(f"trained {name} in {time.perf_counter() - start:.1f}s", file=sys.stderr, flush=True)
    if not (work / "requests.jsonl").is_file():
        subprocess.run(unlearn("requests", "make", *data, "--count", str(count), "--seed", "0", "--out",
                               str(work / "requests.jsonl")), check=True, env=env(), stdout=subprocess.DEVNULL)


def plan(count: int) -> list[dict]:
    """The runs: (checkpoint, method, policy, max drift). Verification halfway and at the end."""
    runs = []
    for method in ("finetune", "gradient-ascent", "influence", "activation-prune", "l1-sparse"):
        for policy in ("each", "batch:10"):
            for drift in (None, DRIFT):
                runs.append({"checkpoint": "original", "method": method, "policy": policy, "max_drift": drift})
    for policy in ("each", "batch:10"):
        runs.append({"checkpoint": "sisa", "method": "sisa", "policy": policy, "max_drift": None})
        runs.append({"checkpoint": "head", "method": "certified", "policy": policy, "max_drift": None})
    for run in runs:
        per = 1 if run["policy"] == "each" else int(run["policy"].split(":")[1])
        versions = -(-count // per)
        run["verify_every"] = max(1, versions // 2)
        run["name"] = (f"{run['method']} {run['policy']}"
                       + (f" drift {run['max_drift']:g}" if run["max_drift"] is not None else ""))
    return runs


def execute(run: dict, work: Path) -> dict:
    folder = work / "streams" / run["name"].replace(" ", "_").replace(":", "")
    argv = unlearn("stream", "--checkpoint", str(work / run["checkpoint"]), "--requests", str(work / "requests.jsonl"),
                   "--method", run["method"], "--policy", run["policy"], "--verify-every", str(run["verify_every"]),
                   "--out", str(folder), "--resume", "--json",
                   *(["--max-drift", str(run["max_drift"])] if run["max_drift"] is not None else []))
    start = time.perf_counter()
    done = subprocess.run(argv, env=env(), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{run['name']}: exit {done.returncode}: {done.stderr.strip()[-500:]}")
    result = json.loads(done.stdout)
    print(f"{run['name']}: {time.perf_counter() - start:.0f}s", file=sys.stderr, flush=True)
    return {**run, "result": result}


def drops(result: dict) -> list[float]:
    """Per published version: how far its retain or test accuracy is below the last exact model's before it."""
    base = result["baseline"]
    last = {k: base[k] for k in ("retain_accuracy", "test_accuracy")}
    out = []
    for step in result["steps"]:
        out.append(max(last[k] - step[k] for k in last))
        if step["fallback"] or step["method"] in ("retrain", "sisa"):
            last = {k: step[k] for k in last}
    return out


def row(entry: dict) -> dict:
    r = entry["result"]
    final = r["steps"][-1]
    ver = final["verified"] or {}
    ref = ver.get("reference_accuracy", {})
    retrain_each = r["retrain_every_request_seconds"]
    return {
        "run": entry["name"], "versions": len(r["steps"]), "fallbacks": r["fallbacks"],
        "final_fallback": final["fallback"],
        "reversals": len(r["reversals"]), "final_reversals": len(ver.get("reversals", [])),
        "test": final["test_accuracy"], "ref_test": ref.get("test_accuracy"),
        "test_gap": ver.get("gap", {}).get("test_accuracy"), "forget_gap": ver.get("gap", {}).get("forget_accuracy"),
        "gap_average": ver.get("gap", {}).get("average"), "max_drop": max(drops(r)),
        "unlearning_s": r["unlearning_seconds"], "verify_s": r["verify_seconds"], "retrain_s": r["retrain_seconds"],
        "retrain_each_s": retrain_each, "cost": r["unlearning_seconds"] / retrain_each if retrain_each else None,
    }


def report(entries: list[dict]) -> None:
    rows = [row(e) for e in entries]
    head = (f"{'run':34s} {'vers':>4s} {'fallb':>5s} {'revers':>6s} {'test':>6s} {'ref':>6s} {'gap':>6s} "
            f"{'fgap':>6s} {'avg':>6s} {'maxdrop':>7s} {'unlearn s':>9s} {'verify s':>8s} {'retrain s':>9s} "
            f"{'cost':>6s}")
    print(head)
    for r in rows:
        def f(v, fmt=".4f"):
            return format(v, fmt) if v is not None else "-"
        print(f"{r['run']:34s} {r['versions']:4d} {r['fallbacks']:5d} {r['final_reversals']:6d} {f(r['test'])} "
              f"{f(r['ref_test'])} {f(r['test_gap'])} {f(r['forget_gap'])} {f(r['gap_average'])} "
              f"{f(r['max_drop']):>7s} {r['unlearning_s']:9.1f} {r['verify_s']:8.1f} {f(r['retrain_s'], '.1f'):>9s} "
              f"{f(r['cost'], '.3f'):>6s}")
    print("\ncolumns: fallb = fallbacks to exact retraining; revers = reversals found at the final verification; "
          "test = final test accuracy; ref = that of the model retrained on everything remaining; gap/fgap/avg = "
          "test, forget-accuracy and average gaps to it; maxdrop = largest fall of a published version below the last "
          "exact model (retain or test); cost = unlearning seconds / (retrain seconds x requests)")
    # approximate: a method of the suite whose final version it made itself (not a fallback to retraining)
    approx = [r for r in rows if not r["run"].startswith(("sisa", "certified")) and not r["final_fallback"]]
    ok = [r for r in approx if r["final_reversals"] == 0 and r["cost"] is not None and r["cost"] <= 0.2
          and r["test_gap"] is not None]
    if ok:
        best = min(ok, key=lambda r: r["test_gap"])
        verdict = "met" if best["test_gap"] <= 0.01 else f"missed by {best['test_gap'] - 0.01:.4f}"
        print(f"\ntarget 1 (best approximate policy, final version made by the method itself: final test gap <= 0.01, "
              f"no reversal, cost <= 1/5): {verdict}: "
              f"{best['run']}: test gap {best['test_gap']:.4f}, {best['final_reversals']} reversals, cost "
              f"{best['cost']:.3f}")
    else:
        best = min(approx, key=lambda r: r["test_gap"] if r["test_gap"] is not None else 1)
        print(f"\ntarget 1: missed: no approximate run has no reversal at cost <= 1/5; closest: {best['run']} "
              f"(test gap {best['test_gap']}, {best['final_reversals']} reversals, cost {best['cost']})")
    for r in rows:
        if r["run"].startswith("gradient-ascent each drift"):
            caught = r["fallbacks"] > 0 and r["max_drop"] <= DRIFT
            plain = next((x for x in rows if x["run"] == "gradient-ascent each"), None)
            print(f"target 2 (gradient-ascent x {REQUESTS} with --max-drift {DRIFT:g} caught, never more than D lost): "
                  f"{'met' if caught else 'missed'}: {r['fallbacks']} fallbacks, largest drop {r['max_drop']:.4f}"
                  + (f" (without the guard: largest drop {plain['max_drop']:.4f})" if plain else ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="runs/bench-stream")
    parser.add_argument("--out", default="docs/results/stream/fashion-mnist.json")
    parser.add_argument("--subjects", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=REQUESTS)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--only", nargs="*", help="run only these run names (default: all)")
    parser.add_argument("--report", metavar="FILE", help="reprint a saved result and exit")
    args = parser.parse_args(argv)
    if args.report:
        report(json.loads(Path(args.report).read_text())["runs"])
        return 0
    work, out = Path(args.work), Path(args.out)
    prepare(work, args.subjects, args.requests)
    saved = json.loads(out.read_text()) if out.is_file() else {"command": " ".join(sys.argv), "runs": []}
    done = {e["name"] for e in saved["runs"]}
    todo = [r for r in plan(args.requests) if r["name"] not in done and (not args.only or r["name"] in args.only)]
    out.parent.mkdir(parents=True, exist_ok=True)

    lock = threading.Lock()

    def one(run: dict) -> None:
        entry = execute(run, work)
        with lock:
            store(entry)

    def store(entry: dict) -> None:
        saved["runs"].append(entry)
        order = [r["name"] for r in plan(args.requests)]
        saved["runs"].sort(key=lambda e: order.index(e["name"]) if e["name"] in order else len(order))
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(saved, indent=1) + "\n")
        tmp.replace(out)

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for f in [pool.submit(one, r) for r in todo]:
            f.result()
    report(saved["runs"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
