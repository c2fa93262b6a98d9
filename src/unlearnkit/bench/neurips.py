"""The NeurIPS-2023 unlearning challenge's evaluation: N unlearned vs N retrained models, per forget example.

For one forget request this trains (or loads from the cache) N models retrained from scratch without
the forget set, runs the unlearning method N times on the original model with seeds 0..N-1, and compares
the two populations' logit-scaled confidences on every forget example with
:func:`unlearnkit.metrics.forget_quality.forget_quality`. The challenge's final score multiplies that
forgetting quality F by the retain- and test-accuracy ratios of the two populations (Triantafillou et
al., 2024, "Are we making progress in unlearning? Findings from the first NeurIPS unlearning competition").

F is not on a 0..1 scale one reaches by forgetting well: two populations drawn from the same distribution
score about 0.17-0.21, the estimator's ceiling. So by default N more retrained models (seeds N..2N-1) are
compared with the first N, and that retrain-vs-retrain F is reported beside the method's F.

    unlearn neurips --checkpoint runs/digits/original --forget random:0.1 --method finetune --models 32
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from unlearnkit.bench.references import retrained_models
from unlearnkit.data import ForgetSplit, IndexedDataset
from unlearnkit.errors import ConfigError
from unlearnkit.metrics.forget_quality import forget_quality, logit_scaled_confidence, neurips_score
from unlearnkit.metrics.lira import u_lira
from unlearnkit.models.multitask import is_multitask
from unlearnkit.train import TrainConfig, predict_logits, show_progress
from unlearnkit.unlearning import unlearn

# Seeds of the two reference populations, apart from the method's seeds 0..N-1: the `retrain` method with
# seed s trains exactly the reference with seed s, and identical populations would score a perfect F that
# independent ones never reach. Fixed offsets (not N-dependent) let a larger N reuse the cached smaller one.
SEED_STRIDE = 10_000
REFERENCE_SEEDS = SEED_STRIDE  # references: seeds 10000..10000+N-1
CALIBRATION_SEEDS = 2 * SEED_STRIDE  # the second retrained population, for the retrain-vs-retrain F


@dataclass
class NeuripsResult:
    """What :func:`neurips_evaluation` measured; ``to_json`` gives the CLI's keys."""

    method: str
    forget: str
    models: int
    forget_quality: float
    epsilons: np.ndarray  # one per forget example, in [0, 50]
    neurips_score: float
    retain_ratio: float  # mean retain accuracy of the unlearned models / that of the retrained ones
    test_ratio: float
    accuracies: dict[str, dict[str, float]]  # {"unlearned"|"retrained": {"retain": mean, "test": mean}}
    calibration_forget_quality: float | None  # retrain (seeds 0..N-1) vs retrain (seeds N..2N-1)
    u_lira: dict[str, float] | None  # U-LiRA on the same populations: half as shadows, half as targets (N >= 4)
    seconds: float  # wall seconds of the whole evaluation
    unlearn_seconds: float  # mean seconds of one unlearning run
    config: dict = field(default_factory=dict)  # the method's resolved hyperparameters

    def to_json(self) -> dict:
        return {
            "method": self.method,
            "forget": self.forget,
            "forget_quality": round(self.forget_quality, 6),
            "neurips_score": round(self.neurips_score, 6),
            "retain_ratio": round(self.retain_ratio, 6),
            "test_ratio": round(self.test_ratio, 6),
            "calibration_forget_quality": None if self.calibration_forget_quality is None
            else round(self.calibration_forget_quality, 6),
            "accuracies": {k: {n: round(v, 6) for n, v in d.items()} for k, d in self.accuracies.items()},
            "u_lira": None if self.u_lira is None else {k: round(v, 6) for k, v in self.u_lira.items()},
            "epsilons": [round(float(e), 6) for e in self.epsilons],
            "models": self.models,
            "seconds": round(self.seconds, 3),
            "unlearn_seconds": round(self.unlearn_seconds, 4),
            "config": self.config,
        }


def _measure(model: nn.Module, split: ForgetSplit, test: IndexedDataset, device) -> tuple[torch.Tensor, float, float]:
    """One model's logit-scaled confidences on the forget set, and its retain and test accuracy."""
    conf = logit_scaled_confidence(predict_logits(model, split.forget, device=device), split.forget.y)
    retain = float((predict_logits(model, split.retain, device=device).argmax(1) == split.retain.y).float().mean())
    test_acc = float((predict_logits(model, test, device=device).argmax(1) == test.y).float().mean())
    return conf, retain, test_acc


def _population(measured: list[tuple[torch.Tensor, float, float]]) -> tuple[torch.Tensor, dict[str, float]]:
    """[n_models, n_forget] confidences and the mean retain/test accuracy of measured models."""
    return (torch.stack([m[0] for m in measured]),
            {"retain": float(np.mean([m[1] for m in measured])), "test": float(np.mean([m[2] for m in measured]))})


def neurips_evaluation(
    model: nn.Module,
    train: IndexedDataset,
    split: ForgetSplit,
    test: IndexedDataset,
    method: str,
    *,
    train_config: TrainConfig,
    model_name: str,
    model_kwargs: dict | None = None,
    n_models: int = 32,
    params: dict | None = None,
    calibration: bool = True,
    cache_dir: str | None = None,
    device: str | torch.device | None = None,
    progress: bool | None = None,
    on_step: Callable[[str], None] | None = None,
) -> NeuripsResult:
    """Run the challenge's evaluation of ``method`` on one forget request.

    Args:
        model: the original model (never mutated); the method starts from it N times.
        train: the training set the original saw (``split`` was selected from it).
        split: the forget/retain split; ``split.retain`` is what the reference models train on.
        test: held-out data for the test-accuracy ratio.
        method: a registered method name; ``params`` override its defaults.
        train_config: the original recipe; each reference model uses it with its own seed.
        model_name, model_kwargs: the architecture, to build the reference models.
        n_models: N, models per population (the challenge used 512; 32 gives a usable estimate).
        calibration: also train N more references and report their F against the first N.
        cache_dir: where reference models are cached (``None``: retrain every time).
        on_step: called with a short status line before each stage.
    """
    if is_multitask(model):
        raise ConfigError("the NeurIPS-2023 forgetting quality is defined for single-task models; for a multi-task "
                          "model use `unlearn evaluate` (per-task accuracies and the UIS, docs/MULTITASK.md)")
    if not 2 <= n_models <= SEED_STRIDE:
        raise ConfigError(f"--models must be at least 2 (the test compares two populations of N) and at most "
                          f"{SEED_STRIDE}, got {n_models}")
    say = on_step or (lambda _msg: None)
    start = time.perf_counter()
    seeds = [REFERENCE_SEEDS + i for i in range(n_models)]
    if calibration:
        seeds += [CALIBRATION_SEEDS + i for i in range(n_models)]
    say(f"retrained references: {len(seeds)} models (cached in {cache_dir})" if cache_dir else
        f"retrained references: {len(seeds)} models (no cache)")
    refs = retrained_models(train, split.forget.ids, model_name, dict(model_kwargs or {}), split.retain.spec,
                            train_config, seeds=seeds, cache_dir=cache_dir, device=device,
                            progress=progress)
    measured, seconds, config = [], [], {}
    bar = tqdm(range(n_models), desc=f"unlearn {method}", unit="model", disable=not show_progress(progress))
    say(f"running {method} {n_models} times (seeds 0..{n_models - 1})")
    for seed in bar:  # each unlearned model is measured and dropped: memory stays at one model
        result = unlearn(model, split, method, train_config=train_config, device=device, seed=seed, holdout=test,
                         progress=False, **(params or {}))
        measured.append(_measure(result.model, split, test, device))
        seconds.append(result.seconds)
        config = result.config
    bar.close()
    say("comparing the two populations per forget example")
    u_conf, u_acc = _population(measured)
    r_conf, r_acc = _population([_measure(m, split, test, device) for m in refs[:n_models]])
    fq = forget_quality(u_conf, r_conf)
    calib = None
    if calibration:
        c_conf, _ = _population([_measure(m, split, test, device) for m in refs[n_models:]])
        calib = forget_quality(c_conf, r_conf).score
    return NeuripsResult(
        u_lira=_u_lira_halves(u_conf, r_conf) if n_models >= 4 else None,
        method=method, forget=split.spec, models=n_models, forget_quality=fq.score, epsilons=fq.epsilons,
        neurips_score=neurips_score(fq.score, u_acc["retain"], r_acc["retain"], u_acc["test"], r_acc["test"]),
        retain_ratio=u_acc["retain"] / r_acc["retain"], test_ratio=u_acc["test"] / r_acc["test"],
        accuracies={"unlearned": u_acc, "retrained": r_acc}, calibration_forget_quality=calib,
        seconds=time.perf_counter() - start, unlearn_seconds=float(np.mean(seconds)), config=config,
    )


def _u_lira_halves(unlearned: torch.Tensor, retrained: torch.Tensor) -> dict[str, float]:
    """U-LiRA (Hayes et al., 2024) on the two populations: the first half of each side are the shadow models,
    the second half the targets; can a per-example likelihood-ratio test tell an unlearned target from a
    retrained one? 0.5 accuracy and AUC mean it cannot. Simplified from the paper's protocol: every model here
    starts from the same original (the paper also varies the training set of the shadow models)."""
    u, r = unlearned.double().cpu().numpy(), retrained.double().cpu().numpy()
    half = u.shape[0] // 2
    shadow = np.concatenate([u[:half], r[:half]])
    shadow_unlearned = np.zeros(shadow.shape, dtype=bool)
    shadow_unlearned[:half] = True
    targets = np.concatenate([u[half:], r[half:]])
    target_unlearned = np.zeros(targets.shape, dtype=bool)
    target_unlearned[: u.shape[0] - half] = True
    result = u_lira(shadow, shadow_unlearned, ~shadow_unlearned, targets, target_unlearned)
    return {"accuracy": result.accuracy, "auc": result.report.auc, "tpr_at_1pct_fpr": result.report.tpr_at_1pct_fpr}
