"""``evaluate(model, split, test, reference=None, original=None) -> Report``: compose the pure metrics.

Without a reference the report holds forget/retain/test accuracy, three membership-inference figures
and ZRF. With a reference (normally the model retrained without the forget set) it also holds the
reference's own figures, the absolute gap per metric, their mean ``gap.average``, the Jensen-Shannon
divergence between the two models' predictions on the forget set, and the ``comparison`` metrics (KL,
activation distance, weight distance to the reference). With the original model it adds the weight
distance to the original and, on request, the relearn time.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from unlearnkit.data.dataset import IndexedDataset
from unlearnkit.data.select import MASKED, ForgetSplit
from unlearnkit.device import resolve_device
from unlearnkit.errors import ConfigError
from unlearnkit.metrics import (
    METRICS,
    accuracy,
    activation_distance_per_sample,
    js_divergence_per_sample,
    kl_divergence_per_sample,
    mia_auc,
    mia_efficacy,
    population_attack,
    weight_distance,
    zrf_score,
)
from unlearnkit.metrics.multitask import unlearning_impact
from unlearnkit.models.multitask import check_tasks, is_multitask, task_correct, task_targets
from unlearnkit.models.registry import fresh_copy
from unlearnkit.train import TrainConfig, predict_logits

BASE_METRICS = ("forget_accuracy", "retain_accuracy", "test_accuracy", "mia_auc", "mia_efficacy", "mia_population",
                "zrf")
# mia_auc is reported but left out of the average gap: forget-vs-test AUC on tiny forget sets is noisy,
# and mia_efficacy already carries the membership signal (the choice of Jia et al., NeurIPS 2023).
GAP_METRICS = ("forget_accuracy", "retain_accuracy", "test_accuracy", "mia_efficacy")


@dataclass
class Report:
    """Metric name -> value, per-sample arrays, and (with a reference) the reference's figures and gaps."""

    metrics: dict[str, float]
    per_sample: dict[str, np.ndarray] = field(default_factory=dict)
    reference: Report | None = None
    gap: dict[str, float] = field(default_factory=dict)
    js_divergence: float | None = None
    comparison: dict[str, float] = field(default_factory=dict)  # metrics against the reference or the original
    # multi-task models: the task the headline metrics above are measured on, per-task accuracies, and (with the
    # original model) the Unlearning Impact Score and its components (unlearnkit.metrics.multitask)
    primary_task: str | None = None
    tasks: dict[str, dict[str, float]] = field(default_factory=dict)
    uis: float | None = None
    uis_components: dict[str, float] = field(default_factory=dict)

    @property
    def had_reference(self) -> bool:
        return self.reference is not None

    def needs_reference(self) -> list[str]:
        """Metrics that only exist with a reference (listed whether or not this report had one)."""
        return [name for name, info in METRICS.items() if info.needs_reference]

    def not_computed(self) -> dict[str, str]:
        """Registered metrics this report lacks, each with what it would have needed."""
        have = {*self.metrics, *self.comparison}
        if self.reference is not None:
            have |= {"gap.average", "js_divergence"}
        return {name: ("a reference (the retrained model)" if info.needs_reference else
                       "the original model and relearn=True" if name == "relearn_steps" else "the original model")
                for name, info in METRICS.items() if name not in have}

    def __getitem__(self, name: str) -> float:
        if name == "js_divergence" and self.js_divergence is not None:
            return self.js_divergence
        if name.startswith("gap.") and name[4:] in self.gap:
            return self.gap[name[4:]]
        if name in self.comparison:
            return self.comparison[name]
        return self.metrics[name]

    def to_json(self, per_sample: bool = False) -> dict:
        """``{forget_accuracy, ..., zrf[, reference, gap, js_divergence][, comparison][, per_sample]}``.

        With ``per_sample`` also ``had_reference`` and ``not_computed`` (metric -> what it needed)."""
        out: dict = {k: _round(v) for k, v in self.metrics.items()}
        if self.reference is not None:
            out["reference"] = {k: _round(v) for k, v in self.reference.metrics.items()}
            out["gap"] = {k: _round(v) for k, v in self.gap.items()}
            out["js_divergence"] = _round(self.js_divergence)
        if self.comparison:
            out["comparison"] = {k: _round(v) for k, v in self.comparison.items()}
        if self.tasks:
            out["primary_task"] = self.primary_task
            out["tasks"] = {t: {k: _round(v) for k, v in accs.items()} for t, accs in self.tasks.items()}
            if self.reference is not None and self.reference.tasks:
                out["reference"]["tasks"] = {t: {k: _round(v) for k, v in accs.items()}
                                             for t, accs in self.reference.tasks.items()}
                if self.reference.uis is not None:
                    out["reference"]["uis"] = _round(self.reference.uis)
            if self.uis is not None:
                out["uis"] = _round(self.uis)
                out["uis_components"] = {k: _round(v) for k, v in self.uis_components.items()}
        if per_sample:
            out["had_reference"] = self.had_reference
            out["not_computed"] = self.not_computed()
            # one value per forget sample; matrices (predicted probabilities) stay out of the JSON
            out["per_sample"] = {
                k: [_round(float(x)) for x in v] for k, v in self.per_sample.items() if np.ndim(v) == 1
            }
        return out

    def dumps(self, per_sample: bool = False) -> str:
        return json.dumps(self.to_json(per_sample), indent=2)

    def rows(self) -> list[tuple[str, str, str, str]]:
        """(metric, value, reference, gap) rows for tables."""
        rows = []
        for name, value in self.metrics.items():
            ref = "" if self.reference is None else f"{self.reference.metrics[name]:.4f}"
            gap = f"{self.gap[name]:.4f}" if name in self.gap else ""
            rows.append((name, f"{value:.4f}", ref, gap))
        if self.reference is not None:
            rows.append(("gap.average", "", "", f"{self.gap['average']:.4f}"))
            rows.append(("js_divergence", f"{self.js_divergence:.4f}", "", ""))
        rows += [(name, f"{value:.4f}" if name != "relearn_steps" else f"{value:.0f}", "", "")
                 for name, value in self.comparison.items()]
        for task, accs in self.tasks.items():
            ref = self.reference.tasks.get(task, {}) if self.reference is not None else {}
            for key, value in accs.items():
                rows.append((f"{task}.{key}", f"{value:.4f}", f"{ref[key]:.4f}" if key in ref else "", ""))
        if self.uis is not None:
            ref_uis = self.reference.uis if self.reference is not None else None
            rows.append(("uis", f"{self.uis:.4f}", "" if ref_uis is None else f"{ref_uis:.4f}", ""))
        return rows

    def to_markdown(self) -> str:
        head = "| metric | value | retrained | gap |\n|---|---:|---:|---:|\n"
        return head + "\n".join(f"| {a} | {b} | {c} | {d} |" for a, b, c, d in self.rows()) + "\n"

    def rich_table(self, title: str = "evaluation"):
        from rich.table import Table

        table = Table(title=title)
        for col in ("metric", "value", "retrained", "gap"):
            table.add_column(col, justify="left" if col == "metric" else "right")
        for row in self.rows():
            table.add_row(*row)
        return table


def _round(value: float | None, digits: int = 6) -> float | None:
    if value is None:
        return None
    return round(float(value), digits) if math.isfinite(value) else float(value)


@dataclass
class Outputs:
    """A model's logits and per-sample losses on the three sets."""

    logits: dict[str, torch.Tensor]
    losses: dict[str, np.ndarray]


def model_outputs(
    model: nn.Module, split: ForgetSplit, test: IndexedDataset, device: str | torch.device | None = None
) -> Outputs:
    logits, losses = {}, {}
    for name, data in (("forget", split.forget), ("retain", split.retain), ("test", test)):
        out = predict_logits(model, data, device=device)
        logits[name] = out
        losses[name] = F.cross_entropy(out.double(), data.y, reduction="none").numpy()
    return Outputs(logits, losses)


def _base_metrics(out: Outputs, split: ForgetSplit, test: IndexedDataset, seed: int) -> dict[str, float]:
    return {
        "forget_accuracy": accuracy(out.logits["forget"].numpy(), split.forget.y.numpy()),
        "retain_accuracy": accuracy(out.logits["retain"].numpy(), split.retain.y.numpy()),
        "test_accuracy": accuracy(out.logits["test"].numpy(), test.y.numpy()),
        "mia_auc": mia_auc(out.losses["forget"], out.losses["test"], seed=seed),
        "mia_efficacy": mia_efficacy(out.losses["retain"], out.losses["test"], out.losses["forget"], seed=seed),
        "mia_population": population_attack(out.losses["retain"], out.losses["test"], out.losses["forget"]).member_rate,
    }


def _probs(logits: torch.Tensor) -> np.ndarray:
    return torch.softmax(logits.double(), dim=1).numpy()


def evaluate(
    model: nn.Module,
    split: ForgetSplit,
    test: IndexedDataset,
    reference: nn.Module | Report | None = None,
    *,
    original: nn.Module | None = None,
    relearn: bool = False,
    relearn_config: TrainConfig | None = None,
    relearn_max_steps: int = 200,
    device: str | torch.device | None = None,
    seed: int = 0,
) -> Report:
    """Measure what ``model`` remembers of ``split.forget`` and how much utility it kept.

    Args:
        model: the model to judge (usually the unlearned one).
        split: the forget/retain split the model was asked to forget.
        test: held-out data neither model trained on.
        reference: the retrained model (or its already computed Report) to compare to; the weight
            distance needs the model itself.
        original: the model before unlearning: adds ``weight_distance_original`` and enables ``relearn``.
        relearn: also measure ``relearn_steps``, fine-tuning steps on the forget set until forget accuracy
            is back at the original's (trains a copy; needs ``original``), at most ``relearn_max_steps``.
        relearn_config: optimizer and batch size for relearning (default: ``TrainConfig()``).
        device: where to run the models (default: where their parameters are).
        seed: seeds the membership-inference attacks, the random model behind ZRF and relearning.
    """
    if is_multitask(model):
        return _evaluate_multitask(model, split, test, reference, original=original, relearn=relearn,
                                   relearn_config=relearn_config, relearn_max_steps=relearn_max_steps, device=device,
                                   seed=seed)
    out = model_outputs(model, split, test, device)
    metrics = _base_metrics(out, split, test, seed)
    random_model = fresh_copy(model, seed)  # ZRF: the same architecture, untrained
    metrics["zrf"] = zrf_score(_probs(out.logits["forget"]),
                               _probs(predict_logits(random_model, split.forget, device=device)))
    report = Report(
        metrics=metrics,
        per_sample={
            "forget_ids": split.forget.ids.numpy(),
            "forget_loss": out.losses["forget"],
            "forget_probs": _probs(out.logits["forget"]),
        },
    )
    if original is not None:
        report.comparison["weight_distance_original"] = weight_distance(model, original)
        if relearn:
            from unlearnkit.relearn import relearn_time
            from unlearnkit.train import accuracy_on

            target = accuracy_on(original, split.forget, device=device)
            result = relearn_time(model, split.forget, target, relearn_config or TrainConfig(),
                                  max_steps=relearn_max_steps, device=device, seed=seed)
            report.comparison["relearn_steps"] = float(result.steps)
    elif relearn:
        raise ConfigError("relearn time needs the original model (pass original=...; on the CLI --original PATH)")
    if reference is None:
        return report
    ref = reference if isinstance(reference, Report) else evaluate(reference, split, test, device=device, seed=seed)
    report.reference = Report(metrics=dict(ref.metrics), per_sample=dict(ref.per_sample))
    report.gap = {k: abs(report.metrics[k] - ref.metrics[k]) for k in BASE_METRICS}
    report.gap["average"] = float(np.mean([report.gap[k] for k in GAP_METRICS]))
    p, q = report.per_sample["forget_probs"], ref.per_sample["forget_probs"]
    js = js_divergence_per_sample(p, q)
    report.per_sample["forget_js"] = js
    report.js_divergence = float(js.mean())
    report.per_sample["forget_kl"] = kl_divergence_per_sample(q, p)
    report.per_sample["forget_activation_distance"] = activation_distance_per_sample(p, q)
    report.comparison["kl_divergence"] = float(report.per_sample["forget_kl"].mean())
    report.comparison["activation_distance"] = float(report.per_sample["forget_activation_distance"].mean())
    if isinstance(reference, nn.Module):
        report.comparison["weight_distance"] = weight_distance(model, reference)
    return report


# --- multi-task models: per-task accuracies and the Unlearning Impact Score ----------------------------------------

class TaskHead(nn.Module):
    """One task of a multi-task model as a single-task classifier: the model's logits for ``task`` only."""

    def __init__(self, model: nn.Module, task: str):
        super().__init__()
        self.model, self.task = model, task
        self.slice = model.slices()[task]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)[:, self.slice]


def task_view(data: IndexedDataset, task: str, classes: int) -> IndexedDataset:
    """``data`` with ``task``'s labels as its ``y``; rows whose label for it an earlier partial deletion removed
    (``MASKED``) are left out."""
    keep = data.tasks[task] != MASKED
    if not bool(keep.all()):
        data = data.subset(keep)
    return IndexedDataset(data.x, data.tasks[task], data.ids, num_classes=classes, subjects=data.subjects,
                          origin=data.origin)


def task_accuracies(model: nn.Module, split: ForgetSplit, test: IndexedDataset,
                    device: str | torch.device | None = None) -> dict[str, dict[str, float]]:
    """Per task of a multi-task model: accuracy on the forget samples, the retained samples and the test set; for
    a scoped task whose forgotten labels are whole classes also ``test_accuracy_kept_classes`` (the test samples
    of the other classes). Labels are the true ones (a partial-task deletion's masks are not applied)."""
    whole = split.whole_classes()
    out = {}
    for name, data in (("forget", split.forget), ("retain", split.retain), ("test", test)):
        logits = predict_logits(model, data, device=device)
        for t, correct in task_correct(model, logits, task_targets(model, data)).items():
            labelled = data.tasks[t] != MASKED  # an earlier partial deletion's masks: no label to score
            correct = correct[labelled]
            out.setdefault(t, {})[f"{name}_accuracy"] = float(correct.float().mean()) if len(correct) else math.nan
            if name == "test" and whole.get(t):
                kept = ~torch.isin(data.tasks[t][labelled], split.forget.tasks[t].unique())
                out[t]["test_accuracy_kept_classes"] = float(correct[kept].float().mean()) if kept.any() else math.nan
    return out


def impact(original: dict[str, dict[str, float]], unlearned: dict[str, dict[str, float]], split: ForgetSplit
           ) -> tuple[float, dict[str, float]]:
    """The Unlearning Impact Score of ``unlearned`` against ``original`` (both from :func:`task_accuracies`)."""
    whole = split.whole_classes()

    def table(accs: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        return {t: {"test": a.get("test_accuracy_kept_classes", a["test_accuracy"]) if whole.get(t)
                    else a["test_accuracy"], "forget": a["forget_accuracy"]} for t, a in accs.items()}

    return unlearning_impact(table(original), table(unlearned), split.scoped_tasks(), whole)


def _evaluate_multitask(model: nn.Module, split: ForgetSplit, test: IndexedDataset,
                        reference: nn.Module | Report | None, *, original: nn.Module | None, device, seed: int,
                        **relearn) -> Report:
    """:func:`evaluate` for a multi-task model: the headline metrics on the first scoped task (the task view of
    the model and the data), plus per-task accuracies and, with ``original``, the UIS."""
    check_tasks(model, split.tasks)
    primary = split.scoped_tasks()[0]
    classes = dict(model.tasks)[primary]

    def view(m: nn.Module | None) -> nn.Module | None:
        return TaskHead(m, primary) if m is not None and is_multitask(m) else m

    view_split = ForgetSplit(task_view(split.forget, primary, classes), task_view(split.retain, primary, classes),
                             split.spec, split.seed)
    ref = reference
    if isinstance(reference, nn.Module):
        if not is_multitask(reference) or reference.tasks != model.tasks:
            raise ConfigError("the reference must be a multi-task model with the same tasks; pass the model retrained "
                              "from the same original checkpoint")
        ref = _evaluate_multitask(reference, split, test, None, original=original, device=device, seed=seed)
    report = evaluate(view(model), view_split, task_view(test, primary, classes), ref, original=view(original),
                      device=device, seed=seed, **relearn)
    if ref is not None:
        report.reference.tasks, report.reference.uis = ref.tasks, ref.uis
        if isinstance(reference, nn.Module):
            report.comparison["weight_distance"] = weight_distance(model, reference)
    if original is not None:
        report.comparison["weight_distance_original"] = weight_distance(model, original)
    report.primary_task = primary
    report.tasks = task_accuracies(model, split, test, device)
    if original is not None:
        report.uis, report.uis_components = impact(task_accuracies(original, split, test, device), report.tasks,
                                                   split)
    return report


# --- bias: how much a model relies on an attribute (attribute removal) ------------------------------------------
BIAS_KEYS = ("unbiased_accuracy", "bias_aligned_accuracy", "bias_conflicting_accuracy", "worst_group_accuracy",
             "leakage", "leakage_chance", "counterfactual_flip_rate", "demographic_parity_difference",
             "equalized_odds_difference")
COUNTERFACTUAL_VERSIONS = 3  # other attribute values tried per test sample for the flip rate


def bias_aligned(train: IndexedDataset, data: IndexedDataset, attribute: str) -> torch.Tensor:
    """Which rows of ``data`` are bias-aligned: their attribute is the value most frequent among the training
    samples of their label (for coloured data, the class's own colour; for biased-tabular, the label itself)."""
    values, labels = train.attributes[attribute], train.y
    n_values = int(torch.cat([values, data.attributes[attribute]]).max()) + 1
    counts = torch.zeros(train.num_classes, n_values, dtype=torch.int64)
    counts.index_put_((labels, values), torch.ones_like(labels), accumulate=True)
    return data.attributes[attribute] == counts.argmax(1)[data.y]


def bias_report(model: nn.Module, bundle, attribute: str, *, reference: nn.Module | None = None,
                device: str | torch.device | None = None, seed: int = 0) -> dict:
    """How much ``model`` relies on ``attribute``, on ``bundle.test`` (whose attribute is independent of the label
    in the biased sources): the keys of :data:`BIAS_KEYS`, and with ``reference`` (e.g. ``retrain-balanced``'s
    model) its values and the absolute gaps.

    - accuracies: unbiased (all of the test set), bias-aligned and bias-conflicting (aligned: the attribute is
      the one most frequent for the sample's label in training, :func:`bias_aligned`), worst group (label x
      attribute);
    - ``leakage``: balanced accuracy of a logistic probe for the attribute on the model's penultimate features (fit
      on a seeded half of the test set, scored on the other half), with its chance level;
    - ``counterfactual_flip_rate``: share of test samples whose prediction changes when only the attribute
      changes, over up to 3 other values per sample (None when the source cannot re-render its samples);
    - ``demographic_parity_difference``, ``equalized_odds_difference``: fairlearn's, one-vs-rest over classes
      (:mod:`unlearnkit.metrics.fairness`).
    """
    from unlearnkit.metrics import fairness
    from unlearnkit.models import penultimate
    from unlearnkit.unlearning import check_attribute

    test = bundle.test
    check_attribute(test, attribute)
    dev = resolve_device(device)
    model = model.to(dev)
    values = test.attributes[attribute].numpy()
    y = test.y.numpy()
    pred = predict_logits(model, test, device=dev).argmax(1).numpy()
    aligned = bias_aligned(bundle.train, test, attribute).numpy()
    report: dict[str, float | None] = {
        "unbiased_accuracy": fairness.unbiased_accuracy(pred, y),
        "bias_aligned_accuracy": fairness.bias_aligned_accuracy(pred, y, aligned) if aligned.any() else None,
        "bias_conflicting_accuracy": fairness.bias_conflicting_accuracy(pred, y, aligned)
        if (~aligned).any() else None,
        "worst_group_accuracy": fairness.worst_group_accuracy(pred, y, values),
    }
    was_training = model.training
    model.eval()
    with torch.no_grad():
        feats = torch.cat([penultimate(model, test.x[i:i + 1024].to(dev))[0].float().cpu()
                           for i in range(0, len(test), 1024)]).numpy()
    model.train(was_training)
    order = torch.randperm(len(test), generator=torch.Generator().manual_seed(seed)).numpy()
    half = len(order) // 2
    leak = fairness.attribute_leakage(feats[order[:half]], values[order[:half]], feats[order[half:]],
                                      values[order[half:]], seed=seed)
    report["leakage"], report["leakage_chance"] = leak.leakage, leak.chance
    report["counterfactual_flip_rate"] = None
    if bundle.counterfactual is not None:
        n_values = int(values.max()) + 1
        gen = torch.Generator().manual_seed(seed)
        shifts = [torch.randint(1, n_values, (len(test),), generator=gen) for _ in range(min(COUNTERFACTUAL_VERSIONS,
                                                                                              n_values - 1))]
        versions = []
        for shift in shifts:
            other = (test.attributes[attribute] + shift) % n_values
            x = bundle.counterfactual(test, attribute, other)
            versions.append(predict_logits(model, IndexedDataset(x, test.y, test.ids, test.num_classes),
                                           device=dev).argmax(1).numpy())
        report["counterfactual_flip_rate"] = fairness.counterfactual_flip_rate(pred, np.stack(versions))
    report["demographic_parity_difference"] = fairness.demographic_parity_difference(pred, values)
    with warnings.catch_warnings():  # a (label, attribute) group absent from a small test split: fairlearn counts
        warnings.simplefilter("ignore", RuntimeWarning)  # its rates as 0, documented in metrics.fairness
        report["equalized_odds_difference"] = fairness.equalized_odds_difference(pred, y, values)
    out = {"bias": {k: _round(report[k]) for k in BIAS_KEYS}}
    if reference is not None:
        ref = bias_report(reference, bundle, attribute, device=dev, seed=seed)["bias"]
        out["reference"] = ref
        out["gap"] = {k: None if out["bias"][k] is None or ref[k] is None else _round(abs(out["bias"][k] - ref[k]))
                      for k in BIAS_KEYS if k != "leakage_chance"}
    return out


# --- poisoned data: the attack's success and its removal ------------------------------------------------------------

POISON_KEYS = ("attack_success_rate", "corrected_accuracy", "clean_accuracy", "flipped_class_accuracy")


def poison_report(model: nn.Module, bundle, *, device: str | torch.device | None = None) -> dict:
    """The poisoning metrics of ``model`` on a poisoned bundle (``bundle.poison``): for BadNets the attack success
    rate and the corrected accuracy on the triggered test inputs, for label flips the accuracy on the two swapped
    classes' test samples; always the clean (test) accuracy. Keys: those of :data:`POISON_KEYS` that apply, plus
    ``kind`` and ``target`` or ``classes``."""
    from unlearnkit.metrics.poison import attack_success_rate, class_pair_accuracy, corrected_accuracy

    info = bundle.poison
    if info is None:
        raise ConfigError("this data is not poisoned; load it with --data-option poison=badnets (or label-flip)")
    test_pred = predict_logits(model, bundle.test, device=device).argmax(1).numpy()
    out: dict = {"kind": info.kind, "clean_accuracy": float(np.mean(test_pred == bundle.test.y.numpy()))}
    if info.kind == "badnets":
        pred = predict_logits(model, info.triggered, device=device).argmax(1).numpy()
        out.update(target=info.target, attack_success_rate=attack_success_rate(pred, info.target),
                   corrected_accuracy=corrected_accuracy(pred, info.triggered.y.numpy()))
    else:
        out.update(classes=list(info.classes),
                   flipped_class_accuracy=class_pair_accuracy(test_pred, bundle.test.y.numpy(), info.classes))
    return out
