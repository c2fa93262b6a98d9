"""``unlearn detect``: suspected poisoned training samples of a checkpoint, written as an ids file to forget.

    unlearn detect --checkpoint runs/fm/bad --method spectral --out runs/fm/suspects.txt --json
    unlearn forget --checkpoint runs/fm/bad --forget ids:runs/fm/suspects.txt --method retrain --out runs/fm/fixed
"""

from __future__ import annotations

from typing import Annotated

import typer

from unlearnkit.cli.common import DataDirOpt, DeviceOpt, JsonOpt, emit_json, out_console, status


def detect(
    checkpoint: Annotated[str, typer.Option("--checkpoint", "-c", help="The trained (possibly poisoned) model.")],
    out: Annotated[str, typer.Option("--out", "-o", help="File for the suspected ids, one per line (feeds "
                                     "--forget ids:FILE).")],
    method: Annotated[str, typer.Option("--method", help="spectral, activation-clustering or loss.")] = "spectral",
    rate: Annotated[float, typer.Option("--rate", help="Expected poisoned share of the training set; the default "
                                        "budget flags 1.5 x rate x n samples.")] = 0.01,
    budget: Annotated[int | None, typer.Option("--budget", help="Flag exactly this many samples (instead of "
                                               "1.5 x rate x n).")] = None,
    max_cluster: Annotated[float, typer.Option("--max-cluster", help="activation-clustering: the largest share of "
                                               "a label a suspect cluster may hold.")] = 0.35,
    seed: Annotated[int, typer.Option("--seed", help="Seeds k-means (activation-clustering).")] = 0,
    data_dir: DataDirOpt = None,
    device: DeviceOpt = "auto",
    force: Annotated[bool, typer.Option("--force", help="Replace an existing --out file.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Score every training sample of a checkpoint with a poison detector and write the suspects' ids. When the
    checkpoint's data records its poisoned ids (--data-option poison=...), precision and recall are printed."""
    from unlearnkit.detect import DETECTORS, precision_recall
    from unlearnkit.detect import detect as run_detect
    from unlearnkit.errors import ConfigError
    from unlearnkit.files import refuse_overwrite, write_text_atomic
    from unlearnkit.runs import load_with_data, training_set

    if method not in DETECTORS:
        raise ConfigError(f"unknown detector {method!r}; choose one of: {', '.join(DETECTORS)}")
    refuse_overwrite(out, force)
    ckpt, bundle = load_with_data(checkpoint, device=device, data_dir=data_dir)
    train = training_set(bundle, ckpt)
    if not as_json:
        status(f"scoring {len(train)} training samples of {checkpoint} with {method}")
    found = run_detect(ckpt.model, train, method, rate=rate, budget=budget, max_cluster=max_cluster, device=device,
                       seed=seed)
    write_text_atomic(out, "".join(f"{int(i)}\n" for i in found.suspects), force=force)
    summary = {"checkpoint": checkpoint, "out": out, **found.to_json()}
    if train.poisoned is not None:
        truth = train.ids[train.poisoned_mask()]
        precision, recall = precision_recall(found.suspects, truth)
        summary.update(n_poisoned=len(truth), precision=round(precision, 6), recall=round(recall, 6))
    if as_json:
        return emit_json(summary)
    line = f"wrote {len(found.suspects)} suspected ids to {out}"
    if "precision" in summary:
        line += (f"; against the {summary['n_poisoned']} known poisoned ids: precision {summary['precision']:.4f}, "
                 f"recall {summary['recall']:.4f}")
    out_console.print(line + f"; forget them with --forget ids:{out}", markup=False, soft_wrap=True)
    return None
