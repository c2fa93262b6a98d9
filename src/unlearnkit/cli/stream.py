"""``unlearn requests``: deletion-request streams (JSONL) for continual unlearning.

    unlearn requests make  --dataset fashion-mnist --subjects 1000 --count 50 --seed 0 --out runs/requests.jsonl
    unlearn requests check --checkpoint runs/fm/original --requests runs/requests.jsonl --json
"""

from __future__ import annotations

from typing import Annotated

import typer

from unlearnkit.cli.common import (
    DataDirOpt,
    DataOptionOpt,
    DatasetOpt,
    JsonOpt,
    SubjectsOpt,
    TrainSizeOpt,
    emit_json,
    load_bundle,
    out_console,
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
    from unlearnkit.runs import load_with_data, training_set
    from unlearnkit.stream import read_requests, resolve_requests

    parsed, problems = read_requests(requests)  # a missing file fails before the data loads
    ckpt, bundle = load_with_data(checkpoint, data_dir=data_dir)
    resolved, more = resolve_requests(parsed, training_set(bundle, ckpt))
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
