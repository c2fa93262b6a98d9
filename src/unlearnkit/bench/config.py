"""Benchmark configs: a TOML file naming datasets, forget specs, methods (with grids) and seeds.

    [bench]
    name = "digits-smoke"
    seeds = [0, 1]                       # each seeds the forget split and the methods
    metrics = { neurips = { models = 8 } }   # optional: the NeurIPS-2023 forgetting quality with N models

    [[datasets]]
    name = "digits"                      # a source from `unlearn datasets`
    model = "mlp"                        # default: the source's default model
    train_size = 600                     # optional: a deterministic subset
    recipe = { epochs = 10 }             # optional TrainConfig overrides of the dataset's recipe
    data_dir = "$CIFAR10_DIR"            # optional: the source's files ($VARS and ~ expanded)
    options = {}                         # optional: the source's data options (`unlearn datasets`)
    forget = ["random:0.1", "class:3"]

    [methods]
    finetune = {}                        # the method's defaults
    gradient-ascent = { lr_scale = [0.1, 0.2] }   # a list is a grid: one variant per value

An overlay (``unlearn bench CONFIG --overlay tuned.toml``, as ``unlearn tune`` writes it) holds only a
``[methods]`` table; each of its entries replaces the config's entry for that method.

Everything is validated by :func:`load_config` before anything trains: unknown sections, methods,
parameters and dataset sources, bad forget specs and recipes each give one clear error. ``retrain`` is
always run (it is every cell's reference) and needs no entry.
"""

from __future__ import annotations

import itertools
import json
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

from unlearnkit.data.sources import SOURCES, check_data_options
from unlearnkit.errors import ConfigError
from unlearnkit.methods import METHODS
from unlearnkit.train import TrainConfig

FORGET_KINDS = ("random", "class", "ids", "subjects", "attribute", "poisoned")


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    model: str
    forget: tuple[str, ...]
    train_size: int | None = None
    subjects: int | None = None
    recipe: dict = field(default_factory=dict)
    data_dir: str | None = None  # where the source's files are (not part of the key: moving them changes nothing)
    options: dict = field(default_factory=dict)  # the source's data options, checked, defaults filled

    @property
    def key(self) -> str:
        """Identifies the original model: data (with the source's options), model and recipe."""
        # options join the key only for sources that declare some, so the keys of the others stay as they were
        extra = {"options": self.options} if self.options else {}
        return json.dumps({"name": self.name, "model": self.model, "train_size": self.train_size,
                           "subjects": self.subjects, "recipe": self.recipe, **extra}, sort_keys=True)


@dataclass(frozen=True)
class BenchConfig:
    name: str
    seeds: tuple[int, ...]
    datasets: tuple[DatasetEntry, ...]
    methods: dict[str, tuple[dict, ...]]  # method -> parameter variants (the grid expanded), retrain first
    raw_methods: dict[str, dict] = field(default_factory=dict)  # the [methods] tables as written (for tune)
    metrics: dict[str, dict] = field(default_factory=dict)  # optional metrics and their options: {"neurips": {...}}


def _grid(method: str, params: dict) -> tuple[dict, ...]:
    known = METHODS[method].params()
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ConfigError(f"[methods] {method}: unknown parameter(s) {unknown}; it has: {', '.join(known) or 'none'}")
    keys = sorted(params)
    values = [v if isinstance(v, list) else [v] for v in (params[k] for k in keys)]
    variants = tuple(dict(zip(keys, combo, strict=True)) for combo in itertools.product(*values))
    for variant in variants:
        METHODS[method](**variant)  # the method's own Config validates each value (raises ConfigError)
    return variants


def _dataset(entry: dict, index: int) -> DatasetEntry:
    where = f"[[datasets]] #{index + 1}"
    allowed = {"name", "model", "forget", "train_size", "subjects", "recipe", "data_dir", "options"}
    unknown = sorted(set(entry) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed: {', '.join(sorted(allowed))}")
    name = entry.get("name")
    if name not in SOURCES:
        raise ConfigError(f"{where}: unknown dataset {name!r}; choose one of: {', '.join(SOURCES)}")
    forget = entry.get("forget")
    if not forget or not isinstance(forget, list):
        raise ConfigError(f"{where} ({name}): forget must be a non-empty list of specs, e.g. [\"random:0.1\"]")
    for spec in forget:
        if not isinstance(spec, str) or spec.split(":", 1)[0].strip().lower() not in FORGET_KINDS or ":" not in spec:
            raise ConfigError(f"{where} ({name}): bad forget spec {spec!r}; use one of "
                              f"{', '.join(k + ':...' for k in FORGET_KINDS)}")
    recipe = dict(entry.get("recipe", {}))
    known = {f.name for f in fields(TrainConfig)} - {"seed"}
    if set(recipe) - known:
        raise ConfigError(f"{where} ({name}): unknown recipe key(s) {sorted(set(recipe) - known)}; "
                          f"known: {', '.join(sorted(known))}")
    TrainConfig(**recipe)  # validates values
    data_dir = entry.get("data_dir")
    if data_dir is not None:
        if not isinstance(data_dir, str) or not data_dir:
            raise ConfigError(f"{where} ({name}): data_dir must be a path string, got {data_dir!r}")
        data_dir = os.path.expanduser(os.path.expandvars(data_dir))  # "$CIFAR10_DIR" or "~/data/cifar10"
    options = entry.get("options", {})
    if not isinstance(options, dict):
        raise ConfigError(f"{where} ({name}): options must be a table of the source's data options, e.g. "
                          f"options = {{ key = value }}, got {options!r}")
    try:
        options = check_data_options(name, options, flag="options key")
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return DatasetEntry(name=name, model=entry.get("model") or SOURCES[name].default_model, forget=tuple(forget),
                        train_size=entry.get("train_size"), subjects=entry.get("subjects"), recipe=recipe,
                        data_dir=data_dir, options=options)


# Optional metrics (the standard ones, evaluate()'s, are always computed) -> their options and defaults.
OPTIONAL_METRICS = {"neurips": {"models": 8, "calibration": False}}


def _metrics(value) -> dict[str, dict]:
    """``metrics = ["neurips"]`` or ``metrics = { neurips = { models = 16 } }`` -> {name: options}."""
    if isinstance(value, list):
        value = {name: {} for name in value}
    if not isinstance(value, dict):
        raise ConfigError(f"[bench] metrics must be a list of names or a table, got {value!r}; e.g. "
                          "metrics = { neurips = { models = 8 } }")
    out = {}
    for name, options in value.items():
        if name not in OPTIONAL_METRICS:
            raise ConfigError(f"[bench] metrics: unknown metric {name!r}; optional metrics: "
                              f"{', '.join(OPTIONAL_METRICS)} (the standard ones are always computed)")
        if not isinstance(options, dict) or set(options) - set(OPTIONAL_METRICS[name]):
            raise ConfigError(f"[bench] metrics.{name}: options must be a table with keys among "
                              f"{', '.join(OPTIONAL_METRICS[name])}, got {options!r}")
        out[name] = {**OPTIONAL_METRICS[name], **options}
    models = out.get("neurips", {}).get("models", 2)
    if not isinstance(models, int) or isinstance(models, bool) or models < 2:
        raise ConfigError(f"[bench] metrics.neurips.models must be an integer >= 2 (two populations of N models), "
                          f"got {models!r}")
    return out


def parse_config(data: dict) -> BenchConfig:
    """Validate a parsed TOML document (see the module docstring) into a :class:`BenchConfig`."""
    unknown = sorted(set(data) - {"bench", "datasets", "methods"})
    if unknown:
        raise ConfigError(f"unknown section(s) {unknown}; a bench config has [bench], [[datasets]] and [methods]")
    bench = data.get("bench", {})
    if set(bench) - {"name", "seeds", "metrics"}:
        raise ConfigError(f"[bench]: unknown key(s) {sorted(set(bench) - {'name', 'seeds', 'metrics'})}; "
                          "allowed: name, seeds, metrics")
    seeds = bench.get("seeds", [0])
    if not seeds or not all(isinstance(s, int) for s in seeds) or len(set(seeds)) != len(seeds):
        raise ConfigError(f"[bench] seeds must be a non-empty list of distinct integers, got {seeds!r}")
    datasets = data.get("datasets")
    if not datasets:
        raise ConfigError("the config names no dataset; add a [[datasets]] table with name and forget")
    methods = dict(data.get("methods", {}))
    unknown_methods = sorted(set(methods) - set(METHODS))
    if unknown_methods:
        raise ConfigError(f"[methods]: unknown method(s) {unknown_methods}; choose from: {', '.join(METHODS)}")
    grids = {"retrain": ({},)}
    for method, params in methods.items():
        if method == "retrain":
            continue
        if not isinstance(params, dict):
            raise ConfigError(f"[methods] {method} must be a table of parameters, e.g. {method} = {{}}")
        if METHODS[method].kind != "samples":
            raise ConfigError(f"[methods] {method} removes an attribute, not samples; a bench config forgets samples "
                              "(attribute methods are measured by benchmarks/bench_bias.py)")
        if METHODS[method].requires:
            raise ConfigError(f"[methods] {method} needs {METHODS[method].requires}, which bench's freshly trained "
                              "originals lack; drop it from the config (its own benchmark is in benchmarks/)")
        grids[method] = _grid(method, params)
    return BenchConfig(name=str(bench.get("name", "bench")), seeds=tuple(seeds),
                       datasets=tuple(_dataset(d, i) for i, d in enumerate(datasets)), methods=grids,
                       raw_methods={m: dict(p) for m, p in methods.items() if m != "retrain"},
                       metrics=_metrics(bench.get("metrics", [])))


def _read_toml(path: Path, what: str, example: str = "benchmarks/digits-smoke.toml") -> dict:
    if not path.is_file():
        raise ConfigError(f"{what} {str(path)!r} not found; pass the path of a TOML file such as {example}")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML ({exc}); fix the line it names") from exc


def apply_overlay(data: dict, overlay: dict, where: str) -> dict:
    """The config with the overlay's ``[methods]`` entries replacing (or adding) whole method entries, as
    ``unlearn tune`` writes them."""
    unknown = sorted(set(overlay) - {"methods"})
    if unknown:
        raise ConfigError(f"overlay {where} has section(s) {unknown}; an overlay holds only [methods] entries")
    methods = {**data.get("methods", {}), **overlay.get("methods", {})}
    return {**data, "methods": methods}


def load_config(path: str | Path, overlays: tuple[str | Path, ...] | list = ()) -> BenchConfig:
    """Read and validate a bench config file, then apply overlays (later ones win); every problem is one
    ConfigError naming it and the fix."""
    data = _read_toml(Path(path), "bench config")
    for overlay in overlays:
        text = _read_toml(Path(overlay), "overlay", "the METHOD.toml that unlearn tune writes")
        data = apply_overlay(data, text, str(overlay))
    return parse_config(data)
