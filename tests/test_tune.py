"""Tests for ``unlearn tune``: search spaces, the Optuna study, the objective, the overlay bench accepts.

Run: .venv/bin/python -m pytest tests/test_tune.py -q
"""

from __future__ import annotations

import json
import tomllib

import optuna
import pytest
from optuna.trial import TrialState
from typer.testing import CliRunner

from tests.test_cli import fails
from unlearnkit.bench import tune as tune_module
from unlearnkit.bench.config import load_config, parse_config
from unlearnkit.bench.tune import search_space, tune
from unlearnkit.cli import app
from unlearnkit.data import load_dataset, select
from unlearnkit.errors import ConfigError, TrainingDivergedError
from unlearnkit.evaluation import evaluate
from unlearnkit.methods import METHODS
from unlearnkit.methods.space import Choice, Float, Int
from unlearnkit.models import load_checkpoint
from unlearnkit.params import autos
from unlearnkit.unlearning import unlearn

TINY = {
    "bench": {"name": "tiny", "seeds": [0, 1]},
    "datasets": [{"name": "digits", "model": "mlp", "train_size": 300, "recipe": {"epochs": 3},
                  "forget": ["class:3", "random:0.1"]}],
    "methods": {"finetune": {}},
}
TUNABLE = sorted(n for n, c in METHODS.items()
                 if n != "retrain" and c.requires is None and not c.exact and c.kind == "samples")


@pytest.mark.parametrize("name", TUNABLE)
def test_every_method_declares_a_valid_search_space(name, class_split, random_split):
    cls = METHODS[name]
    assert cls.search_space, f"{name} declares no search_space next to its Config"
    defaults = cls.params()
    rules = autos(cls.Config)
    for param, space in cls.search_space.items():
        assert param in defaults, f"{name}.search_space names {param!r}, which is not a Config field"
        wanted = (rules[param].pick(class_split), rules[param].pick(random_split)) if param in rules else \
            (defaults[param],)
        for value in wanted:  # an auto default: both of its values
            assert space.contains(value), f"{name}: default {param}={value} lies outside {space}"
        for end in space.ends:  # both ends (every choice) are valid configs on their own
            cls(**{param: end})


def test_space_types_refuse_empty_ranges():
    for bad in (lambda: Float(1.0, 1.0), lambda: Float(0.0, 1.0, log=True), lambda: Int(3, 2), lambda: Choice((1,))):
        with pytest.raises(ValueError):
            bad()


def test_config_entry_fixes_or_narrows_the_space():
    data = json.loads(json.dumps(TINY))
    data["methods"]["gradient-ascent"] = {"clip_grad": 2.0, "lr_scale": [0.05, 0.1], "retain_weight": [0.5]}
    space, fixed = search_space(parse_config(data), "gradient-ascent")
    assert fixed == {"clip_grad": 2.0, "retain_weight": 0.5}
    rest = {k: v for k, v in METHODS["gradient-ascent"].search_space.items()
            if k not in ("lr_scale", "clip_grad", "retain_weight")}  # searched as declared
    assert space == {"lr_scale": Choice((0.05, 0.1)), **rest}


def test_tune_runs_defaults_first_writes_an_overlay_bench_accepts_and_resumes(tmp_path):
    config = parse_config(TINY)
    result = tune(config, "finetune", 4, tmp_path / "t", progress=False)
    assert result.tuning_seed == 1001 and result.trials == 4 and result.failed == 0

    study = optuna.load_study(study_name="tiny:finetune:seed1001", storage=f"sqlite:///{tmp_path / 't' / 'tune.db'}")
    first = study.trials[0]
    assert first.params == {"epochs": 2, "lr_scale": 1.0} and first.user_attrs["defaults"]
    assert first.value == pytest.approx(result.default_value)
    # the reported best is the stored trial with the lowest objective, read back from tune.db, not just some trial
    stored = min(study.trials, key=lambda t: t.value)
    assert result.best_value == stored.value and result.best_params == stored.params

    overlay = tomllib.loads(result.overlay_path.read_text())
    assert overlay == {"methods": {"finetune": result.best_params}}
    (tmp_path / "config.toml").write_text(
        '[bench]\nname = "tiny"\nseeds = [0, 1]\n[[datasets]]\nname = "digits"\nmodel = "mlp"\ntrain_size = 300\n'
        'recipe = { epochs = 3 }\nforget = ["class:3", "random:0.1"]\n[methods]\nfinetune = {}\n')
    tuned = load_config(tmp_path / "config.toml", [result.overlay_path])
    assert tuned.methods["finetune"] == (result.best_params,)

    elsewhere = tmp_path / "mine.toml"
    elsewhere.write_text("# a user's file\n")
    with pytest.raises(ConfigError, match=r"mine.toml already exists; choose another path or pass --force"):
        tune(config, "finetune", 2, tmp_path / "t", overlay_path=elsewhere, progress=False)  # before any trial
    assert elsewhere.read_text() == "# a user's file\n"
    again = tune(config, "finetune", 2, tmp_path / "t", progress=False)  # the study in tune.db continues and its
    # own overlay follows it
    study = optuna.load_study(study_name="tiny:finetune:seed1001", storage=f"sqlite:///{tmp_path / 't' / 'tune.db'}")
    assert again.trials == 6 and [t.number for t in study.trials] == list(range(6))
    assert again.best_value == min(t.value for t in study.trials)  # the first run's 4 trials count too


def test_objective_is_the_gap_to_retraining_on_the_tuning_split(tmp_path):
    """Recompute the objective of the best trial and of the defaults (trial 0) independently: the same seed's
    forget sets, a retrained reference, the method with those parameters, evaluate's gap.average averaged over
    the splits."""
    config = parse_config(TINY)
    result = tune(config, "finetune", 3, tmp_path, progress=False)
    seed = result.tuning_seed
    bundle = load_dataset("digits", train_size=300)
    original = load_checkpoint(next((tmp_path / "models").glob("original-*.json")).with_suffix("")).model
    from unlearnkit.train import TrainConfig, default_recipe

    recipe: TrainConfig = default_recipe("digits", "mlp").with_(seed=0, epochs=3)
    gaps, default_gaps = [], []
    for spec in ("class:3", "random:0.1"):
        split = select(bundle.train, spec, seed=seed)
        reference = unlearn(original, split, "retrain", train_config=recipe, seed=seed, progress=False).model
        ref_report = evaluate(reference, split, bundle.test, seed=seed)
        for params, out in ((result.best_params, gaps), ({}, default_gaps)):  # {}: the method's own defaults
            model = unlearn(original, split, "finetune", train_config=recipe, seed=seed, holdout=bundle.test,
                            progress=False, **params).model
            out.append(evaluate(model, split, bundle.test, ref_report, seed=seed)["gap.average"])
    assert sum(gaps) / len(gaps) == pytest.approx(result.best_value, abs=1e-9)
    assert sum(default_gaps) / len(default_gaps) == pytest.approx(result.default_value, abs=1e-9)


def test_defaults_outside_the_configs_choices_are_left_to_the_sampler(tmp_path):
    data = json.loads(json.dumps(TINY))
    data["methods"]["finetune"] = {"lr_scale": [0.2, 0.3]}  # the default 0.4 is not a choice
    result = tune(parse_config(data), "finetune", 2, tmp_path, progress=False)
    assert result.default_value is None and result.best_params["lr_scale"] in (0.2, 0.3)
    study = optuna.load_study(study_name="tiny:finetune:seed1001", storage=f"sqlite:///{tmp_path / 'tune.db'}")
    assert study.trials[0].params["epochs"] == 2  # the default the space still holds
    assert "not tried" in result.overlay


def test_failing_trials_are_recorded_and_the_study_goes_on(tmp_path, monkeypatch):
    """Trial 1's run of the method raises (as a diverged run does): that trial is recorded as failed with its
    message, and trials 2-4 still run to completion."""
    data = json.loads(json.dumps(TINY))
    data["datasets"][0]["forget"] = ["class:3"]  # one split: one method run per trial
    calls = []

    def failing_second_run(original, split, method, **kwargs):
        if method != "retrain":  # the tuning reference is retrained through the same function
            calls.append(kwargs)
            if len(calls) == 2:
                raise TrainingDivergedError("loss became nan at step 3 (test)")
        return unlearn(original, split, method, **kwargs)

    monkeypatch.setattr(tune_module, "unlearn", failing_second_run)
    result = tune(parse_config(data), "finetune", 5, tmp_path, progress=False)
    assert len(calls) == 5 and result.failed == 1 and result.trials == 4
    study = optuna.load_study(study_name="tiny:finetune:seed1001", storage=f"sqlite:///{tmp_path / 'tune.db'}")
    states = [t.state for t in study.trials]
    assert states == [TrialState.COMPLETE, TrialState.PRUNED] + [TrialState.COMPLETE] * 3
    assert "loss became nan at step 3 (test)" in study.trials[1].user_attrs["error"]
    assert result.best_value == min(t.value for t in study.trials if t.state == TrialState.COMPLETE)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "retrain"}, "retrain is the reference"),
        ({"tuning_seed": 1}, r"tuning seed 1 is one of the config's reported seeds \[0, 1\]"),
        ({"trials": 0}, "--trials must be at least 1"),
        ({"method": "nope"}, "unknown method 'nope'"),
    ],
)
def test_tune_errors(tmp_path, kwargs, message):
    args = {"method": "finetune", "trials": 1, **kwargs}
    with pytest.raises(ConfigError, match=message):
        tune(parse_config(TINY), args.pop("method"), args.pop("trials"), tmp_path, progress=False, **args)


def test_config_fixing_every_parameter_is_refused(tmp_path):
    data = json.loads(json.dumps(TINY))
    data["methods"]["finetune"] = {"epochs": 1, "lr_scale": 0.3}
    with pytest.raises(ConfigError, match="fixes every searched parameter of 'finetune'"):
        tune(parse_config(data), "finetune", 1, tmp_path, progress=False)


def test_overlay_errors(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[[datasets]]\nname = "digits"\nforget = ["class:3"]\n')
    bad_section = tmp_path / "o1.toml"
    bad_section.write_text("[bench]\nseeds = [3]\n")
    with pytest.raises(ConfigError, match=r"overlay .*o1.toml has section\(s\) \['bench'\]"):
        load_config(config, [bad_section])
    bad_param = tmp_path / "o2.toml"
    bad_param.write_text("[methods]\nfinetune = { epochz = 2 }\n")
    with pytest.raises(ConfigError, match=r"unknown parameter\(s\) \['epochz'\]"):
        load_config(config, [bad_param])
    with pytest.raises(ConfigError, match="not found"):
        load_config(config, [tmp_path / "missing.toml"])


def test_cli_tune_then_bench_with_the_overlay(tmp_path, capsys):
    config = tmp_path / "c.toml"
    config.write_text('[bench]\nname = "c"\nseeds = [0]\n[[datasets]]\nname = "digits"\nmodel = "mlp"\n'
                      'train_size = 300\nrecipe = { epochs = 3 }\nforget = ["class:3"]\n[methods]\nfinetune = {}\n')
    cli = CliRunner()
    res = cli.invoke(app, ["tune", "--method", "finetune", "--config", str(config), "--trials", "2",
                           "--out", str(tmp_path / "t"), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["trials"] == 2 and out["objective"] == "gap.average" and out["tuning_seed"] == 1000
    res = cli.invoke(app, ["bench", str(config), "--out", str(tmp_path / "b"), "--overlay", out["overlay"], "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)["summary"]
    assert any(r["method"] == "finetune" and json.dumps(out["best_params"], sort_keys=True, separators=(",", ":"))
               in r["label"] for r in rows)
    error = fails(capsys, "tune", "--method", "finetune", "--config", str(config), "--seed", "0",
                  "--out", str(tmp_path / "t2"))
    assert "tuning seed 0 is one of the config's reported seeds [0]; pick another --seed" in error
    error = fails(capsys, "tune", "--method", "finetune", "--config", str(config), "--trials", "1",
                  "--out", str(tmp_path / "t"), "--write", str(config))  # never clobber a file of the user's
    assert f"{config} already exists; choose another path or pass --force to replace it" in error
    res = cli.invoke(app, ["tune", "--method", "finetune", "--config", str(config), "--trials", "1",
                           "--out", str(tmp_path / "t"), "--json"])  # resuming rewrites the study's own overlay
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["trials"] == 3


def test_damaged_reference_is_retrained_alone_and_the_study_kept(tmp_path):
    """A damaged time file or reference checkpoint is said and only that reference is retrained (same seed, same
    model): the study's trials stay, and the defaults trial is not run again."""
    from unlearnkit.models.checkpoint import checkpoint_paths

    config = parse_config(TINY)
    first = tune(config, "finetune", 1, tmp_path, progress=False)
    seconds = sorted((tmp_path / "models").glob("tune-retrain-*.seconds"))
    seconds[0].write_text("garbage")
    weights, _ = checkpoint_paths(seconds[1].with_suffix(""))
    weights.write_bytes(weights.read_bytes()[:50])
    said = []
    again = tune(config, "finetune", 2, tmp_path, progress=False, resume=True, on_step=said.append)
    assert any(line.startswith("bad reference time in ") and line.endswith("retraining only that reference")
               for line in said), said
    assert any("is unreadable" in line and line.endswith("retraining only it") for line in said), said
    assert again.trials == 2 and again.default_value == first.default_value  # same references, same objective


def _dead_pid() -> int:
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    return int(proc.stdout)


def test_resume_fails_trials_of_a_killed_run_and_reaches_the_requested_count(tmp_path):
    """A run killed mid-trial leaves that trial RUNNING in tune.db. The next run marks it failed (its process is
    gone), never counts it, and with resume=True runs only what is missing to reach --trials finished trials."""
    config = parse_config(TINY)
    out = tmp_path / "t"
    tune(config, "finetune", 2, out, progress=False)
    storage = f"sqlite:///{out / 'tune.db'}"
    study = optuna.load_study(study_name="tiny:finetune:seed1001", storage=storage)
    killed = study.ask()
    killed.set_user_attr("pid", _dead_pid())
    study.ask()  # killed before its first line recorded a pid
    live = study.ask()
    live.set_user_attr("pid", __import__("os").getpid())  # a live process's trial is left alone
    result = tune(config, "finetune", 4, out, progress=False, resume=True)
    study = optuna.load_study(study_name="tiny:finetune:seed1001", storage=storage)
    states = [t.state for t in study.trials]
    assert states[2:4] == [TrialState.FAIL, TrialState.FAIL] and states[4] == TrialState.RUNNING
    assert result.trials == 4 and sum(s == TrialState.COMPLETE for s in states) == 4  # 2 + the 2 missing
    again = tune(config, "finetune", 4, out, progress=False, resume=True)  # nothing missing: no new trial
    assert again.trials == 4 and len(optuna.load_study(study_name="tiny:finetune:seed1001",
                                                       storage=storage).trials) == len(states)


def test_defaults_trial_lost_to_a_kill_is_queued_again(tmp_path):
    """If the kill hit trial 0 (the defaults, queued with the "auto" attribute), the resumed study runs the defaults
    again, exactly once. The killed state is made as a killed run leaves it: trial 0 taken from the queue, RUNNING,
    its process gone before it recorded a pid."""
    config = parse_config(TINY)
    out = tmp_path / "t"
    out.mkdir()
    storage = f"sqlite:///{(out / 'tune.db').resolve()}"
    study = optuna.create_study(study_name="tiny:finetune:seed1001", storage=storage, direction="minimize")
    study.enqueue_trial({"epochs": 2, "lr_scale": 1.0}, user_attrs={"defaults": True, "auto": []})
    assert study.ask().number == 0  # now RUNNING, as the kill left it
    result = tune(config, "finetune", 3, out, progress=False, resume=True)
    study = optuna.load_study(study_name="tiny:finetune:seed1001", storage=storage)
    assert study.trials[0].state == TrialState.FAIL
    finished = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert result.trials == 3 and len(finished) == 3
    assert [t.params for t in finished if "auto" in t.user_attrs] == [{"epochs": 2, "lr_scale": 1.0}]
    assert result.default_value is not None
