"""``compare``: train one original model, retrain the exact reference, run methods, evaluate each.

Every method is judged on the same split against the same retrained model; ``speedup`` is the
retraining time divided by the method's time, both measured in this process.

``compare_attribute`` does the same for attribute removal (methods of kind "attribute"): the reference is
``retrain-balanced`` (retraining with group-balanced sampling), and every model is judged by its bias metrics
(:func:`unlearnkit.evaluation.bias_report`) on the test split.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from unlearnkit.data import DatasetBundle, select, shrink_train
from unlearnkit.errors import ConfigError
from unlearnkit.evaluation import BIAS_KEYS, Report, bias_report, evaluate
from unlearnkit.methods import METHODS, methods_of_kind
from unlearnkit.models.multitask import is_multitask
from unlearnkit.runs import TrainedModel, train_model
from unlearnkit.train import TrainConfig
from unlearnkit.unlearning import UnlearnResult, check_attribute, remove_attribute, unlearn

# What `compare` trains when the user does not say, per dataset, where the plain training recipe would not
# memorise. On all 60,000 Fashion-MNIST images the cnn generalises (3 epochs: train 92% vs test 90%), so a
# random forget set is as well predicted as unseen data before any unlearning and every method looks perfect.
# 10,000 images for 20 epochs memorise (retain accuracy 98.4% vs test 88.4%, docs/results/tuning/), which gives
# random forgetting something to remove. Each field applies only where the user gave no value of their own.
MEMORISING_DEFAULTS: dict[str, dict[str, int]] = {
    "fashion-mnist": {"train_size": 10_000, "epochs": 20},
}


def apply_compare_defaults(bundle: DatasetBundle, *, train_size: int | None, epochs: int | None
                           ) -> tuple[DatasetBundle, int | None]:
    """The data and epochs of a comparison: the user's values where given (``train_size`` is assumed already
    applied to ``bundle``), else the dataset's ``MEMORISING_DEFAULTS``. The default subset is taken only
    from a larger training set; ``epochs`` None means the dataset's own recipe."""
    defaults = MEMORISING_DEFAULTS.get(bundle.source, {})
    size = defaults.get("train_size")
    if train_size is None and size is not None and len(bundle.train) > size:
        shrink_train(bundle, size)
    return bundle, epochs if epochs is not None else defaults.get("epochs")


def warm_up_optimizers() -> None:
    """Pay torch's one-time costs of the first optimizer (it imports ``torch._dynamo``, about 1.6 s on a
    2-core CPU) and of the first ``torch.func`` transform (per-sample gradients) before any timed run, so that
    they land in no method's seconds."""
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    weight = torch.zeros(2)
    torch.func.vmap(torch.func.grad(lambda w, x: (w * x).sum()), in_dims=(None, 0))(weight, torch.zeros(3, 2))


ATTRIBUTE_REFERENCE = "retrain-balanced"  # the exact reference of attribute removal, as retrain is for samples


def _method_names(methods: str | list[str], every: list[str], choices: list[str]) -> list[str]:
    """``"all"`` (-> ``every``), a comma list or a list -> names; unknown names and an empty list refused."""
    names = list(every) if methods == "all" else (
        [m.strip() for m in methods.split(",") if m.strip()] if isinstance(methods, str) else list(methods)
    )
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        raise ConfigError(f"unknown method(s) {unknown}; choose from: {', '.join(choices)} or all")
    if not names:
        example = ",".join([m for m in every if m not in ("retrain", ATTRIBUTE_REFERENCE)][:2])
        raise ConfigError(f"no method given; pass --methods all or a comma list such as {example}")
    needing = [m for m in names if METHODS[m].requires]
    if needing:
        raise ConfigError(f"{needing[0]} needs {METHODS[needing[0]].requires}, which compare's freshly trained "
                          f"original lacks; use `unlearn forget --method {needing[0]}` on such a checkpoint")
    return names


def resolve_methods(methods: str | list[str]) -> list[str]:
    """``"all"`` or a comma list -> registered names, retrain first (it is the reference). ``all`` leaves out
    methods that need training-time files (``requires``: sisa, amnesiac), which compare's fresh original lacks;
    naming one is refused."""
    samples = methods_of_kind("samples")
    names = _method_names(methods, [m for m in samples if METHODS[m].requires is None], samples)
    other = [m for m in names if METHODS[m].kind != "samples"]
    if other:
        raise ConfigError(f"{other[0]} removes an attribute, not samples; compare it with --attribute NAME instead of "
                          "--forget")
    return ["retrain"] + [m for m in names if m != "retrain"]


def resolve_attribute_methods(methods: str | list[str]) -> list[str]:
    """``"all"`` (every method of kind "attribute") or a comma list -> registered names, ``retrain-balanced``
    first (it is the reference); a method that removes samples is refused."""
    attribute = methods_of_kind("attribute")
    names = _method_names(methods, [m for m in attribute if METHODS[m].requires is None], attribute)
    other = [m for m in names if METHODS[m].kind != "attribute"]
    if other:
        raise ConfigError(f"{other[0]} removes samples, not an attribute; compare it with --forget SPEC instead of "
                          "--attribute")
    return [ATTRIBUTE_REFERENCE] + [m for m in names if m != ATTRIBUTE_REFERENCE]


class TableMixin:
    """The rich and Markdown tables of a comparison: ``HEADERS``, ``rows()`` and ``title()`` give their content."""

    HEADERS: tuple[str, ...] = ()

    def rows(self) -> list[list[str]]:
        raise NotImplementedError

    def title(self) -> str:
        raise NotImplementedError

    def rich_table(self):
        from rich.markup import escape
        from rich.table import Table

        table = Table(title=escape(self.title()))
        for h in self.HEADERS:
            table.add_column(h, justify="left" if h == "method" else "right")
        for row in self.rows():
            table.add_row(*(escape(cell) for cell in row))
        return table

    def to_markdown(self) -> str:
        lines = ["| " + " | ".join(self.HEADERS) + " |", "|---" + "|---:" * (len(self.HEADERS) - 1) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows()]
        return "\n".join(lines) + "\n"


@dataclass
class Comparison(TableMixin):
    dataset: str
    forget: str
    model: str
    seed: int
    n_forget: int
    n_retain: int
    train_seconds: float
    original: Report
    train_config: dict = field(default_factory=dict)  # the original's recipe, which retrain reproduces
    results: dict[str, tuple[UnlearnResult, Report]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # method -> why it could not run on this model

    @property
    def retrain_seconds(self) -> float:
        return self.results["retrain"][0].seconds

    def method_json(self, name: str) -> dict:
        result, report = self.results[name]
        return {
            **report.to_json(),
            "seconds": round(result.seconds, 4),
            "speedup": round(self.retrain_seconds / max(result.seconds, 1e-9), 3),
            "notes": result.notes,
        }

    def to_json(self) -> dict:
        return {
            "dataset": self.dataset,
            "forget": self.forget,
            "model": self.model,
            "seed": self.seed,
            "n_forget": self.n_forget,
            "n_retain": self.n_retain,
            "train_seconds": round(self.train_seconds, 3),
            "train_config": dict(self.train_config),
            "original": self.original.to_json(),
            "methods": {name: self.method_json(name) for name in self.results},
            "skipped": dict(self.skipped),
        }

    COLUMNS = ("forget_accuracy", "retain_accuracy", "test_accuracy", "mia_efficacy")

    def __post_init__(self) -> None:
        if self.original.uis is not None:  # multi-task: the Unlearning Impact Score joins the table
            self.HEADERS = (*type(self).HEADERS, "UIS")

    def rows(self) -> list[list[str]]:
        uis = self.original.uis is not None
        rows = [["original", *(f"{self.original.metrics[c]:.4f}" for c in self.COLUMNS),
                 f"{self.original.gap['average']:.4f}", f"{self.original.js_divergence:.4f}", "", "",
                 *([f"{self.original.uis:.4f}"] if uis else [])]]
        for name in self.results:
            d = self.method_json(name)
            rows.append([name, *(f"{d[c]:.4f}" for c in self.COLUMNS), f"{d['gap']['average']:.4f}",
                         f"{d['js_divergence']:.4f}", f"{d['seconds']:.2f}", f"{d['speedup']:.1f}x",
                         *([f"{d['uis']:.4f}"] if uis else [])])
        return rows

    HEADERS = ("method", "forget", "retain", "test", "MIA-eff", "gap.avg", "JS", "sec", "speedup")

    def title(self) -> str:
        return (f"{self.dataset} / {self.model} / forget {self.forget} ({self.n_forget} forget, {self.n_retain} "
                f"retain, seed {self.seed})")


def train_original(bundle: DatasetBundle, model: str | None, config: TrainConfig | None, device, progress,
                   original: TrainedModel | None, say: Callable[[str], None]) -> TrainedModel:
    """The comparison's original: ``original`` when given, else a model trained on ``bundle.train``."""
    if original is not None:
        return original
    say("training the original model")
    return train_model(bundle, model, config, device=device, progress=progress)


def compare(
    bundle: DatasetBundle,
    *,
    forget: str = "random:0.1",
    methods: str | list[str] = "all",
    model: str | None = None,
    config: TrainConfig | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool | None = None,
    original: TrainedModel | None = None,
    on_step: Callable[[str], None] | None = None,
) -> Comparison:
    """Train (or take) an original model, then retrain and run each method on one split.

    Args:
        bundle: the data (see :func:`unlearnkit.data.load_dataset`).
        forget: forget spec; ``seed`` selects the random subset and seeds every method.
        methods: ``"all"`` or names; ``retrain`` always runs, as the reference.
        model, config: architecture and recipe of the original (defaults per dataset). The CLI first applies
            :func:`apply_compare_defaults` (Fashion-MNIST: a memorising subset and epochs); call it yourself
            for the same original from Python.
        original: an already trained original (skips training).
        on_step: called with a short status line before each stage (for progress output).
    """
    names = resolve_methods(methods)
    say = on_step or (lambda _msg: None)
    original = train_original(bundle, model, config, device, progress, original, say)
    train_config = TrainConfig.from_dict(original.meta.train_config)
    skipped = {}
    if methods == "all" and not any(isinstance(m, torch.nn.Conv2d) for m in original.model.modules()):
        # "all" means every method that applies: conv-only methods cannot run on a model without convs
        skipped = {n: "needs conv layers; the model has none" for n in names if METHODS[n].needs_conv}
        names = [n for n in names if n not in skipped]
    multitask = is_multitask(original.model)
    if methods == "all" and multitask:  # likewise, methods that do not serve multi-task models
        skipped.update({n: "does not serve multi-task models" for n in names if not METHODS[n].multitask})
        names = [n for n in names if n not in skipped]
    split = select(bundle.train, forget, seed=seed)
    # a multi-task report measures the UIS against the original
    against = {"original": original.model} if multitask else {}
    warm_up_optimizers()
    results: dict[str, tuple[UnlearnResult, Report]] = {}
    reference: Report | None = None
    for name in names:
        say(f"running {name}")
        result = unlearn(original.model, split, name, train_config=train_config, device=device, seed=seed,
                         holdout=bundle.test, progress=progress)
        if reference is None:  # retrain runs first
            reference = evaluate(result.model, split, bundle.test, device=device, seed=seed, **against)
        results[name] = (result, evaluate(result.model, split, bundle.test, reference, device=device, seed=seed,
                                          **against))
    say("evaluating the original model")
    original_report = evaluate(original.model, split, bundle.test, reference, device=device, seed=seed, **against)
    return Comparison(
        dataset=bundle.source, forget=split.spec, model=original.meta.model_name, seed=seed,
        n_forget=len(split.forget), n_retain=len(split.retain), train_seconds=original.seconds,
        original=original_report, train_config=train_config.to_dict(), results=results, skipped=skipped,
    )



# --- attribute removal ------------------------------------------------------------------------------------------
def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


@dataclass
class AttributeComparison(TableMixin):
    """The bias metrics of an original, of ``retrain-balanced`` (the reference) and of each attribute method, with
    seconds and speedups; ``results`` maps a method to its result and its bias values (the ``BIAS_KEYS``)."""

    dataset: str
    attribute: str
    model: str
    seed: int
    n_train: int
    n_val: int
    train_seconds: float
    original: dict  # the original's bias values
    train_config: dict = field(default_factory=dict)
    results: dict[str, tuple[UnlearnResult, dict]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    reference: str = ATTRIBUTE_REFERENCE

    @property
    def reference_seconds(self) -> float:
        return self.results[self.reference][0].seconds

    def gap(self, values: dict) -> dict:
        """Absolute differences to the reference's bias values, as ``bias_report(..., reference=...)`` gives them
        (no ``leakage_chance``; None where either value is None)."""
        ref = self.results[self.reference][1]
        return {k: None if values[k] is None or ref[k] is None else round(abs(values[k] - ref[k]), 6)
                for k in BIAS_KEYS if k != "leakage_chance"}

    def method_json(self, name: str) -> dict:
        result, values = self.results[name]
        return {
            "bias": dict(values),
            "gap": self.gap(values),
            "seconds": round(result.seconds, 4),
            "speedup": round(self.reference_seconds / max(result.seconds, 1e-9), 3),
            "notes": result.notes,
            "config": result.config,
        }

    def to_json(self) -> dict:
        return {
            "dataset": self.dataset,
            "attribute": self.attribute,
            "model": self.model,
            "seed": self.seed,
            "n_train": self.n_train,
            "n_val": self.n_val,
            "train_seconds": round(self.train_seconds, 3),
            "train_config": dict(self.train_config),
            "reference": self.reference,
            "original": {"bias": dict(self.original), "gap": self.gap(self.original)},
            "methods": {name: self.method_json(name) for name in self.results},
            "skipped": dict(self.skipped),
        }

    COLUMNS = ("unbiased_accuracy", "bias_conflicting_accuracy", "worst_group_accuracy", "leakage",
               "counterfactual_flip_rate", "demographic_parity_difference")
    HEADERS = ("method", "unbiased", "conflicting", "worst group", "leakage", "CF flip", "DP diff", "sec", "speedup")

    def rows(self) -> list[list[str]]:
        rows = [["original", *(_fmt(self.original[c]) for c in self.COLUMNS), "", ""]]
        for name in self.results:
            d = self.method_json(name)
            rows.append([name, *(_fmt(d["bias"][c]) for c in self.COLUMNS), f"{d['seconds']:.2f}",
                         f"{d['speedup']:.1f}x"])
        return rows

    def title(self) -> str:
        return (f"{self.dataset} / {self.model} / remove attribute {self.attribute} ({self.n_train} train, "
                f"{self.n_val} val, seed {self.seed}; reference {self.reference})")


def compare_attribute(
    bundle: DatasetBundle,
    *,
    attribute: str,
    methods: str | list[str] = "all",
    model: str | None = None,
    config: TrainConfig | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool | None = None,
    original: TrainedModel | None = None,
    on_step: Callable[[str], None] | None = None,
) -> AttributeComparison:
    """Train (or take) an original model, then run ``retrain-balanced`` and each attribute method on it.

    Args:
        bundle: data with the attribute on every split (the biased sources: ``colored-digits``, ...); methods get
            its ``val`` split for calibration, and the bias metrics are measured on its test split.
        attribute: the attribute to remove (e.g. ``"color"``); checked before anything trains.
        methods: ``"all"`` (every method of kind "attribute") or names; ``retrain-balanced`` always runs, first, as
            the reference, and ``speedup`` is its seconds over a method's.
        model, config, seed, device, progress, original, on_step: as in :func:`compare`.
    """
    names = resolve_attribute_methods(methods)
    check_attribute(bundle.train, attribute)
    check_attribute(bundle.test, attribute)
    say = on_step or (lambda _msg: None)
    original = train_original(bundle, model, config, device, progress, original, say)
    train_config = TrainConfig.from_dict(original.meta.train_config)
    warm_up_optimizers()
    results: dict[str, tuple[UnlearnResult, dict]] = {}
    for name in names:
        say(f"running {name}")
        result = remove_attribute(original.model, bundle, attribute, name, train_config=train_config, device=device,
                                  seed=seed, progress=progress)
        results[name] = (result, bias_report(result.model, bundle, attribute, device=device, seed=seed)["bias"])
    say("evaluating the original model")
    original_bias = bias_report(original.model, bundle, attribute, device=device, seed=seed)["bias"]
    return AttributeComparison(
        dataset=bundle.source, attribute=attribute, model=original.meta.model_name, seed=seed,
        n_train=len(bundle.train), n_val=0 if bundle.val is None else len(bundle.val),
        train_seconds=original.seconds, original=original_bias, train_config=train_config.to_dict(),
        results=results,
    )
