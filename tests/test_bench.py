"""Tests for ``unlearn bench``: config validation, the cell plan, the SQLite store, resume and interruption.

Run: .venv/bin/python -m pytest tests/test_bench.py -q
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import unlearnkit.bench.runner as runner
from unlearnkit.bench.config import load_config, parse_config
from unlearnkit.bench.runner import plan, run_bench
from unlearnkit.bench.store import ResultStore, default_url
from unlearnkit.cli import app
from unlearnkit.errors import ConfigError, DataError
from unlearnkit.methods import METHODS

TINY = {
    "bench": {"name": "tiny", "seeds": [0, 1]},
    "datasets": [{"name": "digits", "model": "mlp", "train_size": 300, "recipe": {"epochs": 3},
                  "forget": ["class:3", "random:0.1"]}],
    "methods": {"finetune": {"epochs": 1}, "gradient-ascent": {"lr_scale": [0.1, 0.2]}},
}


def with_(**changes):
    data = json.loads(json.dumps(TINY))
    for path, value in changes.items():
        section, _, key = path.partition("__")
        if section == "datasets" and key:
            data["datasets"][0][key] = value
        elif key:
            data[section][key] = value
        else:
            data[section] = value
    return data


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"methods__nope": {}}, r"unknown method\(s\) \['nope'\]"),
        ({"methods__finetune": {"epochz": 1}}, r"finetune: unknown parameter\(s\) \['epochz'\]; it has: epochs"),
        ({"methods__finetune": {"epochs": 0}}, "finetune"),
        ({"datasets__forget": ["everything"]}, r"bad forget spec 'everything'"),
        ({"datasets__forget": []}, "forget must be a non-empty list"),
        ({"datasets__name": "imagenet"}, r"unknown dataset 'imagenet'"),
        ({"datasets__recipe": {"epoch": 3}}, r"unknown recipe key\(s\) \['epoch'\]"),
        ({"datasets__colour": "red"}, r"unknown key\(s\) \['colour'\]"),
        ({"bench__seeds": [0, 0]}, "seeds must be a non-empty list of distinct integers"),
        ({"extra": {}}, r"unknown section\(s\) \['extra'\]"),
        ({"datasets": []}, "names no dataset"),
    ],
)
def test_config_errors_name_the_problem(changes, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(with_(**changes))


def test_config_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found; pass the path of a TOML file"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[bench\nname = 1\n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_config(bad)


def test_shipped_configs_are_valid():
    config = load_config("benchmarks/digits-smoke.toml")
    assert config.name == "digits-smoke" and "retrain" in config.methods
    fashion = load_config("benchmarks/fashion-mnist.toml")
    runnable = [n for n, c in METHODS.items() if c.requires is None and c.kind == "samples"]  # others need
    # training-time files, or remove an attribute
    assert fashion.seeds == (0, 1, 2) and list(fashion.methods) == runnable  # every method bench can run
    assert [d.forget for d in fashion.datasets][0][:2] == ("random:0.1", "class:7")
    cifar = load_config("benchmarks/cifar10-resnet18.toml")
    assert list(cifar.methods) == runnable and cifar.datasets[0].model == "resnet18"


def test_data_dir_is_expanded_and_a_missing_one_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("CIFAR_HOME", str(tmp_path / "nowhere"))
    config = parse_config(with_(datasets__name="cifar10", datasets__model="resnet18",
                                datasets__data_dir="$CIFAR_HOME"))
    assert config.datasets[0].data_dir == str(tmp_path / "nowhere")
    assert config.datasets[0].key == parse_config(with_(datasets__name="cifar10", datasets__model="resnet18")
                                                  ).datasets[0].key  # where the files are is not the data
    with pytest.raises(DataError, match=r"\[\[datasets\]\] cifar10: .*does not exist.*data_dir = \"DIR\""):
        run_bench(config, tmp_path / "out", progress=False)
    with pytest.raises(ConfigError, match="data_dir must be a path string"):
        parse_config(with_(datasets__data_dir=3))


def test_plan_expands_grids_in_a_fixed_order():
    config = parse_config(TINY)
    cells = plan(config)
    # 2 specs x 2 seeds x (retrain + finetune + 2 gradient-ascent variants)
    assert len(cells) == 16 and len({c.key for c in cells}) == 16
    first = cells[:4]
    assert [c.method for c in first] == ["retrain", "finetune", "gradient-ascent", "gradient-ascent"]
    assert [c.params for c in first[2:]] == [{"lr_scale": 0.1}, {"lr_scale": 0.2}]
    assert [(c.forget, c.seed) for c in cells[::4]] == [("class:3", 0), ("class:3", 1), ("random:0.1", 0),
                                                       ("random:0.1", 1)]
    assert plan(parse_config(TINY)) == cells


def _reports(store):
    return {r["key"]: r["report"] for r in store.rows()}


def test_run_stores_every_cell_and_resume_trains_nothing(tmp_path, monkeypatch):
    config = parse_config(TINY)
    first = run_bench(config, tmp_path / "a", device="cpu", progress=False)
    assert (first.ran, first.skipped) == (16, 0)
    rows = first.store.rows()
    assert {r["method"] for r in rows} == {"retrain", "finetune", "gradient-ascent"}
    assert all(r["method"] != "retrain" or r["speedup"] == pytest.approx(1.0) for r in rows)
    class3 = [r for r in rows if r["forget"] == "class:3" and r["method"] == "retrain"]
    assert all(r["report"]["forget_accuracy"] == 0.0 for r in class3)

    with pytest.raises(ConfigError, match="already holds 16 finished cells; pass --resume"):
        run_bench(config, tmp_path / "a", device="cpu", progress=False)

    def no_work(*args, **kwargs):
        raise AssertionError("a resumed run of a finished bench must not train or unlearn")

    monkeypatch.setattr(runner, "unlearn", no_work)
    monkeypatch.setattr(runner, "train_model", no_work)
    again = run_bench(config, tmp_path / "a", resume=True, device="cpu", progress=False)
    assert (again.ran, again.skipped) == (0, 16)


def test_interrupted_run_keeps_finished_cells_and_resume_matches_a_clean_run(tmp_path, monkeypatch):
    config = parse_config(TINY)
    clean = _reports(run_bench(config, tmp_path / "clean", device="cpu", progress=False).store)
    real_unlearn = runner.unlearn
    calls = {"n": 0}

    def interrupting(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 7:  # the 3rd cell of the second split is in flight
            raise KeyboardInterrupt
        return real_unlearn(*args, **kwargs)

    monkeypatch.setattr(runner, "unlearn", interrupting)
    with pytest.raises(KeyboardInterrupt):
        run_bench(config, tmp_path / "cut", device="cpu", progress=False)
    monkeypatch.setattr(runner, "unlearn", real_unlearn)
    from unlearnkit.bench.store import ResultStore, default_url

    assert len(ResultStore(default_url(tmp_path / "cut")).finished()) == 6
    resumed = run_bench(config, tmp_path / "cut", resume=True, device="cpu", progress=False)
    assert (resumed.ran, resumed.skipped) == (10, 6)
    got = _reports(resumed.store)
    assert got.keys() == clean.keys()
    for key in clean:  # the resumed cells reuse the saved original and reference: the same numbers
        assert got[key] == clean[key]


def _interrupt_at(monkeypatch, call: int):
    """Make the runner's n-th unlearn call raise KeyboardInterrupt (that cell is in flight); returns the undo."""
    real_unlearn = runner.unlearn
    calls = {"n": 0}

    def interrupting(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == call:
            raise KeyboardInterrupt
        return real_unlearn(*args, **kwargs)

    monkeypatch.setattr(runner, "unlearn", interrupting)
    return lambda: monkeypatch.setattr(runner, "unlearn", real_unlearn)


def test_resume_mid_split_with_a_metric_finds_its_reference(tmp_path, monkeypatch):
    """Regression (crash-safety issue): with an optional metric in the config, the lookup of a split's finished
    retrain cell built its key without the metric, so a run interrupted after the retrain cell and before the
    split's last cell could never be resumed. One key function now serves the planner, the store and the lookup."""
    config = parse_config(with_(bench__seeds=[0], bench__metrics={"neurips": {"models": 2}},
                                datasets__forget=["class:3"]))
    cells = plan(config)
    assert all(c.reference.key == cells[0].key for c in cells)  # the retrain cell, metrics included
    clean = _reports(run_bench(config, tmp_path / "clean", device="cpu", progress=False).store)
    undo = _interrupt_at(monkeypatch, 3)  # retrain and one method finished; the third cell is in flight
    with pytest.raises(KeyboardInterrupt):
        run_bench(config, tmp_path / "cut", device="cpu", progress=False)
    undo()
    resumed = run_bench(config, tmp_path / "cut", resume=True, device="cpu", progress=False)
    assert (resumed.ran, resumed.skipped) == (2, 2)
    assert _reports(resumed.store) == clean


def test_resume_retrains_only_a_missing_or_damaged_reference(tmp_path, monkeypatch):
    """A finished split whose reference checkpoint is gone or damaged is not a reason to throw the run away: the
    resume retrains that reference alone (same seed, same model) and the remaining cells match a clean run."""
    from unlearnkit.models.checkpoint import checkpoint_paths

    config = parse_config(with_(bench__seeds=[0], datasets__forget=["class:3", "random:0.1"]))
    clean = _reports(run_bench(config, tmp_path / "clean", device="cpu", progress=False).store)
    for damage in ("delete", "corrupt"):
        out = tmp_path / damage
        undo = _interrupt_at(monkeypatch, 2)  # the first split's retrain cell finished; the second cell in flight
        with pytest.raises(KeyboardInterrupt):
            run_bench(config, out, device="cpu", progress=False)
        undo()
        (reference,) = [p for p in (out / "models").glob("retrain-*.json")]
        weights, _ = checkpoint_paths(reference.with_suffix(""))
        if damage == "delete":
            weights.unlink()
            reference.unlink()
        else:
            weights.write_bytes(weights.read_bytes()[:100])
        said = []
        resumed = run_bench(config, out, resume=True, device="cpu", progress=False, on_step=said.append)
        assert any("retraining only it" in line for line in said), said
        assert _reports(resumed.store) == clean, damage


def test_bad_db_url(tmp_path):
    with pytest.raises(ConfigError, match="cannot open the result store"):
        run_bench(parse_config(TINY), tmp_path, db="nosuchdialect://x", progress=False)


def test_cli_bench_json(tmp_path):
    config = tmp_path / "tiny.toml"
    config.write_text('[bench]\nname = "cli"\nseeds = [0]\n[[datasets]]\nname = "digits"\ntrain_size = 300\n'
                      'recipe = { epochs = 2 }\nforget = ["class:3"]\n[methods]\nfinetune = {}\n')
    result = CliRunner().invoke(app, ["bench", str(config), "--out", str(tmp_path / "out"), "--json", "--device",
                                      "cpu", "--no-progress"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["ran"] == 2 and {r["method"] for r in data["summary"]} == {"retrain", "finetune"}
    assert (tmp_path / "out" / "results.sqlite").is_file()


def test_report_writes_ranked_tables_and_a_self_contained_html(tmp_path):
    from unlearnkit.bench.report import write_report

    with pytest.raises(ConfigError, match=r"\(results.sqlite not found\); run `unlearn bench CONFIG --out"):
        write_report(tmp_path / "empty")
    run_bench(parse_config(with_(bench__seeds=[0])), tmp_path, device="cpu", progress=False)
    md_path, html_path = write_report(tmp_path)
    md = md_path.read_text()
    assert md.count("## digits / mlp, forget ") == 2
    table = [line for line in md.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| rank | method | seeds | gap.average")
    assert table[1].startswith("| ref | retrain | 1 | 0.0000 ± 0.0000")
    gaps = [float(line.split("|")[4].split("±")[0].strip(" *")) for line in table[2:5]]
    assert gaps == sorted(gaps)  # ranked by gap.average, lower first
    bold = [line.split("|")[4].strip().startswith("**") for line in table[2:5]]
    assert bold == [g == gaps[0] for g in gaps]  # the best gap (and any tie) is bold
    page = html_path.read_text()
    assert page.count("data:image/png;base64,") == 4 and "<table>" in page and "src=\"report-" not in page
    assert len(list(tmp_path.glob("report-*.png"))) == 4


def test_best_per_column_follows_each_metric_direction():
    from unlearnkit.bench.report import best_per_column

    def entry(method, **stats):
        return {"method": method, "stats": {k: (v, 0.0) for k, v in stats.items()}}

    entries = [entry("retrain", forget_accuracy=0.20, retain_accuracy=0.99),
               entry("a", **{"gap.average": 0.05, "forget_accuracy": 0.50, "retain_accuracy": 0.90, "speedup": 30.0}),
               entry("b", **{"gap.average": 0.02, "forget_accuracy": 0.15, "retain_accuracy": 0.95, "speedup": 8.0}),
               entry("c", **{"gap.average": 0.02, "forget_accuracy": 0.26, "retain_accuracy": 0.97, "speedup": 2.0})]
    best = best_per_column(entries, ("gap.average", "forget_accuracy", "retain_accuracy", "speedup"))
    # lower gap wins (a tie marks both); forget accuracy has no direction: closest to retrain's 0.20 (b, 0.05 off);
    # higher retain accuracy and speedup win; the reference itself is never marked
    assert best == {"gap.average": {2, 3}, "forget_accuracy": {2}, "retain_accuracy": {3}, "speedup": {1}}


def test_unknown_executor(tmp_path):
    with pytest.raises(ConfigError, match="unknown executor 'dask'; choose one of local, ray"):
        run_bench(parse_config(TINY), tmp_path, executor="dask", progress=False)


@pytest.mark.slow
def test_shipped_smoke_config_end_to_end_resume_and_ray(tmp_path, capsys, monkeypatch):
    """The issue's "done means" on benchmarks/digits-smoke.toml, through the console command: bench then report;
    a second run with --resume trains nothing; the same grid on a local Ray with 2 CPUs (one task per split)
    stores exactly the local executor's numbers, the NeurIPS metric's included."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'unlearnkit[ray]')")
    from tests.test_cli import run_main

    out = tmp_path / "local"
    code, stdout, err = run_main(capsys, "bench", "benchmarks/digits-smoke.toml", "--out", str(out), "--json")
    assert code in (0, None), err
    assert json.loads(stdout)["ran"] == 20
    code, _, err = run_main(capsys, "report", str(out))
    assert code in (0, None) and (out / "report.html").is_file() and (out / "report-0-epsilons.png").is_file(), err

    def no_training(*_args, **_kwargs):
        raise AssertionError("a resumed finished bench must not train")

    with monkeypatch.context() as mp:
        mp.setattr(runner, "unlearn", no_training)
        mp.setattr(runner, "train_model", no_training)
        code, stdout, err = run_main(capsys, "bench", "benchmarks/digits-smoke.toml", "--out", str(out),
                                     "--resume", "--json")
    assert code in (0, None), err
    assert (json.loads(stdout)["ran"], json.loads(stdout)["skipped"]) == (0, 20)

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        remote = run_bench(load_config("benchmarks/digits-smoke.toml"), tmp_path / "ray", executor="ray",
                           progress=False)
    finally:
        ray.shutdown()
    assert (remote.ran, remote.skipped) == (20, 0)
    assert _reports(remote.store) == _reports(ResultStore(default_url(out)))


def test_methods_needing_training_files_are_refused():
    needing = sorted(n for n, c in METHODS.items() if c.requires)  # sisa, amnesiac: read files beside a checkpoint
    assert needing
    with pytest.raises(ConfigError, match=rf"\[methods\] {needing[0]} needs .*drop it from the config"):
        parse_config(with_(**{f"methods__{needing[0]}": {}}))


@pytest.mark.parametrize(
    ("metrics", "message"),
    [
        (["nope"], r"unknown metric 'nope'; optional metrics: neurips"),
        ({"neurips": {"models": 1}}, r"metrics.neurips.models must be an integer >= 2"),
        ({"neurips": {"modles": 4}}, r"metrics.neurips: options must be a table with keys among models, calibration"),
        ("neurips", "metrics must be a list of names or a table"),
    ],
)
def test_metric_errors(metrics, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(with_(bench__metrics=metrics))


def test_unknown_bench_key():
    with pytest.raises(ConfigError, match=r"\[bench\]: unknown key\(s\) \['seed'\]"):
        parse_config(with_(bench__seed=3))


def test_plain_cell_keys_do_not_change_when_metrics_exist():
    from unlearnkit.bench.store import cell_key

    plain, with_metric = plan(parse_config(TINY)), plan(parse_config(with_(bench__metrics=["neurips"])))
    first = plain[0]
    assert first.key == cell_key(first.dataset.key, first.forget, first.method, first.params, first.seed)
    assert with_metric[0].metrics == {"neurips": {"models": 8, "calibration": False}}
    assert with_metric[0].key != first.key  # asking for the metric later reruns the cells


def test_neurips_metric_in_bench_and_report(tmp_path):
    """metric `neurips` stores F, the score and one epsilon per forget example for every cell; the numbers are
    those of `unlearn neurips` on the same split (same original, recipe and seeds), and the report shows them."""
    from unlearnkit.bench.neurips import neurips_evaluation
    from unlearnkit.bench.report import write_report
    from unlearnkit.data import load_dataset, select
    from unlearnkit.models import load_checkpoint
    from unlearnkit.train import TrainConfig

    data = with_(bench__metrics={"neurips": {"models": 2}}, bench__seeds=[0], datasets__forget=["class:3"],
                 methods={"finetune": {"epochs": 1}})
    run_bench(parse_config(data), tmp_path, progress=False)
    rows = ResultStore(default_url(tmp_path)).rows()
    assert sorted(r["method"] for r in rows) == ["finetune", "retrain"]
    cell = next(r for r in rows if r["method"] == "finetune")["report"]["neurips"]
    bundle = load_dataset("digits", train_size=300)
    split = select(bundle.train, "class:3", seed=0)
    assert len(cell["epsilons"]) == len(split.forget) and cell["models"] == 2
    ckpt = load_checkpoint(next((tmp_path / "models").glob("original-*.json")).with_suffix(""))
    direct = neurips_evaluation(ckpt.model, bundle.train, split, bundle.test, "finetune",
                                train_config=TrainConfig.from_dict(ckpt.train_config), model_name="mlp",
                                n_models=2, params={"epochs": 1}, calibration=False, progress=False)
    assert cell["forget_quality"] == pytest.approx(direct.forget_quality, abs=1e-6)
    assert cell["neurips_score"] == pytest.approx(direct.neurips_score, abs=1e-6)
    md, _ = write_report(tmp_path)
    text = md.read_text()
    assert "neurips.forget_quality" in text and "neurips.score" in text
    assert (tmp_path / "report-0-epsilons.png").stat().st_size > 1000


# --- data options ---------------------------------------------------------------------------------
def shifted(options: dict, **changes) -> dict:
    """TINY on the test source ``shifted-digits`` (tests/conftest.py) with these data options."""
    return with_(datasets__name="shifted-digits", datasets__options=options, **changes)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"options": {"nope": 1}}, r"^\[\[datasets\]\] #1: dataset 'digits' has no options key 'nope'; valid keys: "
                                   r"poison, poison_rate, poison_target, poison_size, poison_classes$"),
        ({"name": "shifted-digits", "options": {"nope": 1}},
         r"^\[\[datasets\]\] #1: dataset 'shifted-digits' has no options key 'nope'; valid keys: shift, noise, flip, "
         r"pad$"),
        ({"name": "shifted-digits", "options": {"shift": 9}},
         r"^\[\[datasets\]\] #1: dataset 'shifted-digits': options key shift=9 is invalid; shift must be an integer "
         r"in \[0, 7\]$"),
        ({"name": "shifted-digits", "options": {"flip": 1}}, r"flip=1 is invalid; flip must be true or false"),
        ({"name": "shifted-digits", "options": "shift=2"}, r"options must be a table of the source's data options"),
    ],
)
def test_data_option_errors_name_the_entry_and_the_valid_keys(shifted_digits_source, entry, message):
    data = with_(**{f"datasets__{k}": v for k, v in entry.items()})
    with pytest.raises(ConfigError, match=message):
        parse_config(data)


def test_data_options_are_filled_and_part_of_the_dataset_key(shifted_digits_source):
    entry = parse_config(shifted({"shift": 2, "noise": 0})).datasets[0]
    assert entry.options == {"shift": 2, "noise": 0.0, "flip": False, "pad": "wrap"}
    assert json.loads(entry.key)["options"] == entry.options
    keys = {parse_config(shifted(o)).datasets[0].key for o in ({"shift": 1}, {"shift": 2}, {"flip": True})}
    assert len(keys) == 3
    assert parse_config(shifted({})).datasets[0].key == parse_config(shifted({"shift": 0, "pad": "wrap"})
                                                                     ).datasets[0].key  # defaults are the same data
    assert parse_config(shifted({"shift": "2"})).datasets[0].options["shift"] == 2  # as on the command line
    plain = parse_config(TINY).datasets[0]
    assert plain.options == {} and "options" not in json.loads(plain.key)  # keys of option-less sources unchanged


def test_entries_differing_only_in_options_train_their_own_originals(shifted_digits_source, tmp_path):
    """Two [[datasets]] entries that differ only in their data options: each gets its own original, reference and
    rows, built from its own data (the ids and labels are the same: only the options tell the data apart)."""
    from unlearnkit.data import load_dataset
    from unlearnkit.models import load_checkpoint

    data = shifted({"shift": 1}, bench__seeds=[0], datasets__forget=["class:3"], methods={"finetune": {"epochs": 1}})
    data["datasets"].append({**data["datasets"][0], "options": {"shift": 3, "pad": "zero"}})
    config = parse_config(data)
    result = run_bench(config, tmp_path, device="cpu", progress=False)
    assert result.ran == 4  # (retrain + finetune) per entry: nothing shared
    originals = sorted((tmp_path / "models").glob("original-*.json"))
    retrains = sorted((tmp_path / "models").glob("retrain-*.json"))
    assert len(originals) == 2 and len(retrains) == 2
    stored = {json.dumps(json.loads(p.read_text())["data"]["options"]["data_options"], sort_keys=True): p
              for p in originals}
    for entry in config.datasets:
        path = stored[json.dumps(entry.options, sort_keys=True)]
        bundle = load_dataset(entry.name, train_size=entry.train_size, data_options=entry.options)
        assert load_checkpoint(path.with_suffix("")).data["fingerprint"] == bundle.train.fingerprint()
    assert len({r["dataset"] for r in result.store.rows()}) == 2
    from unlearnkit.bench.report import aggregate

    scenarios = aggregate(result.store.rows())  # the report keeps the two data variants apart, each named
    assert sorted(name for name, _ in scenarios) == ["shifted-digits flip=False noise=0.0 pad=wrap shift=1 / mlp",
                                                     "shifted-digits flip=False noise=0.0 pad=zero shift=3 / mlp"]
    assert all(len(entries) == 2 and all(e["seeds"] == 1 for e in entries) for entries in scenarios.values())
    again = run_bench(config, tmp_path, resume=True, device="cpu", progress=False)
    assert (again.ran, again.skipped) == (0, 4)


def test_conv_only_methods_are_left_out_on_a_model_without_conv_layers(tmp_path):
    """One methods table serves an mlp and a cnn: conv-noise runs on the cnn and is skipped (not an error, nothing
    stored) on the mlp, as in compare."""
    data = with_(bench__seeds=[0], datasets__forget=["class:3"], methods={"finetune": {"epochs": 1},
                                                                        "conv-noise": {"epochs": 1}})
    data["datasets"].append({**data["datasets"][0], "model": "cnn"})
    said = []
    result = run_bench(parse_config(data), tmp_path, device="cpu", progress=False, on_step=said.append)
    rows = result.store.rows()
    by_model = {(json.loads(r["dataset"])["model"], r["method"]) for r in rows}
    assert by_model == {("mlp", "retrain"), ("mlp", "finetune"), ("cnn", "retrain"), ("cnn", "finetune"),
                        ("cnn", "conv-noise")}
    assert result.ran == 5
    assert any("skipped conv-noise (needs conv layers; the model has none)" in line for line in said)
