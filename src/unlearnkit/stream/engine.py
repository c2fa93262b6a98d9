"""The stream engine: apply deletion requests to a checkpoint in turn, one model version per applied batch.

    result = run_stream("runs/fm/original", "runs/requests.jsonl", "finetune", "batch:10", out="runs/fm/stream",
                        verify_every=2, max_drift=0.02)

Every applied batch writes, in the output folder,

- ``vNNNN.ids``: the sample ids the batch removed (so ``unlearn evaluate -c OUT/vNNNN --forget ids:OUT/vNNNN.ids``
  judges the version on exactly what it forgot);
- ``vNNNN.safetensors`` + ``vNNNN.json``: the model; its sidecar history is the parent's plus one entry (``parent``:
  the previous version, ``stream``: the version number and the request ids);
- ``ref-vNNNN``: at a verification, the reference: the model retrained from scratch with the recipe on everything
  remaining (for a SISA checkpoint, ``sisa`` applied to the input checkpoint with every id the stream removed, which
  is SISA training without them);
- ``stream.json`` last: the manifest, rewritten atomically. Writing it is the commit: a version that it does not
  list does not exist for the engine. A run killed anywhere resumes (``resume=True``) from the last listed version;
  the batch in progress is redone from the start, so no request is applied twice and none is lost.

Policies: ``each`` applies one request per version, ``batch:N`` N requests together. ``verify_every=K`` retrains a
reference on everything remaining every K versions (and at the last one) and records the gaps ``evaluate`` reports
against it, plus, for every request applied at an earlier version, its samples' accuracy under the current model
and under the reference: a request whose accuracy is more than ``reversal_tolerance`` above the reference's is a
*reversal* (its forgotten samples became recognisable again). ``max_drift=D`` measures each new version's retain and
test accuracy and, when either has fallen more than D below the last exact model's (the input checkpoint or the last
fallback), discards the version and retrains instead: from the recipe on everything remaining, or with ``sisa`` from
the last exact version for a SISA checkpoint. ``certified`` retrains by itself once its removal budget is spent;
that version is recorded as a fallback too.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from unlearnkit.bench.compare import warm_up_optimizers
from unlearnkit.data import ForgetSplit, IndexedDataset
from unlearnkit.errors import CheckpointError, ConfigError, DataError
from unlearnkit.evaluation import evaluate
from unlearnkit.exact.sisa import ENSEMBLE
from unlearnkit.files import write_json_atomic, write_text_atomic
from unlearnkit.methods import Method
from unlearnkit.models import CheckpointMeta, load_checkpoint
from unlearnkit.models.checkpoint import checkpoint_paths, read_sidecar
from unlearnkit.runs import check_method_kind, load_with_data, save_model, training_set
from unlearnkit.stream.requests import Request, RequestProblem, ResolvedRequest, read_requests, resolve_requests
from unlearnkit.train import TrainConfig, accuracy_on, show_progress
from unlearnkit.unlearning import UnlearnResult, unlearn

FORMAT, VERSION = "unlearnkit-stream", 1
MANIFEST = "stream.json"
# Options that must be the same when a stream is resumed (the requests file may grow: new requests are applied).
RESUME_KEYS = ("checkpoint", "checkpoint_sha256", "method", "params", "policy", "verify_every", "max_drift",
               "reversal_tolerance", "seed")


def parse_policy(policy: str) -> int:
    """How many requests one version applies: ``each`` -> 1, ``batch:N`` -> N."""
    text = policy.strip().lower()
    if text == "each":
        return 1
    kind, _, arg = text.partition(":")
    if kind == "batch":
        try:
            n = int(arg)
        except ValueError:
            n = 0
        if n >= 1:
            return n
    raise ConfigError(f"unknown policy {policy!r}; use each (one request per version) or batch:N (N requests per "
                      "version, N >= 1)")


@dataclass
class StreamStep:
    """One applied batch: the version it produced and what was measured on it."""

    version: int
    request_ids: list[str]
    n_forget: int
    seconds: float  # unlearning, plus the exact retraining when it fell back (verification not included)
    forget_accuracy: float  # on this batch's samples
    retain_accuracy: float  # on everything that remains
    test_accuracy: float
    fallback: bool
    method: str  # the method that made the version: the stream's, or the exact one it fell back to
    checkpoint: str  # the version's checkpoint name inside the output folder
    weights_sha256: str
    fallback_reason: str | None = None
    discarded: dict | None = None  # when it fell back: the approximate model's accuracies and seconds
    verified: dict | None = None  # gaps to the reference retrained at this version, reversals, seconds
    request_samples: dict[str, list[int]] = field(default_factory=dict)  # request id -> its sample ids
    request_forget_accuracy: dict[str, float] = field(default_factory=dict)  # right after this version
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: dict) -> StreamStep:
        return cls(**doc)

    def summary(self) -> dict:
        """The step as ``unlearn stream --json`` prints it (without the per-request sample lists)."""
        out = self.to_json()
        out.pop("request_samples")
        return out


@dataclass
class StreamResult:
    """Everything the stream did: one step per version, refused requests, costs, fallbacks and reversals."""

    out: Path
    steps: list[StreamStep]
    problems: list[RequestProblem]
    baseline: dict  # the input checkpoint's accuracies (version 0)
    retrain_seconds: float | None  # the measured cost of one retraining on this data
    retrain_seconds_source: str  # "measured" (a verification or fallback retrained) or "checkpoint" (its training)
    verify_seconds: float
    applied_now: int  # versions this call added (the rest were there from an earlier, resumed run)
    config: dict

    @property
    def final_checkpoint(self) -> Path:
        return self.out / self.steps[-1].checkpoint if self.steps else Path(self.config["checkpoint"])

    @property
    def fallbacks(self) -> int:
        return sum(s.fallback for s in self.steps)

    @property
    def reversals(self) -> list[dict]:
        return [r for s in self.steps if s.verified for r in s.verified["reversals"]]

    @property
    def unlearning_seconds(self) -> float:
        return sum(s.seconds for s in self.steps)

    @property
    def requests_applied(self) -> int:
        return sum(len(s.request_ids) for s in self.steps)

    def to_json(self) -> dict:
        retrain_each = None if self.retrain_seconds is None else self.retrain_seconds * self.requests_applied
        total = self.unlearning_seconds + self.verify_seconds
        return {
            "steps": [s.summary() for s in self.steps],
            "total_seconds": round(total, 4),
            "unlearning_seconds": round(self.unlearning_seconds, 4),
            "verify_seconds": round(self.verify_seconds, 4),
            "retrain_seconds": None if self.retrain_seconds is None else round(self.retrain_seconds, 4),
            "retrain_seconds_source": self.retrain_seconds_source,
            "retrain_every_request_seconds": None if retrain_each is None else round(retrain_each, 4),
            "cost_vs_retrain_every_request": None if not retrain_each else round(total / retrain_each, 4),
            "fallbacks": self.fallbacks,
            "reversals": self.reversals,
            "requests_applied": self.requests_applied,
            "versions_added": self.applied_now,
            "problems": [p.to_json() for p in self.problems],
            "baseline": self.baseline,
            "config": self.config,
            "final_checkpoint": str(self.final_checkpoint),
        }


def read_manifest(out: str | Path) -> dict:
    """The manifest of the stream in ``out`` (one-line errors for a missing or damaged one)."""
    path = Path(out) / MANIFEST
    if not path.is_file():
        raise ConfigError(f"{out} holds no stream ({MANIFEST} is missing); give the --out folder of `unlearn stream`")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is damaged ({type(exc).__name__}); it is written atomically, so something "
                              "else changed it: start the stream again in a new --out folder") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an unlearnkit stream manifest; give the --out folder of `unlearn "
                              "stream`")
    if doc.get("version") != VERSION:
        raise CheckpointError(f"{path} has manifest version {doc.get('version')!r}; this unlearnkit reads version "
                              f"{VERSION}: finish it with the unlearnkit that started it")
    return doc


def load_result(out: str | Path) -> StreamResult:
    """The :class:`StreamResult` a finished (or interrupted) stream left in ``out``, from its manifest."""
    doc = read_manifest(out)
    return _result(Path(out), doc, [], 0)


def _result(out: Path, doc: dict, problems: list[RequestProblem], added: int) -> StreamResult:
    measured = doc.get("retrain_seconds", [])
    if measured:
        retrain, source = sum(measured) / len(measured), "measured"
    else:
        retrain, source = doc.get("checkpoint_train_seconds"), "checkpoint"
    return StreamResult(out, [StreamStep.from_json(s) for s in doc["steps"]], problems, doc["baseline"], retrain,
                        source, float(doc.get("verify_seconds", 0.0)), added, doc["config"])


def _split(train: IndexedDataset, ids: list[int], spec: str, seed: int) -> ForgetSplit:
    gone = torch.isin(train.ids, torch.tensor(ids, dtype=torch.int64))
    return ForgetSplit(train.subset(gone), train.subset(~gone), spec, seed)


def _without(train: IndexedDataset, ids: list[int]) -> IndexedDataset:
    return train.without(torch.tensor(ids, dtype=torch.int64)) if ids else train


def _accuracies(model: nn.Module, forget: IndexedDataset | None, retain: IndexedDataset, test: IndexedDataset,
                device) -> dict:
    out = {"retain_accuracy": accuracy_on(model, retain, device=device),
           "test_accuracy": accuracy_on(model, test, device=device)}
    if forget is not None:
        out["forget_accuracy"] = accuracy_on(model, forget, device=device)
    return out


def _sha(path: Path) -> str:
    return read_sidecar(path)["weights"]["sha256"]


def run_stream(
    checkpoint: str | Path,
    requests: str | Path | list[Request],
    method: str | Method,
    policy: str = "each",
    *,
    out: str | Path,
    params: dict | None = None,
    verify_every: int | None = None,
    max_drift: float | None = None,
    reversal_tolerance: float = 0.1,
    seed: int = 0,
    resume: bool = False,
    device: str | torch.device | None = None,
    data_dir: str | None = None,
    progress: bool | None = None,
    on_step: Callable[[StreamStep], None] | None = None,
) -> StreamResult:
    """Apply ``requests`` (a JSONL file or parsed :class:`Request` objects) to the checkpoint with ``method``,
    one version per batch of the ``policy``, in the folder ``out`` (see the module docstring).

    Requests that cannot be applied (unknown ids or subjects, already forgotten, bad lines) are returned as
    ``problems`` and the others go on. ``resume`` continues a stream ``out`` already holds, with the same options
    (the requests file may have grown); without it an existing stream is refused. ``on_step`` is called after each
    committed version.
    """
    params = {k: (v if isinstance(v, (int, float, bool)) or v is None else str(v)) for k, v in (params or {}).items()}
    if isinstance(method, Method):
        if params:
            raise ConfigError("pass hyperparameters either in the Method instance or as params, not both")
        cls = type(method)  # unlearn() checks its kind
    else:
        cls = check_method_kind(method, "samples")
        cls.make_config(**params)  # unknown names and bad values fail before any data loads
    per_version = parse_policy(policy)
    if verify_every is not None and verify_every < 1:
        raise ConfigError(f"--verify-every must be at least 1 (every K versions), got {verify_every}")
    if max_drift is not None and not (0 < max_drift < 1):
        raise ConfigError(f"--max-drift is an accuracy drop in (0, 1), e.g. 0.02 for two points; got {max_drift}")
    if not 0 <= reversal_tolerance < 1:
        raise ConfigError(f"--reversal-tol is an accuracy difference in [0, 1), got {reversal_tolerance}")
    if isinstance(requests, (str, Path)):
        parsed, problems = read_requests(requests)  # a missing file fails before the data loads
    else:
        parsed, problems = list(requests), []
    out = Path(out)
    sidecar = checkpoint_paths(checkpoint)[1]
    config = {
        "checkpoint": str(sidecar.resolve().with_suffix("")),
        "checkpoint_sha256": _sha(sidecar),
        "method": cls.name, "params": params, "policy": policy.strip().lower(), "verify_every": verify_every,
        "max_drift": max_drift, "reversal_tolerance": reversal_tolerance, "seed": seed,
    }
    doc = _open_manifest(out, config, resume)
    engine = _Engine(out, doc, cls, method, params, device, data_dir, seed)
    resolved, more = engine.resolve(parsed)
    problems = sorted([*problems, *more], key=lambda p: p.line)
    groups = [resolved[i:i + per_version] for i in range(0, len(resolved), per_version)]
    added = 0
    if groups:
        warm_up_optimizers()  # torch's one-time costs land in no step's seconds
    with tqdm(total=len(resolved), desc=f"stream {cls.name} ({config['policy']})", unit="request",
              disable=not show_progress(progress)) as bar:
        for k, group in enumerate(groups):
            last = k == len(groups) - 1
            step = engine.apply(group, verify=_due(verify_every, engine.version + 1, last), max_drift=max_drift,
                                tolerance=reversal_tolerance)
            added += 1
            bar.update(len(group))
            if on_step is not None:
                on_step(step)
    return _result(out, engine.doc, problems, added)


def _due(verify_every: int | None, version: int, last: bool) -> bool:
    return verify_every is not None and (version % verify_every == 0 or last)


def _open_manifest(out: Path, config: dict, resume: bool) -> dict:
    if (out / MANIFEST).exists():
        if not resume:
            raise ConfigError(f"{out} already holds a stream; pass --resume to continue it (requests it applied are "
                              "skipped) or choose another --out")
        doc = read_manifest(out)
        differ = [k for k in RESUME_KEYS if doc["config"].get(k) != config.get(k)]
        if differ:
            was = ", ".join(f"{k}={doc['config'].get(k)!r}" for k in differ)
            raise ConfigError(f"the stream in {out} was started with {was}; resume it with the same options, or "
                              "choose another --out for a new stream")
        return doc
    return {"format": FORMAT, "version": VERSION, "config": config, "baseline": None, "steps": [],
            "retrain_seconds": [], "verify_seconds": 0.0}


class _Engine:
    """The state of one stream between versions: data, the current model, the last exact model."""

    def __init__(self, out: Path, doc: dict, cls: type[Method], method: str | Method, params: dict, device,
                 data_dir: str | None, seed: int):
        self.out, self.doc, self.cls, self.method, self.params = out, doc, cls, method, params
        self.device, self.seed = device, seed
        self.origin, bundle = load_with_data(doc["config"]["checkpoint"], device=device, data_dir=data_dir)
        self.bundle, self.test = bundle, bundle.test
        self.recipe = TrainConfig.from_dict(self.origin.train_config)
        self.base = training_set(bundle, self.origin)  # what the input checkpoint is trained on
        self.ensemble = self.origin.model_name == ENSEMBLE
        steps = [StreamStep.from_json(s) for s in doc["steps"]]
        self.removed = [i for s in steps for r in s.request_samples.values() for i in r]
        self.applied = {rid for s in steps for rid in s.request_ids}
        self.train = _without(self.base, self.removed)
        if steps:
            path = out / steps[-1].checkpoint
            if not (path.with_suffix(".json")).is_file():
                raise CheckpointError(f"version {steps[-1].version} of the stream ({path}) is missing; the folder was "
                                      "changed by hand: start the stream again in a new --out folder")
            if _sha(path) != steps[-1].weights_sha256:
                raise CheckpointError(f"{path} changed since the stream wrote it (weights sha256 differs); restore it "
                                      "or start the stream again in a new --out folder")
            self.current = load_checkpoint(path, device=self._device())
            expected = set(self.origin.forgotten_ids()) | set(self.removed)
            if set(self.current.forgotten_ids()) != expected:
                raise CheckpointError(f"{path}'s history does not match the stream's manifest; start the stream again "
                                      "in a new --out folder")
            self.model, self.path = self.current.model, path
        else:
            self.model, self.path = self.origin.model, self.origin.path
        if doc["baseline"] is None:
            doc["baseline"] = {"version": 0, "checkpoint": str(self.origin.path),
                               **_accuracies(self.origin.model, None, self.base, self.test, device)}
            doc["last_exact"] = dict(doc["baseline"])
            doc["checkpoint_train_seconds"] = read_sidecar(self.origin.path).get("train_seconds")

    def _device(self):
        from unlearnkit.device import resolve_device

        return resolve_device(self.device)

    @property
    def version(self) -> int:
        return len(self.doc["steps"])

    def resolve(self, parsed: list[Request]) -> tuple[list[ResolvedRequest], list[RequestProblem]]:
        pending = [r for r in parsed if r.request_id not in self.applied]
        gone = [*self.origin.forgotten_ids(), *self.removed]
        return resolve_requests(pending, self.bundle.train, removed=gone)

    def apply(self, group: list[ResolvedRequest], *, verify: bool, max_drift: float | None,
              tolerance: float) -> StreamStep:
        version = self.version + 1
        name = f"v{version:04d}"
        ids = sorted(i for r in group for i in r.sample_ids)
        ids_file = self.out / f"{name}.ids"
        split = _split(self.train, ids, f"ids:{ids_file}", self.seed)
        if len(split.retain) == 0:
            raise DataError(f"requests {', '.join(r.request_id for r in group)} would remove every sample that is "
                            "left; nothing would remain to train on: retrain from scratch on new data instead")
        self.out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(ids_file, "".join(f"{i}\n" for i in ids), force=True)
        result = unlearn(self.model, split, self.method, train_config=self.recipe, device=self.device,
                         seed=self.seed, holdout=self.test, progress=False, checkpoint=self.path,
                         **({} if isinstance(self.method, Method) else self.params))
        accs = _accuracies(result.model, split.forget, split.retain, self.test, self.device)
        seconds, reason, discarded = result.seconds, None, None
        if result.info.get("retrained"):
            reason = "the certified removal budget was spent: the method retrained from scratch"
        elif max_drift is not None and not self.cls.exact:
            reason = self._drift(accs, max_drift)
        exact = reason is not None
        if reason is not None and not result.info.get("retrained"):
            discarded = {**accs, "seconds": round(result.seconds, 4), "method": result.method}
            result = self._exact(split, ids)
            seconds += result.seconds
            accs = _accuracies(result.model, split.forget, split.retain, self.test, self.device)
            if result.method == "retrain":
                self.doc["retrain_seconds"].append(round(result.seconds, 4))
        exact = exact or self.cls.exact
        per_request = {r.request_id: list(r.sample_ids) for r in group}
        step = StreamStep(
            version=version, request_ids=[r.request_id for r in group], n_forget=len(ids), seconds=round(seconds, 4),
            forget_accuracy=accs["forget_accuracy"], retain_accuracy=accs["retain_accuracy"],
            test_accuracy=accs["test_accuracy"], fallback=reason is not None, method=result.method, checkpoint=name,
            weights_sha256="", fallback_reason=reason, discarded=discarded, request_samples=per_request,
            request_forget_accuracy={rid: accuracy_on(result.model, split.forget.subset(
                torch.isin(split.forget.ids, torch.tensor(s))), device=self.device) for rid, s in per_request.items()},
            notes=[n for r in group for n in (f"{r.request_id}: {x}" for x in r.notes)] + list(result.notes),
        )
        train_after = split.retain
        if verify:
            step.verified = self._verify(result, ids, name, tolerance,
                                         reuse=result if result.method == "retrain" and reason is not None else None)
        entry = {**result.history_entry(split), "parent": str(self.path),
                 "stream": {"version": version, "request_ids": step.request_ids, "fallback": step.fallback}}
        meta = CheckpointMeta(self.origin.model_name, self.origin.model_kwargs, self.origin.spec,
                              {k: v for k, v in self.origin.data.items() if k != "spec"}, self.origin.train_config,
                              history=[*_history(self.path), entry])
        path = self.out / name
        save_model(path, result.model, meta)
        step.weights_sha256 = _sha(path)
        self.doc["steps"].append(step.to_json())
        if exact:
            self.doc["last_exact"] = {"version": version, "checkpoint": name, "retain_accuracy":
                                      accs["retain_accuracy"], "test_accuracy": accs["test_accuracy"]}
        write_json_atomic(self.out / MANIFEST, self.doc, force=True)  # the commit
        self.model, self.path, self.train = result.model, path, train_after
        self.removed.extend(ids)
        self.applied.update(step.request_ids)
        return step

    def _drift(self, accs: dict, max_drift: float) -> str | None:
        base = self.doc["last_exact"]
        for key in ("retain_accuracy", "test_accuracy"):
            drop = base[key] - accs[key]
            if drop > max_drift or math.isnan(accs[key]):
                return (f"{key.removesuffix('_accuracy')} accuracy {accs[key]:.4f} fell {drop:.4f} below the last "
                        f"exact model's {base[key]:.4f} (version {base['version']}), more than --max-drift "
                        f"{max_drift:g}")
        return None

    def _exact(self, split: ForgetSplit, ids: list[int]) -> UnlearnResult:
        """The version made exactly: ``sisa`` from the last exact version of a SISA ensemble, else ``retrain`` from
        the recipe on everything that remains."""
        if self.ensemble:
            last = self.doc["last_exact"]
            path = self.origin.path if last["version"] == 0 else self.out / last["checkpoint"]
            since = [i for s in self.doc["steps"] if s["version"] > last["version"]
                     for r in s["request_samples"].values() for i in r] + ids
            exact = load_checkpoint(path, device=self._device())
            before = _without(self.base, [i for i in self.removed if i not in set(since)])
            whole = _split(before, since, split.spec, self.seed)
            return unlearn(exact.model, whole, "sisa", train_config=self.recipe, device=self.device, seed=self.seed,
                           progress=False, checkpoint=path)
        whole = _split(self.base, [*self.removed, *ids], split.spec, self.seed)
        return unlearn(self.origin.model, whole, "retrain", train_config=self.recipe, device=self.device,
                       seed=self.seed, progress=False)

    def _verify(self, result: UnlearnResult, ids: list[int], name: str, tolerance: float,
                reuse: UnlearnResult | None) -> dict:
        start = time.perf_counter()
        everything = [*self.removed, *ids]
        whole = _split(self.base, everything, f"stream up to {name}", self.seed)
        if reuse is not None:
            reference, retrain_seconds = reuse.model, None  # the fallback just retrained on exactly this data
        else:
            # a SISA ensemble's exact reference is SISA training without the ids: sisa from the input checkpoint
            exact = ("sisa", {"checkpoint": self.origin.path}) if self.ensemble else ("retrain", {})
            ref = unlearn(self.origin.model, whole, exact[0], train_config=self.recipe, device=self.device,
                          seed=self.seed, progress=False, **exact[1])
            reference, retrain_seconds = ref.model, ref.seconds
            self.doc["retrain_seconds"].append(round(ref.seconds, 4))
        ref_method = "sisa" if self.ensemble else "retrain"
        report = evaluate(result.model, whole, self.test, reference, device=self.device, seed=self.seed)
        meta = CheckpointMeta(self.origin.model_name, self.origin.model_kwargs, self.origin.spec,
                              {k: v for k, v in self.origin.data.items() if k != "spec"}, self.origin.train_config,
                              history=[*_history(self.origin.path),
                                       {"method": ref_method, "forget_spec": whole.spec, "seed": self.seed,
                                        "n_forget": len(whole.forget), "forget_ids": sorted(everything),
                                        "parent": str(self.origin.path), "stream": {"reference_for": name}}])
        save_model(self.out / f"ref-{name}", reference, meta)
        reversals = []
        for s in self.doc["steps"]:  # every request applied at an earlier version
            for rid, samples in s["request_samples"].items():
                data = whole.forget.subset(torch.isin(whole.forget.ids, torch.tensor(samples)))
                now = accuracy_on(result.model, data, device=self.device)
                ref_acc = accuracy_on(reference, data, device=self.device)
                if now - ref_acc > tolerance:
                    reversals.append({"request_id": rid, "applied_in": s["version"], "checked_at": int(name[1:]),
                                      "accuracy": now, "reference_accuracy": ref_acc,
                                      "accuracy_when_applied": s["request_forget_accuracy"][rid]})
        seconds = time.perf_counter() - start
        self.doc["verify_seconds"] = round(self.doc.get("verify_seconds", 0.0) + seconds, 4)
        return {"reference": f"ref-{name}", "gap": {k: round(v, 6) for k, v in report.gap.items()},
                "js_divergence": report.js_divergence, "reference_accuracy": {
                    k: report.reference.metrics[k] for k in ("forget_accuracy", "retain_accuracy", "test_accuracy")},
                "retrain_seconds": None if retrain_seconds is None else round(retrain_seconds, 4),
                "seconds": round(seconds, 4), "reversals": reversals}


def _history(path: Path) -> list[dict]:
    return list(read_sidecar(path).get("history", []))
