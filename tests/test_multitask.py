"""Multi-task unlearning: task-scoped forget specs, masked-label training and retraining, the multi-task loss, the
interference-aware method's linear algebra against slow references, the UIS against hand-computed cases, and a
partial-task forget on multi-digits that moves the target task toward retraining and leaves the others alone."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from tests.conftest import cli_fails
from unlearnkit.cli import app
from unlearnkit.data import load_dataset, select
from unlearnkit.data.select import MASKED
from unlearnkit.errors import ConfigError, DataError
from unlearnkit.evaluation import evaluate, impact, task_accuracies
from unlearnkit.methods import METHODS
from unlearnkit.methods.interference_aware import (
    InterferenceAware,
    energy_basis,
    per_sample_grads,
    remove_span,
)
from unlearnkit.methods.pcgrad import surgery
from unlearnkit.metrics.multitask import task_impact, unlearning_impact
from unlearnkit.models import build_model, fresh_copy, load_checkpoint, save_checkpoint
from unlearnkit.models.checkpoint import CheckpointMeta
from unlearnkit.models.multitask import multitask_loss, task_targets
from unlearnkit.train import TrainConfig, accuracy_on, fit
from unlearnkit.unlearning import unlearn

RECIPE = TrainConfig(epochs=15, batch_size=64, lr=0.05)
TASKS = [["left", 10], ["right", 10], ["same", 2]]
runner = CliRunner()


@pytest.fixture(scope="module")
def multi():
    return load_dataset("multi-digits")


@pytest.fixture(scope="module")
def mtl(multi):
    return fit(build_model("mtl-mlp", multi.spec, seed=0, tasks=TASKS, hidden=(128,)), multi.train, RECIPE,
               progress=False)


def per_task(model, data):
    logits = torch.cat([model(data.x)]).detach()
    targets = task_targets(model, data)
    out = {}
    for t, (name, s) in enumerate(model.slices().items()):
        out[name] = float((logits[:, s].argmax(1) == targets[:, t]).float().mean())
    return out


# --- forget specs with a task scope ------------------------------------------------------------------------------

def test_scope_parsing_and_partial_split(multi):
    split = select(multi.train, "random:0.05@left", seed=0)
    assert split.tasks == ("left",) and split.partial and split.spec == "random:0.05@left"
    assert split.other_tasks() == ("right", "same") and split.scoped_tasks() == ("left",)
    remaining = split.remaining()
    assert len(remaining) == len(multi.train)  # the forget samples stay, for their other tasks
    rows = remaining.mask_of(split.forget.ids)
    assert bool((remaining.tasks["left"][rows] == MASKED).all())
    assert bool((remaining.tasks["left"][~rows] != MASKED).all())
    assert torch.equal(remaining.tasks["right"][rows], split.forget.tasks["right"])
    targets = split.forget_targets()
    assert bool((targets.tasks["right"] == MASKED).all()) and bool((targets.tasks["same"] == MASKED).all())
    assert torch.equal(targets.tasks["left"], split.forget.tasks["left"])


def test_full_task_scope_is_not_partial(multi):
    for spec in ("random:0.05", "random:0.05@left,right,same"):
        split = select(multi.train, spec, seed=0)
        assert not split.partial
        assert split.remaining() is split.retain and split.forget_targets() is split.forget
    assert select(multi.train, "random:0.05@left,same", seed=0).other_tasks() == ("right",)


@pytest.mark.parametrize("spec, message", [
    ("random:0.05@nope", "task(s) 'nope' not in this dataset (its tasks: left, right, same)"),
    ("random:0.05@", "has nothing after '@'"),
    ("random:0.05@left,left", "names a task twice"),
])
def test_scope_errors(multi, spec, message):
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        select(multi.train, spec, seed=0)


def test_scope_on_single_task_data(digits):
    with pytest.raises(DataError, match="needs multi-task data"):
        select(digits.train, "random:0.1@left", seed=0)


def test_whole_classes_per_task(multi):
    assert select(multi.train, "class:3@left", seed=0).whole_classes() == {"left": True}
    assert select(multi.train, "class:3", seed=0).whole_classes() == {"left": True, "right": False, "same": False}
    assert select(multi.train, "random:0.05", seed=0).whole_classes() == {"left": False, "right": False,
                                                                           "same": False}


# --- the multi-task loss and masked-label training ---------------------------------------------------------------

def test_multitask_loss_against_a_slow_reference():
    model = build_model("mtl-mlp", load_dataset("multi-digits").spec, seed=1, tasks=TASKS, hidden=(16,))
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(7, 22, generator=gen)
    y = torch.stack([torch.randint(0, 10, (7,), generator=gen), torch.randint(0, 10, (7,), generator=gen),
                     torch.randint(0, 2, (7,), generator=gen)], 1)
    y[2, 0] = y[5, 0] = MASKED
    y[:, 2] = MASKED  # a task with no label in the batch adds nothing
    weights = torch.tensor([1.0, 0.5, 3.0])
    expected, bounds = 0.0, {0: (0, 10), 1: (10, 20), 2: (20, 22)}
    per_sample = [0.0] * 7
    for t, (lo, hi) in bounds.items():
        terms = []
        for i in range(7):
            if y[i, t] == MASKED:
                continue
            value = -math.log(math.exp(logits[i, lo + y[i, t]]) / sum(math.exp(v) for v in logits[i, lo:hi]))
            terms.append(value)
            per_sample[i] += float(weights[t]) * value
        if terms:
            expected += float(weights[t]) * sum(terms) / len(terms)
    assert multitask_loss(model, logits, y, weights).item() == pytest.approx(expected, rel=1e-5)
    assert multitask_loss(model, logits, y, weights, reduction="none").tolist() == pytest.approx(per_sample, rel=1e-5)


def test_masked_labels_do_not_train(multi):
    """Training with every 'left' label masked leaves the 'left' head exactly as initialised."""
    data = multi.train.subset(torch.arange(200))
    data.tasks = {**data.tasks, "left": torch.full_like(data.tasks["left"], MASKED)}
    model = build_model("mtl-mlp", multi.spec, seed=3, tasks=TASKS, hidden=(16,))
    before = model.heads["left"].weight.detach().clone()
    fit(model, data, TrainConfig(epochs=2, weight_decay=0.0), progress=False)
    assert torch.equal(model.heads["left"].weight, before)
    assert not torch.equal(model.heads["right"].weight, build_model("mtl-mlp", multi.spec, seed=3, tasks=TASKS,
                                                                   hidden=(16,)).heads["right"].weight)


def test_retrain_trains_on_what_remains(multi, mtl):
    split = select(multi.train, "random:0.05@left", seed=0)
    result = unlearn(mtl, split, "retrain", train_config=RECIPE, progress=False)
    expected = fit(fresh_copy(mtl, seed=RECIPE.seed), split.remaining(), RECIPE, progress=False)
    for (k, a), b in zip(result.model.state_dict().items(), expected.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    full = select(multi.train, "random:0.05", seed=0)
    ids_seen = unlearn(mtl, full, "retrain", train_config=RECIPE.with_(epochs=1), progress=False)
    assert ids_seen.model is not mtl


def test_task_weights_in_the_recipe(multi):
    config = TrainConfig(epochs=1, task_weights="same=0.5")
    assert config.to_dict()["task_weights"] == "same=0.5"
    assert "task_weights" not in TrainConfig().to_dict()  # single-task sidecars stay as they were
    assert TrainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="NAME=WEIGHT"):
        TrainConfig(task_weights="same")
    model = build_model("mtl-mlp", multi.spec, tasks=TASKS, hidden=(8,))
    with pytest.raises(ConfigError, match="'nope' not in this model"):
        fit(model, multi.train, TrainConfig(epochs=1, task_weights="nope=1"), progress=False)


def test_checkpoint_records_the_tasks(tmp_path, multi, mtl):
    meta = CheckpointMeta("mtl-mlp", {"tasks": TASKS, "hidden": [128]}, multi.spec, {"source": "multi-digits"},
                          RECIPE.to_dict())
    save_checkpoint(tmp_path / "m", mtl, meta)
    assert json.loads((tmp_path / "m.json").read_text())["model"]["kwargs"]["tasks"] == TASKS
    loaded = load_checkpoint(tmp_path / "m")
    assert loaded.model.tasks == tuple(tuple(t) for t in TASKS)
    assert torch.equal(loaded.model(multi.test.x[:5]), mtl(multi.test.x[:5]))


def test_mtl_models_need_tasks(multi):
    with pytest.raises(ConfigError, match="needs its tasks"):
        build_model("mtl-cnn", multi.spec)


# --- the interference-aware method's linear algebra, against slow references -------------------------------------

def test_remove_span_is_orthogonal_to_every_direction():
    gen = torch.Generator().manual_seed(0)
    directions = torch.randn(50, 7, generator=gen, dtype=torch.float64)
    directions[:, 6] = directions[:, 0] + 2 * directions[:, 1]  # a dependent column changes nothing
    g = torch.randn(50, generator=gen, dtype=torch.float64)
    out = remove_span(g, directions)
    assert (directions.T @ out).abs().max().item() < 1e-10
    # slow reference: Gram-Schmidt on the columns, then subtract each projection
    basis = []
    for col in directions.T:
        v = col.clone()
        for b in basis:
            v -= (v @ b) * b
        if v.norm() > 1e-8:
            basis.append(v / v.norm())
    expected = g.clone()
    for b in basis:
        expected -= (g @ b) * b
    assert torch.allclose(out, expected, atol=1e-10)


def test_energy_basis_matches_numpy_svd():
    rng = np.random.default_rng(0)
    rows = rng.standard_normal((20, 6)) @ np.diag([10, 5, 1, 0.5, 0.1, 0.01])
    _, s, vh = np.linalg.svd(rows, full_matrices=False)
    share = np.cumsum(s**2) / np.sum(s**2)
    for energy in (0.5, 0.9, 0.999, 1.0):
        k = int(np.argmax(share >= energy - 1e-12)) + 1
        basis = energy_basis(torch.from_numpy(rows), energy).numpy()
        assert basis.shape == (6, k)
        # same subspace as numpy's top-k right singular vectors
        assert np.allclose(basis @ basis.T, vh[:k].T @ vh[:k], atol=1e-8)
    assert energy_basis(torch.zeros(3, 4), 0.9).shape == (4, 0)


def test_per_sample_grads_match_a_loop(multi):
    model = build_model("mtl-mlp", multi.spec, seed=2, tasks=TASKS, hidden=(8,))
    x, y = multi.train.x[:5], task_targets(model, multi.train)[:5].clone()
    y[1, 0] = MASKED
    grads = per_sample_grads(model, x, y, None)
    for i in range(5):
        model.zero_grad()
        multitask_loss(model, model(x[i:i + 1]), y[i:i + 1], reduction="none").sum().backward()
        for name, p in model.named_parameters():
            assert torch.allclose(grads[name][i], p.grad, atol=1e-6), (i, name)


def test_cleaned_gradient_has_zero_dot_with_every_retain_gradient(multi):
    model = build_model("mtl-mlp", multi.spec, seed=2, tasks=TASKS, hidden=(8,))
    retain = per_sample_grads(model, multi.train.x[:6], task_targets(model, multi.train)[:6], None)
    basis = {name: energy_basis(torch.randn(4, p.numel()), 0.9) for name, p in model.named_parameters()}
    for name, p in model.named_parameters():
        g = torch.randn_like(p)
        cleaned = InterferenceAware.clean(g, retain[name], basis[name]).reshape(-1).double()
        dots = retain[name].reshape(6, -1).double() @ cleaned
        scale = g.norm().item() * retain[name].reshape(6, -1).norm(dim=1).max().item() + 1e-12
        assert dots.abs().max().item() <= 1e-5 * scale, name
        # without retain directions the task basis goes exactly
        alone = InterferenceAware.clean(g, retain[name][:0], basis[name]).reshape(-1).double()
        assert (basis[name].double().T @ alone).abs().max().item() <= 1e-5 * (g.norm().item() + 1e-12), name


def test_pcgrad_surgery():
    a, b = [torch.tensor([1.0, 0.0])], [torch.tensor([-1.0, 1.0])]  # conflicting: a . b = -1
    out = surgery(a, b)[0]
    # a' = a - (a.b)/|b|^2 b = (0.5, 0.5); b' = b - (a.b)/|a|^2 a = (0, 1)
    assert torch.allclose(out, torch.tensor([0.5, 1.5]))
    assert torch.allclose(surgery([torch.tensor([1.0, 1.0])], [torch.tensor([1.0, 0.0])])[0], torch.tensor([2.0, 1.0]))


# --- the Unlearning Impact Score ---------------------------------------------------------------------------------

def test_uis_one_task_by_hand():
    # random forgetting: |0.9 - 0.85| / 0.9 and |0.9 - 0.95| / 0.9
    assert task_impact(0.9, 0.85, 0.95, classes=False)[0] == pytest.approx(((0.05 / 0.9) + (0.05 / 0.9)) / 2)
    # class forgetting: |U_u| / O_t
    assert task_impact(0.8, 0.8, 0.2, classes=True)[0] == pytest.approx((0 + 0.25) / 2)


def test_uis_many_tasks_by_hand():
    original = {"a": {"test": 0.8, "forget": 1.0}, "b": {"test": 0.9, "forget": 1.0}, "c": {"test": 0.5, "forget": 0.8}}
    after = {"a": {"test": 0.7, "forget": 0.1}, "b": {"test": 0.9, "forget": 0.9}, "c": {"test": 0.5, "forget": 0.6}}
    score, parts = unlearning_impact(original, after, ["a"], {"a": True})
    a = ((0.1 / 0.8) + (0.1 / 0.8)) / 2
    interference = ((0.1 / 1.0) + (0.2 / 0.8)) / 2
    assert parts["a.uis"] == pytest.approx(a) and parts["interference"] == pytest.approx(interference)
    assert score == pytest.approx(a + interference)
    full, parts = unlearning_impact(original, after, ["a", "b", "c"], {"a": True})
    assert parts["interference"] == 0 and full == pytest.approx(
        (a + ((0.0 + 0.0) / 2) + ((0.0 + 0.1 / 0.5) / 2)) / 3)


def test_uis_of_the_original_itself_is_its_forget_gap(multi, mtl):
    split = select(multi.train, "random:0.05@left", seed=0)
    accs = task_accuracies(mtl, split, multi.test)
    score, parts = impact(accs, accs, split)
    o_t, o_u = accs["left"]["test_accuracy"], accs["left"]["forget_accuracy"]
    assert parts["left.test_change"] == 0 and parts["interference"] == 0
    assert score == pytest.approx(abs(o_t - o_u) / o_t / 2)


# --- methods on multi-task models --------------------------------------------------------------------------------

def test_partial_task_forget_moves_the_target_task_and_keeps_the_others(multi, mtl):
    """class:3@left: the left head forgets class 3 (as retraining does), the right and same heads keep their accuracy
    on those samples, and the UIS is below the untouched model's."""
    split = select(multi.train, "class:3@left", seed=0)
    reference = unlearn(mtl, split, "retrain", train_config=RECIPE, progress=False).model
    result = unlearn(mtl, split, "interference-aware", train_config=RECIPE, holdout=multi.test, progress=False)
    before, after, ref = (per_task(m, split.forget) for m in (mtl, result.model, reference))
    assert before["left"] > 0.9 and ref["left"] < 0.05
    assert after["left"] <= ref["left"] + 0.05  # moved to retraining's level
    for other in ("right", "same"):
        # kept: as before, or as retraining has it ("same" reads the left digit, so retraining itself moves it on
        # these samples: by 2.1 points with this seed on one of the CI machines)
        assert min(abs(after[other] - before[other]), abs(after[other] - ref[other])) <= 0.02, other
    report = evaluate(result.model, split, multi.test, original=mtl)
    untouched = evaluate(mtl, split, multi.test, original=mtl)
    assert report.uis < untouched.uis
    assert report.tasks["left"]["forget_accuracy"] == pytest.approx(after["left"])
    assert accuracy_on(result.model, multi.test) > accuracy_on(mtl, multi.test) - 0.05


@pytest.mark.parametrize("method", ["finetune", "gradient-ascent", "neggrad-plus", "scrub", "salun", "random-label",
                                    "pcgrad"])
def test_suite_methods_serve_partial_task_forgetting(multi, mtl, method):
    split = select(multi.train, "class:3@left", seed=0)
    result = unlearn(mtl, split, method, train_config=RECIPE, holdout=multi.test, progress=False)
    before, after = per_task(mtl, split.forget), per_task(result.model, split.forget)
    if METHODS[method].forgets_classes:
        assert after["left"] < before["left"] - 0.5, after
    assert after["right"] > 0.8 and after["same"] > 0.8, after


def test_refusals(multi, mtl, digits, digits_model):
    split = select(multi.train, "random:0.05@left", seed=0)
    with pytest.raises(ConfigError, match="does not serve multi-task models; use one of: .*interference-aware"):
        unlearn(mtl, split, "ssd", train_config=RECIPE)
    single_split = select(digits.train, "random:0.1", seed=0)
    with pytest.raises(DataError, match="no labels for task"):
        unlearn(mtl, single_split, "finetune", train_config=RECIPE)
    scoped_on_single = select(multi.train, "random:0.05@left", seed=0)
    with pytest.raises(ConfigError, match="scopes tasks, but this model has a single task"):
        unlearn(build_model("mlp", multi.spec), scoped_on_single, "finetune", train_config=RECIPE)


# --- the command line --------------------------------------------------------------------------------------------

def invoke(*args):
    return runner.invoke(app, list(args))


def test_cli_train_forget_evaluate_compare(tmp_path, capsys):
    orig, ia, ref = (str(tmp_path / n) for n in ("orig", "ia", "ref"))
    assert invoke("train", "--dataset", "multi-digits", "--epochs", "10", "--out", orig).exit_code == 0
    assert json.loads((tmp_path / "orig.json").read_text())["model"]["kwargs"]["tasks"] == TASKS
    out = invoke("forget", "--checkpoint", orig, "--forget", "class:3@left", "--method", "interference-aware",
                 "--out", ia, "--json")
    assert out.exit_code == 0, out.output
    assert json.loads((tmp_path / "ia.json").read_text())["history"][-1]["forget_tasks"] == ["left"]
    assert invoke("forget", "--checkpoint", orig, "--forget", "class:3@left", "--method", "retrain", "--out",
                  ref).exit_code == 0
    out = invoke("evaluate", "--checkpoint", ia, "--forget", "class:3@left", "--reference", ref, "--original", orig,
                 "--json")
    assert out.exit_code == 0, out.output
    report = json.loads(out.output)
    assert set(report["tasks"]) == {"left", "right", "same"}
    assert set(report["tasks"]["left"]) >= {"forget_accuracy", "retain_accuracy", "test_accuracy"}
    assert report["primary_task"] == "left" and report["uis"] >= 0 and "interference" in report["uis_components"]
    assert "uis" in report["reference"]
    # without --original the UIS is measured against the parent the history records
    out = invoke("evaluate", "--checkpoint", ia, "--forget", "class:3@left", "--json")
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["uis"] == pytest.approx(report["uis"])
    line = cli_fails(capsys, "forget", "--checkpoint", orig, "--forget", "random:0.05@nope", "--method", "finetune",
                     "--out", str(tmp_path / "x"))
    assert "'nope' not in this dataset" in line
    line = cli_fails(capsys, "forget", "--checkpoint", orig, "--forget", "random:0.05", "--method", "ssd", "--out",
                     str(tmp_path / "x"))
    assert "does not serve multi-task models" in line
    assert not (tmp_path / "x.json").exists()


def test_cli_compare_all_reports_uis():
    out = invoke("compare", "--dataset", "multi-digits", "--forget", "random:0.05@left", "--methods", "all",
                 "--epochs", "5", "--json")
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert {"retrain", "finetune", "interference-aware", "pcgrad"} <= set(data["methods"])
    assert all("uis" in m for m in data["methods"].values())
    assert data["skipped"]["ssd"] == "does not serve multi-task models"


def test_cli_datasets_lists_tasks():
    out = invoke("datasets", "--json")
    rows = {r["name"]: r for r in json.loads(out.output)}
    assert rows["multi-digits"]["tasks"] == [{"name": "left", "classes": 10}, {"name": "right", "classes": 10},
                                             {"name": "same", "classes": 2}]
    assert rows["digits"]["tasks"] == []


def test_cli_methods_json_flags_multitask():
    rows = {r["name"]: r for r in json.loads(invoke("methods", "--json").output)}
    assert sorted(n for n, r in rows.items() if r["multitask"]) == sorted(
        ["retrain", "finetune", "gradient-ascent", "neggrad-plus", "scrub", "salun", "random-label", "pcgrad",
         "interference-aware"])


def test_cli_mtl_model_on_single_task_data(tmp_path, capsys):
    line = cli_fails(capsys, "train", "--dataset", "digits", "--model", "mtl-mlp", "--out", str(tmp_path / "m"))
    assert "multi-task model and 'digits' has a single task" in line


def test_scoped_forget_on_single_task_checkpoint(tmp_path, capsys):
    assert invoke("train", "--dataset", "digits", "--epochs", "2", "--out", str(tmp_path / "d")).exit_code == 0
    line = cli_fails(capsys, "forget", "--checkpoint", str(tmp_path / "d"), "--forget", "random:0.1@left",
                     "--method", "finetune", "--out", str(tmp_path / "x"))
    assert "needs multi-task data" in line


def test_a_second_deletion_after_a_partial_one(tmp_path):
    """The first, partial, deletion keeps its samples for the other tasks; a later deletion and its evaluation see
    those labels masked (not scored, not trained on) and still work."""
    orig, first, second = (str(tmp_path / n) for n in ("orig", "first", "second"))
    assert invoke("train", "--dataset", "multi-digits", "--epochs", "5", "--out", orig).exit_code == 0
    assert invoke("forget", "--checkpoint", orig, "--forget", "class:3@left", "--method", "finetune", "--out",
                  first).exit_code == 0
    out = invoke("forget", "--checkpoint", first, "--forget", "random:0.05@right", "--method", "finetune", "--out",
                 second, "--json")
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["n_retain"] + json.loads(out.stdout)["n_forget"] == 1438  # no sample was removed
    report = invoke("evaluate", "--checkpoint", second, "--forget", "random:0.05@right", "--json")
    assert report.exit_code == 0, report.output
    data = json.loads(report.stdout)
    assert data["primary_task"] == "right" and "uis" in data
    assert data["uis_components"]["interference"] >= 0


def test_neurips_refuses_a_multitask_model(multi, mtl):
    from unlearnkit.bench.neurips import neurips_evaluation

    split = select(multi.train, "random:0.05", seed=0)
    with pytest.raises(ConfigError, match="defined for single-task models"):
        neurips_evaluation(mtl, multi.train, split, multi.test, "finetune", train_config=RECIPE, model_name="mtl-mlp")


def test_bench_skips_methods_that_do_not_serve_multitask_models(tmp_path):
    from unlearnkit.bench.config import parse_config
    from unlearnkit.bench.runner import run_bench

    config = parse_config({"bench": {"name": "mt", "seeds": [0]},
                           "datasets": [{"name": "multi-digits", "recipe": {"epochs": 2},
                                         "forget": ["random:0.05@left"]}],
                           "methods": {"finetune": {}, "ssd": {}}})
    said: list[str] = []
    run = run_bench(config, tmp_path / "out", device="cpu", progress=False, on_step=said.append)
    methods = sorted(row["method"] for row in run.store.rows())
    assert methods == ["finetune", "retrain"]
    assert any("skipped ssd (does not serve multi-task models)" in line for line in said)
