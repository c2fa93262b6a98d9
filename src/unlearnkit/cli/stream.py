"""``unlearn requests`` and ``unlearn stream``: deletion-request streams (JSONL) and continual unlearning.

    unlearn requests make  --dataset fashion-mnist --subjects 1000 --count 50 --seed 0 --out runs/requests.jsonl
    unlearn requests check --checkpoint runs/fm/original --requests runs/requests.jsonl --json
    unlearn stream --checkpoint runs/fm/original --requests runs/requests.jsonl --method finetune --policy batch:10 \
        --verify-every 1 --max-drift 0.02 --out runs/fm/stream --json
"""

from __future__ import annotations

from typing import Annotated

import typer

from unlearnkit.cli.common import (
    DataDirOpt,
    DataOptionOpt,
    DatasetOpt,
    DeviceOpt,
    JsonOpt,
    ProgressOpt,
    SeedOpt,
    SubjectsOpt,
    TrainSizeOpt,
    emit_json,
    load_bundle,
    out_console,
    parse_params,
    status,
    warn,
)

requests_app = typer.Typer(help="Deletion-request streams (JSONL): make one for experiments, check one against a "
                           "checkpoint's data.", no_args_is_help=True)

RequestsOpt = Annotated[str, typer.Option("--requests", help="JSONL file, one request per line: "
                                          "{\"request_id\": \"r1\", \"subjects\": [17]} or {..., \"ids\": [3, 9]}.")]


@requests_app.command("make")
def make(
    dataset: DatasetOpt,
    out: Annotated[str, typer.Option("--out", help="The JSONL file to write.")],
    count: Annotated[int, typer.Option("--count", help="How many requests (one distinct subject each).")] = 50,
    subjects: SubjectsOpt = None,
    seed: Annotated[int, typer.Option("--seed", help="Seeds which subjects ask, and when.")] = 0,
    data_dir: DataDirOpt = None,
    train_size: TrainSizeOpt = None,
    data_option: DataOptionOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing --out file.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Write a realistic request stream: COUNT data subjects drawn at random ask, one after another, to be forgotten
    (received_at rises by exponential gaps, 72 hours on average)."""
    from unlearnkit.files import refuse_overwrite
    from unlearnkit.stream import make_requests, write_requests

    refuse_overwrite(out, force)
    bundle = load_bundle(dataset, data_dir, subjects, train_size, data_option or [])
    requests = make_requests(bundle.train, count, seed=seed)
    path = write_requests(out, requests, force=force)
    summary = {"requests": str(path), "count": len(requests), "dataset": dataset, "seed": seed,
               "first": requests[0].to_json(), "last": requests[-1].to_json()}
    if as_json:
        return emit_json(summary)
    out_console.print(f"wrote {len(requests)} subject requests to {path}", markup=False, soft_wrap=True)
    return None


@requests_app.command("check")
def check(
    checkpoint: Annotated[str, typer.Option("--checkpoint", help="The checkpoint the stream will be applied to.")],
    requests: RequestsOpt,
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Read a request file against a checkpoint's data: which requests can be applied (and the samples each
    removes), and, line by line, which cannot and why. Bad lines never stop the others; the exit status is 1 when
    any line was refused."""
    from unlearnkit.runs import load_with_data
    from unlearnkit.stream import read_requests, resolve_requests

    parsed, problems = read_requests(requests)  # a missing file fails before the data loads
    ckpt, bundle = load_with_data(checkpoint, data_dir=data_dir)
    # as `unlearn stream` resolves them: samples the checkpoint's history removed count as already forgotten
    resolved, more = resolve_requests(parsed, bundle.train, removed=ckpt.forgotten_ids())
    problems = sorted([*problems, *more], key=lambda p: p.line)
    summary = {
        "requests": str(requests), "usable": len(resolved), "refused": len(problems),
        "samples": sum(len(r.sample_ids) for r in resolved),
        "usable_requests": [{"request_id": r.request_id, "line": r.request.line, "n_samples": len(r.sample_ids),
                             "notes": list(r.notes)} for r in resolved],
        "problems": [p.to_json() for p in problems],
    }
    if as_json:
        emit_json(summary)
    else:
        out_console.print(f"{len(resolved)} requests usable ({summary['samples']} samples), {len(problems)} refused",
                          markup=False, soft_wrap=True)
        for problem in problems:
            warn(str(problem))
    if problems:
        raise typer.Exit(1)


def stream(
    checkpoint: Annotated[str, typer.Option("--checkpoint", "-c", help="The trained model the requests apply to.")],
    requests: RequestsOpt,
    out: Annotated[str, typer.Option("--out", "-o", help="Folder for the versions (vNNNN), references (ref-vNNNN), "
                                     "the manifest stream.json and the report.")],
    method: Annotated[str, typer.Option("--method", help="Unlearning method (`unlearn methods`, kind samples).")
                      ] = "finetune",
    param: Annotated[list[str], typer.Option("--param", "-p", help="Method hyperparameter KEY=VALUE (repeat).")
                     ] = [],  # noqa: B006
    policy: Annotated[str, typer.Option("--policy", help="each (one request per version) or batch:N (N requests "
                                        "per version).")] = "each",
    verify_every: Annotated[int | None, typer.Option("--verify-every", help="Every K versions (and at the last), "
                                                     "retrain a reference on everything remaining and record the "
                                                     "gaps and reversals.")] = None,
    max_drift: Annotated[float | None, typer.Option("--max-drift", help="Fall back to exact retraining when retain "
                                                    "or test accuracy falls more than D (e.g. 0.02) below the last "
                                                    "exact model's.")] = None,
    reversal_tolerance: Annotated[float, typer.Option("--reversal-tol", help="An earlier request whose "
                                                      "accuracy is more than this above the reference's is a "
                                                      "reversal.")] = 0.1,
    seed: SeedOpt = 0,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the stream in --out (after a kill, or with new "
                                         "requests appended); applied requests are never applied again.")] = False,
    data_dir: DataDirOpt = None,
    device: DeviceOpt = "auto",
    progress: ProgressOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Apply a stream of deletion requests to a checkpoint, one model version per applied batch, with optional
    verification against retraining and a fallback to exact retraining when the model drifts. Bad request lines
    are reported and skipped; the exit status is 1 when any was. Writes OUT/report.md and OUT/report.html at the
    end."""
    from unlearnkit.stream import run_stream
    from unlearnkit.stream.report import write_stream_report

    params = parse_params(param)

    def show(step) -> None:
        made = f"fell back to {step.method}: {step.fallback_reason}" if step.fallback else step.method
        checked = ""
        if step.verified:
            checked = (f"; test gap to retrain {step.verified['gap']['test_accuracy']:.4f}, "
                       f"{len(step.verified['reversals'])} reversals")
        status(f"v{step.version}: {len(step.request_ids)} requests, {step.n_forget} samples, {step.seconds:.2f}s, "
               f"retain/test accuracy {step.retain_accuracy:.4f} / {step.test_accuracy:.4f} ({made}){checked}")

    result = run_stream(checkpoint, requests, method, policy, out=out, params=params, verify_every=verify_every,
                        max_drift=max_drift, reversal_tolerance=reversal_tolerance, seed=seed, resume=resume,
                        device=device, data_dir=data_dir, progress=progress, on_step=None if as_json else show)
    report = None
    if result.steps:
        report, _ = write_stream_report(out)
    summary = result.to_json()
    if as_json:
        emit_json(summary)
    else:
        for problem in result.problems:
            warn(str(problem))
        retrain = summary["retrain_every_request_seconds"]
        cost = "" if retrain is None else (f"; retraining after every request: {retrain:.1f}s "
                                           f"({summary['cost_vs_retrain_every_request']:.3f}x of that)")
        out_console.print(f"{summary['requests_applied']} requests in {len(result.steps)} versions "
                          f"({result.applied_now} new), {summary['fallbacks']} fallbacks, "
                          f"{len(summary['reversals'])} reversals, {summary['total_seconds']:.1f}s{cost}; final "
                          f"{summary['final_checkpoint']}" + (f"; report {report}" if report else ""),
                          markup=False, soft_wrap=True)
    if result.problems:
        raise typer.Exit(1)
