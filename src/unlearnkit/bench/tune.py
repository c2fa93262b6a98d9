"""``unlearn tune``: search a method's hyperparameters with Optuna, write the best as a TOML overlay for bench.

The objective is the gap to retraining (``gap.average``: the mean absolute difference from a retrained model's
forget, retain and test accuracy and membership-inference efficacy) averaged over every (dataset, forget spec)
of a bench config, on a *tuning* split: the forget sets are drawn with a seed that none of the config's reported
seeds use, and the methods run with that seed too, so tuned numbers are never reported on the data they were
tuned on. The first trial is always the method's defaults, so the best parameters are never worse than the
defaults on the tuning split. The search space is the method's own ``search_space`` (declared next to its
``Config``); a value the config's ``[methods]`` entry fixes is not searched, and a list there replaces the range
with those choices. Trials live in an Optuna study in ``OUT/tune.db`` (SQLite), so a second run adds trials to
the first and rewrites the study's own overlay ``OUT/METHOD.toml`` with the best of all trials (an overlay
written elsewhere with ``--write`` is never replaced without ``--force``); originals and tuning references are
saved under ``OUT/models``.

    unlearn tune --method gradient-ascent --config benchmarks/digits-smoke.toml --trials 30 --out runs/tune/ga
    unlearn bench benchmarks/digits-smoke.toml --overlay runs/tune/ga/gradient-ascent.toml --out runs/bench/tuned
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from unlearnkit import files
from unlearnkit.bench.compare import warm_up_optimizers
from unlearnkit.bench.config import BenchConfig
from unlearnkit.bench.runner import original_model, short_digest
from unlearnkit.data import select
from unlearnkit.errors import CheckpointError, ConfigError, UnlearnError
from unlearnkit.evaluation import evaluate
from unlearnkit.methods import METHODS, get_method
from unlearnkit.methods.space import Choice
from unlearnkit.models import checkpoint_exists, load_checkpoint, save_checkpoint
from unlearnkit.train import show_progress
from unlearnkit.unlearning import unlearn

OBJECTIVE = "gap.average"
TUNING_SEED_OFFSET = 1000  # the default tuning seed: the config's largest seed + 1000


@dataclass
class TuneResult:
    """The study's outcome; ``overlay`` is the TOML text written to ``overlay_path``."""

    method: str
    best_params: dict
    best_value: float
    default_value: float | None  # the defaults' objective (trial 0); None if it failed or the config's ranges
    # leave out a default
    trials: int  # finished trials in the study (this run and earlier ones)
    failed: int  # trials whose parameters made the method fail (diverged, invalid combination)
    tuning_seed: int
    splits: list[str]
    overlay_path: Path
    overlay: str

    def to_json(self) -> dict:
        return {"method": self.method, "best_params": self.best_params, "best_value": round(self.best_value, 6),
                "default_value": None if self.default_value is None else round(self.default_value, 6),
                "objective": OBJECTIVE, "trials": self.trials, "failed": self.failed,
                "tuning_seed": self.tuning_seed, "splits": self.splits, "overlay": str(self.overlay_path)}


def search_space(config: BenchConfig, method: str) -> tuple[dict, dict]:
    """(the space to search, the fixed parameters) for ``method`` under the config's ``[methods]`` entry."""
    cls = get_method(method)
    if cls.kind != "samples":
        raise ConfigError(f"method {method!r} removes an attribute; unlearn tune tunes methods that forget samples")
    if not cls.search_space:
        raise ConfigError(f"method {method!r} declares no search space (nothing to tune); choose one of: "
                          f"{', '.join(n for n, c in METHODS.items() if c.search_space and c.kind == 'samples')}")
    space, fixed = dict(cls.search_space), {}
    for name, value in (config.raw_methods.get(method) or {}).items():
        if isinstance(value, list):
            if len(value) > 1:
                space[name] = Choice(tuple(value))
            else:
                space.pop(name, None)
                fixed[name] = value[0]
        else:
            space.pop(name, None)
            fixed[name] = value
    if not space:
        raise ConfigError(f"the config fixes every searched parameter of {method!r}; drop some from its [methods] "
                          "entry or give them as lists")
    return space, fixed


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value)


def overlay_text(method: str, params: dict, header: list[str]) -> str:
    """A bench overlay: ``[methods]`` with one entry, the method's best parameters."""
    inline = ", ".join(f"{k} = {_toml_value(v)}" for k, v in sorted(params.items()))
    key = method if method.replace("-", "").replace("_", "").isalnum() else json.dumps(method)
    return "".join(f"# {line}\n" for line in header) + f"[methods]\n{key} = {{ {inline} }}\n"


def tune(
    config: BenchConfig,
    method: str,
    trials: int,
    out: str | Path,
    *,
    tuning_seed: int | None = None,
    overlay_path: str | Path | None = None,
    timeout: float | None = None,
    device: str | torch.device | None = None,
    progress: bool | None = None,
    on_step: Callable[[str], None] | None = None,
    command: str | None = None,
    force: bool = False,
    resume: bool = False,
) -> TuneResult:
    """Run ``trials`` more Optuna trials of ``method`` on the config's tuning splits; write the overlay.

    Args:
        config: a validated bench config; its datasets and forget specs are the tuning cases.
        method: the method to tune (a registered name with a ``search_space``).
        trials: trials to add in this run (a resumed study keeps its earlier ones).
        out: directory for the study (``tune.db``), the models and (by default) the overlay ``METHOD.toml``.
        tuning_seed: seeds the forget sets, the references and the method; must differ from every reported seed
            (default: the config's largest seed + 1000).
        timeout: stop starting new trials after this many seconds.
        force: replace an existing ``overlay_path`` file (otherwise refused before any trial runs). The default
            overlay ``OUT/METHOD.toml`` belongs to the study: a resumed study replaces it with the new best.
        resume: count the study's finished trials toward ``trials`` and run only the missing ones (an interrupted
            run, rerun with ``resume``, ends with ``trials`` finished trials); without it ``trials`` are added.

    A trial a killed run left running (its process is gone) is marked failed when the study is opened, so it is
    never counted; if it was trial 0, the defaults are queued again.
    """
    try:
        import optuna
    except ImportError as exc:
        raise ConfigError("unlearn tune needs Optuna: pip install 'unlearnkit[tune]' (or pip install optuna)") from exc
    if trials < 1:
        raise ConfigError(f"--trials must be at least 1, got {trials}")
    if method == "retrain":
        raise ConfigError("retrain is the reference and has nothing to tune; choose another --method")
    space, fixed = search_space(config, method)
    seed = max(config.seeds) + TUNING_SEED_OFFSET if tuning_seed is None else tuning_seed
    if seed in config.seeds:
        raise ConfigError(f"tuning seed {seed} is one of the config's reported seeds {list(config.seeds)}; pick "
                          "another --seed so tuned numbers are not reported on their own tuning split")
    say = on_step or (lambda _msg: None)
    out = Path(out)
    path = Path(overlay_path) if overlay_path else out / f"{method}.toml"
    force = force or overlay_path is None  # the study's own overlay follows the study
    files.refuse_overwrite(path, force)  # before any trial runs
    out.mkdir(parents=True, exist_ok=True)
    models_dir = out / "models"
    warm_up_optimizers()
    cases = _cases(config, seed, models_dir, device, say)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=f"{config.name}:{method}:seed{seed}", storage=f"sqlite:///{(out / 'tune.db').resolve()}",
        direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed), load_if_exists=True,
    )
    stale = _fail_stale_trials(study)
    if stale:
        say(f"marked {stale} trial(s) of a killed run as failed (not counted)")
    # trial 0: the defaults, where the space (narrowed by the config) holds them; the sampler picks the rest. An
    # auto default (its value follows what each case forgets) is not suggested in trial 0: the rule picks it. The
    # queued trial 0 carries the "auto" attribute; it is queued again if a killed run lost it.
    auto = {k for k in get_method(method).auto_rules() if k in space}
    defaults = {k: v for k, v in get_method(method).params().items()
                if k in space and k not in auto and space[k].contains(v)}
    State = optuna.trial.TrialState
    if not any("auto" in t.user_attrs for t in study.trials if t.state in (State.COMPLETE, State.PRUNED,
                                                                            State.WAITING)):
        with warnings.catch_warnings():  # optuna calls enqueue_trial experimental
            warnings.simplefilter("ignore")
            study.enqueue_trial(defaults, user_attrs={"defaults": len(defaults) + len(auto) == len(space),
                                                      "auto": sorted(auto)})
    finished_before = sum(t.state in (State.COMPLETE, State.PRUNED) for t in study.trials)
    to_run = max(trials - finished_before, 0) if resume else trials

    def objective(trial) -> float:
        trial.set_user_attr("pid", os.getpid())  # a later run fails this trial if the process dies mid-trial
        left_to_rule = set(trial.user_attrs.get("auto", ()))
        params = {**fixed, **{name: s.suggest(trial, name) for name, s in space.items() if name not in left_to_rule}}
        gaps, speedups = [], []
        for case in cases:
            try:
                result = unlearn(case["original"], case["split"], method, train_config=case["config"],
                                 device=device, seed=seed, holdout=case["test"], progress=False, **params)
            except UnlearnError as exc:  # diverged or an invalid combination: this trial fails, the study goes on
                trial.set_user_attr("error", str(exc))
                raise optuna.TrialPruned(str(exc)) from exc
            report = evaluate(result.model, case["split"], case["test"], case["reference"], device=device, seed=seed)
            gaps.append(report["gap.average"])
            speedups.append(case["retrain_seconds"] / max(result.seconds, 1e-9))
        trial.set_user_attr("gaps", gaps)
        trial.set_user_attr("speedup", sum(speedups) / len(speedups))
        return sum(gaps) / len(gaps)

    bar = tqdm(total=to_run, desc=f"tune {method}", unit="trial", disable=not show_progress(progress))

    def tick(study_, trial) -> None:
        bar.update(1)
        if study_.best_trials:
            bar.set_postfix(best=f"{study_.best_value:.4f}")

    resumed = f" ({finished_before} finished already)" if resume else ""
    say(f"tuning {method}: {to_run} trials{resumed} over {len(cases)} split(s), tuning seed {seed}, space "
        f"{sorted(space)}")
    try:
        if to_run:
            study.optimize(objective, n_trials=to_run, timeout=timeout, callbacks=[tick], catch=())
    finally:
        bar.close()
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    failed = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    if not done:
        reason = failed[-1].user_attrs.get("error", "") if failed else ""
        raise ConfigError(f"every trial of {method} failed ({reason}); narrow its search space in the config")
    best = study.best_trial
    default_trial = next((t for t in done if t.user_attrs.get("defaults")), None)
    best_params = {**fixed, **best.params}
    header = [command or f"unlearn tune --method {method} --trials {trials}",
              f"objective {OBJECTIVE} on the tuning split (seed {seed}), mean over {len(cases)} split(s): "
              f"best {best.value:.4f} (trial {best.number} of {len(done)}), defaults "
              + (f"{default_trial.value:.4f}" if default_trial else
                 "not tried (outside the config's ranges, or failed)"),
              f"speedup of the best trial against retraining: {best.user_attrs.get('speedup', float('nan')):.1f}x",
              f"use: unlearn bench CONFIG --overlay {path}"]
    text = overlay_text(method, best_params, header)
    files.write_text_atomic(path, text, force=force)
    return TuneResult(method=method, best_params=best_params, best_value=float(best.value),
                      default_value=None if default_trial is None else float(default_trial.value), trials=len(done),
                      failed=len(failed), tuning_seed=seed, splits=[c["name"] for c in cases], overlay_path=path,
                      overlay=text)


def _fail_stale_trials(study) -> int:
    """Mark failed every running trial whose process is gone (a run killed mid-trial); returns how many.

    Each trial records its process id first thing; a running trial without one was killed before that line.
    """
    import optuna

    stale = 0
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        pid = trial.user_attrs.get("pid")
        if pid is None or not files.process_alive(int(pid)):
            study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
            stale += 1
    return stale


def _cases(config: BenchConfig, seed: int, models_dir: Path, device, say: Callable[[str], None]) -> list[dict]:
    """Every (dataset, forget spec) with the tuning seed: the original, the split and its retrained reference."""
    cases = []
    for entry in config.datasets:
        say(f"original: {entry.model} on {entry.name}")
        shared = original_model(entry, models_dir, device)
        for spec in entry.forget:
            split = select(shared["bundle"].train, spec, seed=seed)
            path = models_dir / f"tune-retrain-{short_digest(entry.key + spec)}-seed{seed}"
            seconds_file = path.with_suffix(".seconds")
            model, seconds = _saved_reference(path, seconds_file, say)
            if model is None:
                say(f"tuning reference: retrain on {entry.name} without {spec} (seed {seed})")
                result = unlearn(shared["original"], split, "retrain", train_config=shared["config"], device=device,
                                 seed=seed, progress=False)
                save_checkpoint(path, result.model, shared["meta"])
                files.write_text_atomic(seconds_file, repr(result.seconds), force=True)  # our own cache
                model, seconds = result.model, result.seconds
            reference = evaluate(model, split, shared["bundle"].test, device=device, seed=seed)
            cases.append({"name": f"{entry.name}/{entry.model} {spec}", "original": shared["original"],
                          "config": shared["config"], "split": split, "test": shared["bundle"].test,
                          "reference": reference, "retrain_seconds": seconds})
    return cases


def _saved_reference(path: Path, seconds_file: Path, say: Callable[[str], None]):
    """(model, retraining seconds) of a saved tuning reference, or (None, None) when there is none or it cannot be
    used: a damaged checkpoint or time file is said, and only that reference is retrained (the study is kept)."""
    if not (checkpoint_exists(path) and seconds_file.is_file()):
        return None, None
    try:
        seconds = float(seconds_file.read_text())
    except (ValueError, OSError, UnicodeDecodeError):
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        say(f"bad reference time in {seconds_file}; retraining only that reference")
        return None, None
    try:
        return load_checkpoint(path).model, seconds
    except CheckpointError as exc:
        say(f"tuning reference {path.name} is unreadable ({exc}); retraining only it")
        return None, None
