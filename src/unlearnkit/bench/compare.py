"""``compare``: train one original model, retrain the exact reference, run methods, evaluate each.

Every method is judged on the same split against the same retrained model; ``speedup`` is the
retraining time divided by the method's time, both measured in this process.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from unlearnkit.data import DatasetBundle, select, shrink_train
from unlearnkit.errors import ConfigError
from unlearnkit.evaluation import Report, evaluate
from unlearnkit.methods import METHODS, methods_of_kind
from unlearnkit.runs import TrainedModel, train_model
from unlearnkit.train import TrainConfig
from unlearnkit.unlearning import UnlearnResult, unlearn

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
    """Pay torch's one-time cost of the first optimizer (it imports ``torch._dynamo``, about 1.6 s on a
    2-core CPU) before any timed run, so that it lands in no method's seconds."""
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)


def resolve_methods(methods: str | list[str]) -> list[str]:
    """``"all"`` or a comma list -> registered names, retrain first (it is the reference). ``all`` leaves out
    methods that need training-time files (``requires``: sisa, amnesiac), which compare's fresh original lacks;
    naming one is refused."""
    samples = methods_of_kind("samples")
    names = [m for m in samples if METHODS[m].requires is None] if methods == "all" else (
        [m.strip() for m in methods.split(",") if m.strip()] if isinstance(methods, str) else list(methods)
    )
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        raise ConfigError(f"unknown method(s) {unknown}; choose from: {', '.join(samples)} or all")
    if not names:
        raise ConfigError("no method given; pass --methods all or a comma list such as finetune,gradient-ascent")
    other = [m for m in names if METHODS[m].kind != "samples"]
    if other:
        raise ConfigError(f"{other[0]} removes an attribute, not samples; compare it with --attribute NAME instead of "
                          "--forget")
    needing = [m for m in names if METHODS[m].requires]
    if needing:
        raise ConfigError(f"{needing[0]} needs {METHODS[needing[0]].requires}, which compare's freshly trained "
                          f"original lacks; use `unlearn forget --method {needing[0]}` on such a checkpoint")
    return ["retrain"] + [m for m in names if m != "retrain"]


@dataclass
class Comparison:
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

    def rows(self) -> list[list[str]]:
        rows = [["original", *(f"{self.original.metrics[c]:.4f}" for c in self.COLUMNS),
                 f"{self.original.gap['average']:.4f}", f"{self.original.js_divergence:.4f}", "", ""]]
        for name in self.results:
            d = self.method_json(name)
            rows.append([name, *(f"{d[c]:.4f}" for c in self.COLUMNS), f"{d['gap']['average']:.4f}",
                         f"{d['js_divergence']:.4f}", f"{d['seconds']:.2f}", f"{d['speedup']:.1f}x"])
        return rows

    HEADERS = ("method", "forget", "retain", "test", "MIA-eff", "gap.avg", "JS", "sec", "speedup")

    def rich_table(self):
        from rich.markup import escape
        from rich.table import Table

        table = Table(title=f"{self.dataset} / {self.model} / forget {escape(self.forget)} "
                            f"({self.n_forget} forget, {self.n_retain} retain, seed {self.seed})")
        for h in self.HEADERS:
            table.add_column(h, justify="left" if h == "method" else "right")
        for row in self.rows():
            table.add_row(*row)
        return table

    def to_markdown(self) -> str:
        lines = ["| " + " | ".join(self.HEADERS) + " |", "|---" + "|---:" * (len(self.HEADERS) - 1) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows()]
        return "\n".join(lines) + "\n"


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
    if original is None:
        say("training the original model")
        original = train_model(bundle, model, config, device=device, progress=progress)
    train_config = TrainConfig.from_dict(original.meta.train_config)
    skipped = {}
    if methods == "all" and not any(isinstance(m, torch.nn.Conv2d) for m in original.model.modules()):
        # "all" means every method that applies: conv-only methods cannot run on a model without convs
        skipped = {n: "needs conv layers; the model has none" for n in names if METHODS[n].needs_conv}
        names = [n for n in names if n not in skipped]
    split = select(bundle.train, forget, seed=seed)
    warm_up_optimizers()
    results: dict[str, tuple[UnlearnResult, Report]] = {}
    reference: Report | None = None
    for name in names:
        say(f"running {name}")
        result = unlearn(original.model, split, name, train_config=train_config, device=device, seed=seed,
                         holdout=bundle.test, progress=progress)
        if reference is None:  # retrain runs first
            reference = evaluate(result.model, split, bundle.test, device=device, seed=seed)
        results[name] = (result, evaluate(result.model, split, bundle.test, reference, device=device, seed=seed))
    say("evaluating the original model")
    original_report = evaluate(original.model, split, bundle.test, reference, device=device, seed=seed)
    return Comparison(
        dataset=bundle.source, forget=split.spec, model=original.meta.model_name, seed=seed,
        n_forget=len(split.forget), n_retain=len(split.retain), train_seconds=original.seconds,
        original=original_report, train_config=train_config.to_dict(), results=results, skipped=skipped,
    )
