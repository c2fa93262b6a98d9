"""Tests for certified removal (unlearnkit.exact.linear, method ``certified``) and the ``linear`` / ``logistic`` models.

The references are independent of the Newton step: retraining from scratch on the remaining data (closed form
for least squares, L-BFGS for logistic regression), the measured gradient of the updated model on the remaining
data (which the bound must cover), autograd (for the hand-written gradient and Hessian) and finite differences
(for the Lipschitz constant behind the bound). Digits data and linear models on its 64 pixels.

Run: .venv/bin/python -m pytest tests/test_certified.py -q
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from tests.conftest import cli_fails as fails
from unlearnkit.cli import app
from unlearnkit.data import IndexedDataset, select
from unlearnkit.errors import ConfigError, DataError
from unlearnkit.exact.linear import (
    AT_OPTIMUM,
    GAMMA,
    _hessian,
    augment,
    epsilon_spent,
    frozen_features,
    gradient_residual,
    head_parameters,
    loss_gradient,
    newton_removal,
    residual_budget,
)
from unlearnkit.models import CheckpointMeta, build_model, load_checkpoint, save_checkpoint
from unlearnkit.runs import data_meta, forget_checkpoint, save_unlearned
from unlearnkit.train import TrainConfig, accuracy_on, fit, predict_logits
from unlearnkit.unlearning import unlearn

RECIPE = TrainConfig(optimizer="lbfgs", epochs=1000, weight_decay=1e-3)  # the digits default for these models
FAST = RECIPE.with_(weight_decay=1e-2)  # converges several times faster; where lambda's value does not matter
runner = CliRunner()


def trained(digits, name: str, config: TrainConfig = RECIPE, data: IndexedDataset | None = None, **kwargs):
    return fit(build_model(name, digits.spec, seed=0, **kwargs), digits.train if data is None else data, config,
               progress=False)


def save(path: Path, model: nn.Module, digits, config: TrainConfig, name: str = "logistic", **kwargs) -> Path:
    save_checkpoint(path, model, CheckpointMeta(name, kwargs, digits.spec, data_meta(digits), config.to_dict()))
    return path


def certified(model, split, config, checkpoint, **params):
    return unlearn(model, split, "certified", train_config=config, checkpoint=checkpoint, device="cpu",
                   progress=False, **params)


def measured_residual(model, data: IndexedDataset, config: TrainConfig) -> float:
    """||grad L(theta; data)|| (sum form) of a model, computed from its weights and features alone."""
    feats = frozen_features(model, data)
    return gradient_residual(head_parameters(model), feats.x, feats.y, objective=model.objective,
                             weight_decay=config.weight_decay, noise=model.noise)


def max_diff(a: nn.Module, b: nn.Module) -> float:
    return float((head_parameters(a) - head_parameters(b)).abs().max())


@pytest.fixture(scope="module")
def logistic(digits):
    return trained(digits, "logistic")


@pytest.fixture(scope="module")
def logistic_ckpt(digits, logistic, tmp_path_factory):
    return save(tmp_path_factory.mktemp("certified") / "logistic", logistic, digits, RECIPE)


# --- the Newton update against retraining ---------------------------------------------------------------------
@pytest.mark.parametrize("spec", ["random:0.05", "class:3"])
def test_least_squares_newton_update_equals_retraining(digits, tmp_path, spec):
    model = trained(digits, "linear")
    split = select(digits.train, spec, seed=0)
    result = certified(model, split, RECIPE, save(tmp_path / "lin", model, digits, RECIPE, "linear"))
    reference = trained(digits, "linear", data=split.retain)
    assert max_diff(model, reference) > 1e-3  # the forget set mattered
    assert max_diff(result.model, reference) <= 1e-6
    assert result.info["residual_bound"] == 0.0 and not result.info["retrained"]


def test_logistic_update_tracks_retraining_and_the_bound_holds(digits, logistic, logistic_ckpt):
    split = select(digits.train, "random:0.005", seed=0)  # 7 samples
    result = certified(logistic, split, RECIPE, logistic_ckpt)
    reference = trained(digits, "logistic", data=split.retain)
    agreement = (predict_logits(result.model, digits.test).argmax(1)
                 == predict_logits(reference, digits.test).argmax(1)).float().mean()
    assert agreement >= 0.99
    assert max_diff(result.model, reference) <= 1e-2
    assert max_diff(result.model, reference) <= 0.1 * max_diff(logistic, reference)  # much closer than before
    residual = measured_residual(result.model, split.retain, RECIPE)
    assert 0 < residual <= result.info["cumulative_bound"]
    assert result.info["residual_bound"] > 0 and not result.info["retrained"]


def test_bound_holds_for_a_large_removal(digits, logistic, logistic_ckpt):
    """A whole class (146 samples): the Newton step is far from retraining, and the bound says so."""
    split = select(digits.train, "class:3", seed=0)
    result = certified(logistic, split, RECIPE, logistic_ckpt)
    assert measured_residual(result.model, split.retain, RECIPE) <= result.info["cumulative_bound"]


def test_successive_removals_sum_their_bounds_through_the_history(digits, tmp_path):
    from unlearnkit.runs import train_model

    path = tmp_path / "lr"
    trained_model = train_model(digits, "logistic", FAST, device="cpu", progress=False)
    save_checkpoint(path, trained_model.model, trained_model.meta)
    totals = []
    for step in range(3):
        result, split, ckpt, _ = forget_checkpoint(path, "random:0.002", "certified", seed=step, device="cpu",
                                                   progress=False)
        assert measured_residual(result.model, split.retain, FAST) <= result.info["cumulative_bound"]
        assert result.info["removals_since_retrain"] == step + 1
        previous = totals[-1] if totals else 0.0
        assert result.info["cumulative_bound"] == pytest.approx(previous + result.info["residual_bound"], rel=1e-6,
                                                                abs=len(digits.train) * AT_OPTIMUM)
        totals.append(result.info["cumulative_bound"])
        path = tmp_path / f"lr{step}"
        save_unlearned(path, result, split, ckpt)
    assert totals == sorted(totals) and totals[0] > 0
    assert json.loads(path.with_suffix(".json").read_text())["history"][-1]["info"]["cumulative_bound"] == totals[-1]


def test_budget_exceeded_retrains_from_scratch_and_says_so(digits, logistic, logistic_ckpt):
    split = select(digits.train, "random:0.005", seed=1)
    result = certified(logistic, split, RECIPE, logistic_ckpt, removal_budget=1e-9)
    assert result.info["retrained"] and result.info["removals_since_retrain"] == 0
    assert any("retrained from scratch" in note for note in result.notes)
    reference = trained(digits, "logistic", data=split.retain)
    assert torch.equal(head_parameters(result.model), head_parameters(reference))
    assert result.info["cumulative_bound"] <= len(split.retain) * AT_OPTIMUM  # the retrained model's own residual
    kept = certified(logistic, split, RECIPE, logistic_ckpt, removal_budget=1e9)
    assert not kept.info["retrained"] and kept.info["budget"] == 1e9


def test_retrain_method_reproduces_the_optimum_exactly(digits, logistic):
    split = select(digits.train, "random:0.1", seed=0)
    result = unlearn(logistic, split, "retrain", train_config=RECIPE, progress=False, device="cpu")
    assert torch.equal(head_parameters(result.model), head_parameters(trained(digits, "logistic", data=split.retain)))


# --- loss perturbation and the (epsilon, delta) accounting --------------------------------------------------------
def test_loss_perturbation_is_part_of_the_objective_and_of_retraining(digits, tmp_path):
    sigma = 2.0
    model = trained(digits, "logistic", FAST, perturbation=sigma)
    n, noise = len(digits.train), model.noise
    assert noise.abs().sum() > 0 and noise.std().item() == pytest.approx(sigma, rel=0.1)
    assert measured_residual(model, digits.train, FAST) <= n * AT_OPTIMUM  # the optimum of the perturbed loss
    feats = frozen_features(model, digits.train)
    unperturbed = gradient_residual(head_parameters(model), feats.x, feats.y, objective="logistic",
                                    weight_decay=FAST.weight_decay)
    assert unperturbed == pytest.approx(float(noise.norm()), rel=1e-3)  # not the optimum without b

    split = select(digits.train, "random:0.002", seed=0)
    retrained = unlearn(model, split, "retrain", train_config=FAST, progress=False, device="cpu").model
    assert torch.equal(retrained.noise, noise)
    reference = trained(digits, "logistic", FAST, data=split.retain, perturbation=sigma)
    assert torch.equal(head_parameters(retrained), head_parameters(reference))

    result = certified(model, split, FAST, save(tmp_path / "p", model, digits, FAST, perturbation=sigma))
    c = math.sqrt(2 * math.log(1.5 / 1e-4))
    assert result.info["budget"] == pytest.approx(sigma * 1.0 / c)
    assert result.info["epsilon"] == pytest.approx(c * result.info["cumulative_bound"] / sigma)
    assert result.info["sigma"] == sigma and result.info["delta"] == 1e-4


def test_budget_and_epsilon_formulas():
    c = math.sqrt(2 * math.log(1.5 / 1e-4))
    assert residual_budget(3.0, 0.5, 1e-4) == pytest.approx(3.0 * 0.5 / c)
    assert epsilon_spent(residual_budget(3.0, 0.5, 1e-4), 3.0, 1e-4) == pytest.approx(0.5)
    assert epsilon_spent(0.1, 0.0, 1e-4) == math.inf
    with pytest.raises(ConfigError, match=r"delta must lie in \(0, 1\)"):
        residual_budget(1.0, 1.0, 1.5)


# --- the math against independent references ----------------------------------------------------------------------
@pytest.mark.parametrize("objective", ["squared", "logistic"])
def test_gradient_and_hessian_match_autograd(objective):
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(30, 4, generator=gen, dtype=torch.float64), torch.randint(0, 3, (30,), generator=gen)
    theta, noise, lam = torch.randn(3, 5, generator=gen, dtype=torch.float64), torch.randn(3, 5, generator=gen,
                                                                                             dtype=torch.float64), 0.1
    xa = augment(x)

    def objective_sum(t: torch.Tensor) -> torch.Tensor:
        logits = xa @ t.reshape(3, 5).T
        if objective == "squared":
            loss = 0.5 * (logits - nn.functional.one_hot(y, 3).double()).square().sum()
        else:
            loss = nn.functional.cross_entropy(logits, y, reduction="sum")
        return loss + lam * len(x) / 2 * t.square().sum() + (noise.flatten() * t).sum()

    grad = torch.func.grad(objective_sum)(theta.flatten()).reshape(3, 5)
    assert torch.allclose(loss_gradient(theta, x, y, objective=objective, weight_decay=lam, noise=noise), grad)
    hess = torch.autograd.functional.hessian(objective_sum, theta.flatten())
    mine = _hessian(theta, xa, objective, lam)
    if objective == "squared":  # one block per class, shared
        mine = torch.block_diag(*[mine] * 3)
    assert torch.allclose(mine, hess)


def test_step_and_bound_recomputed_from_autograd(digits, tmp_path):
    """The update and the reported bound, rebuilt from autograd's Hessian and gradient of the sum-form objective
    and torch's own spectral norm: gamma ||X~'||_2 max_i ||x~_i|| ||V|| ||X~' V^T|| with V = H^-1 Delta."""
    data = digits.train.subset(torch.arange(300))
    model = trained(digits, "logistic", FAST, data=data)
    split = select(data, "random:0.01", seed=0)
    result = certified(model, split, FAST, save(tmp_path / "small", model, digits, FAST))
    theta, lam = head_parameters(model), FAST.weight_decay
    xr, xf = augment(split.retain.x), augment(split.forget.x)

    def share(t: torch.Tensor, xa: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # loss terms + lambda m / 2
        return (nn.functional.cross_entropy(xa @ t.reshape(theta.shape).T, y, reduction="sum")
                + lam * len(xa) / 2 * t.square().sum())

    delta = torch.func.grad(share)(theta.flatten(), xf, split.forget.y)
    hess = torch.autograd.functional.hessian(lambda t: share(t, xr, split.retain.y), theta.flatten())
    step = torch.linalg.solve(hess, delta).reshape(theta.shape)
    assert torch.allclose(head_parameters(result.model), theta + step, atol=1e-10)
    bound = (GAMMA["logistic"] * float(torch.linalg.matrix_norm(xr, ord=2)) * float(xr.norm(dim=1).max())
             * float(step.norm()) * float((xr @ step.T).norm()))
    assert result.info["residual_bound"] == pytest.approx(bound, rel=1e-6)


def test_gamma_bounds_how_fast_the_softmax_hessian_changes():
    """gamma (sqrt(6) / 9) must bound ||A(z + t h) - A(z - t h)||_2 / 2t for A = diag(p) - p p^T and unit h, over
    random logits; with two classes some directions come close to it (the constant is attained there)."""
    gen = torch.Generator().manual_seed(0)

    def curvature(z: torch.Tensor) -> torch.Tensor:
        p = z.softmax(-1)
        return torch.diag_embed(p) - p[..., :, None] * p[..., None, :]

    worst = 0.0
    for classes in (2, 3, 10):
        scale = torch.tensor([0.5, 2.0, 5.0], dtype=torch.float64)[torch.arange(4000) % 3, None]
        z = torch.randn(4000, classes, generator=gen, dtype=torch.float64) * scale
        h = torch.randn(4000, classes, generator=gen, dtype=torch.float64)
        h = h / h.norm(dim=1, keepdim=True)
        t = 1e-5
        ratio = torch.linalg.matrix_norm(curvature(z + t * h) - curvature(z - t * h), ord=2) / (2 * t)
        worst = max(worst, float(ratio.max()))
    assert GAMMA["logistic"] == pytest.approx(math.sqrt(2) ** 3 / (6 * math.sqrt(3)))
    assert 0.99 * GAMMA["logistic"] <= worst <= GAMMA["logistic"] * (1 + 1e-7)


# --- frozen features and the linear head on them ---------------------------------------------------------------
def test_frozen_features_are_the_penultimate_layer_and_keep_identities(digits):
    data = digits.train.subset(torch.arange(40))
    data = IndexedDataset(data.x, data.y, data.ids + 1000, num_classes=10, subjects=torch.arange(40) % 7)
    mlp = build_model("mlp", digits.spec, seed=0, hidden=(16, 8))
    feats = frozen_features(mlp, data)
    with torch.no_grad():
        assert torch.equal(feats.x, mlp.features(data.x))
    assert torch.equal(feats.ids, data.ids) and torch.equal(feats.y, data.y)
    assert torch.equal(feats.subjects, data.subjects)
    with pytest.raises(ConfigError, match="no final nn.Linear named 'classifier'"):
        frozen_features(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), data)


def test_logistic_head_on_frozen_cnn_features(digits, digits_cnn, tmp_path):
    cnn = digits_cnn
    kwargs = {"backbone": "cnn", "backbone_kwargs": {}, "normalize": True}
    head = build_model("logistic", digits.spec, seed=0, **kwargs)
    head.features.load_network(cnn)
    fit(head, digits.train, FAST, progress=False)
    assert [name for name, _ in head.named_parameters()] == ["classifier.weight", "classifier.bias"]
    with torch.no_grad():
        penultimate = cnn.head(cnn.features(digits.test.x)).double()
        penultimate = penultimate / penultimate.norm(dim=1, keepdim=True)
        assert torch.allclose(predict_logits(head, digits.test), head.classifier(penultimate).float())
    assert torch.allclose(frozen_features(head, digits.test).x.norm(dim=1), torch.ones(len(digits.test),
                                                                                         dtype=torch.float64))
    assert accuracy_on(head, digits.test) > 0.9

    path = save(tmp_path / "head", head, digits, FAST, **kwargs)
    loaded = load_checkpoint(path).model
    assert torch.equal(predict_logits(loaded, digits.test), predict_logits(head, digits.test))

    split = select(digits.train, "random:0.005", seed=0)
    retrained = unlearn(head, split, "retrain", train_config=FAST, progress=False, device="cpu").model
    assert all(torch.equal(a, b) for a, b in zip(retrained.features.buffers(), head.features.buffers(), strict=True))
    result = certified(loaded, split, FAST, path)
    assert measured_residual(result.model, split.retain, FAST) <= result.info["cumulative_bound"]
    assert max_diff(result.model, retrained) <= 0.1 * max_diff(head, retrained)


# --- bad inputs -------------------------------------------------------------------------------------------------
def test_refuses_a_network_that_is_not_linear(digits, digits_cnn, tmp_path):
    split = select(digits.train, "random:0.01", seed=0)
    with pytest.raises(ConfigError, match=r"needs a linear or logistic model .* not CNN; train one with "
                                          r"`unlearn train --model logistic`"):
        certified(digits_cnn, split, RECIPE, tmp_path / "unused")


def test_refuses_a_model_not_trained_to_the_optimum(digits, logistic, logistic_ckpt):
    split = select(digits.train, "random:0.01", seed=0)
    sgd = TrainConfig(epochs=3)
    by_sgd = trained(digits, "logistic", sgd)
    with pytest.raises(ConfigError, match=r"trained with sgd, not to the optimum; train it with "
                                          r"`unlearn train --model logistic --optimizer lbfgs`"):
        certified(by_sgd, split, sgd, logistic_ckpt)
    nudged = copy.deepcopy(logistic)
    with torch.no_grad():
        nudged.classifier.bias.add_(0.01)
    with pytest.raises(ConfigError, match=r"not at the optimum of its regularised loss .* --optimizer lbfgs"):
        certified(nudged, split, RECIPE, logistic_ckpt)


def test_refuses_weights_changed_after_a_certified_removal(digits, tmp_path):
    """Least squares: the recorded total stays at the training residual, so any real change exceeds it."""
    model = trained(digits, "linear")
    split = select(digits.train, "random:0.002", seed=0)
    result = certified(model, split, RECIPE, save(tmp_path / "lin", model, digits, RECIPE, "linear"))
    save_unlearned(tmp_path / "after", result, split, load_checkpoint(tmp_path / "lin"))
    with torch.no_grad():
        result.model.classifier.weight.mul_(1.1)
    again = select(split.retain, "random:0.002", seed=1)
    with pytest.raises(ConfigError, match=r"exceeds the bound .* its weights changed since"):
        certified(result.model, again, RECIPE, tmp_path / "after")


def test_refuses_nan_weights_features_and_parameters(digits, logistic, logistic_ckpt):
    split = select(digits.train, "random:0.01", seed=0)
    broken = copy.deepcopy(logistic)
    with torch.no_grad():
        broken.classifier.weight[0, 0] = float("nan")
    with pytest.raises(ConfigError, match="weights contain NaN or inf; retrain it"):
        certified(broken, split, RECIPE, logistic_ckpt)
    dirty = copy.deepcopy(split)
    dirty.retain.x[0, 0, 0, 0] = float("nan")
    with pytest.raises(DataError, match="features contain NaN or inf; clean the data"):
        certified(logistic, dirty, RECIPE, logistic_ckpt)
    for key, value, message in [
        ("removal_budget", "nan", r"'removal_budget' of method 'certified' must be a float in "
                                   r"\[0, inf\) or None, got nan"),
        ("removal_budget", "-1", r"'removal_budget' of method 'certified' must be a float in "
                                  r"\[0, inf\) or None, got -1.0"),
        ("epsilon", "0", r"'epsilon' of method 'certified' must be a float in \(0, inf\), got 0.0"),
        ("delta", "nan", r"'delta' of method 'certified' must be a float in \(0, 1\), got nan"),
    ]:
        with pytest.raises(ConfigError, match=message):
            certified(logistic, split, RECIPE, logistic_ckpt, **{key: value})


def test_needs_a_checkpoint(digits, logistic):
    split = select(digits.train, "random:0.01", seed=0)
    with pytest.raises(ConfigError, match=r"needs a linear or logistic model trained to the optimum .* pass its "
                                          r"path as checkpoint="):
        unlearn(logistic, split, "certified", train_config=RECIPE, progress=False)


def test_training_refusals(digits, monkeypatch):
    with pytest.raises(ConfigError, match="optimizer 'lbfgs' trains the linear and logistic models .* not MLP"):
        trained(digits, "mlp", RECIPE)
    with pytest.raises(ConfigError, match="model 'linear' is fit by least squares in closed form, not by sgd"):
        trained(digits, "linear", TrainConfig(epochs=1))
    with pytest.raises(ConfigError, match="needs an L2 penalty: --weight-decay must be > 0"):
        trained(digits, "logistic", RECIPE.with_(weight_decay=0.0))
    # three L-BFGS iterations are enough now: Newton-CG finishes the solve
    model = trained(digits, "logistic", RECIPE.with_(epochs=3))
    theta = head_parameters(model)
    grad = loss_gradient(theta, digits.train.x, digits.train.y, objective="logistic",
                         weight_decay=RECIPE.weight_decay) / len(digits.train)
    assert float(grad.norm()) <= AT_OPTIMUM
    # a solve that still ends short of the optimum (here: Newton-CG switched off) is refused, naming the fix
    import unlearnkit.models.convex as convex

    monkeypatch.setattr(convex, "_newton_cg", lambda theta, *args: (theta, 1.0))
    with pytest.raises(ConfigError, match="short of the optimum.* raise --weight-decay"):
        trained(digits, "logistic", RECIPE.with_(epochs=3))
    with pytest.raises(ConfigError, match="perturbation .* must be >= 0"):
        build_model("logistic", digits.spec, perturbation=-1.0)


# --- the command line ---------------------------------------------------------------------------------------------
def invoke_json(*args: str) -> dict:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, f"unlearn {' '.join(args)}: {result.exception!r}\n{result.output}"
    return json.loads(result.stdout)



def test_cli_round_trip_accumulates_the_bound(digits, tmp_path):
    cpu = ("--device", "cpu", "--no-progress")
    trained_info = invoke_json("train", "--model", "logistic", "--weight-decay", "0.01", "--out",
                               str(tmp_path / "lr"), *cpu)
    assert trained_info["train_config"]["optimizer"] == "lbfgs"
    ids = [int(i) for i in digits.train.ids[:3]]
    first = invoke_json("forget", "-c", str(tmp_path / "lr"), "--forget", f"ids:{ids[0]},{ids[1]}", "--method",
                        "certified", "--out", str(tmp_path / "lr1"), *cpu)
    second = invoke_json("forget", "-c", str(tmp_path / "lr1"), "--forget", f"ids:{ids[2]}", "--method",
                         "certified", "--out", str(tmp_path / "lr2"), *cpu)
    for info in (first, second):
        assert {"residual_bound", "cumulative_bound", "budget", "retrained"} <= set(info)
        assert not info["retrained"] and info["budget"] is None and info["residual_bound"] > 0
    assert second["cumulative_bound"] > first["cumulative_bound"] > 0
    assert second["cumulative_bound"] == pytest.approx(first["cumulative_bound"] + second["residual_bound"])
    assert second["removals_since_retrain"] == 2
    history = json.loads((tmp_path / "lr2.json").read_text())["history"]
    assert [h["info"]["cumulative_bound"] for h in history] == [first["cumulative_bound"], second["cumulative_bound"]]


def test_cli_saves_the_factor_and_a_new_process_starts_with_it(digits, tmp_path):
    """`unlearn train --model logistic` factors the Hessian and saves it beside the checkpoint; a forget in a fresh
    process (the cache cleared) loads it, takes the Woodbury step (equal to the direct step to 1e-8) and saves the
    corrected state beside its output, which the next forget uses in turn. A damaged file is skipped with a note;
    a file of other weights is ignored."""
    from unlearnkit.exact.linear import REMOVAL_CACHE, state_file

    cpu = ("--device", "cpu", "--no-progress")
    invoke_json("train", "--model", "logistic", "--weight-decay", "0.01", "--out", str(tmp_path / "lr"), *cpu)
    assert state_file(tmp_path / "lr").exists()
    trained = load_checkpoint(tmp_path / "lr")
    theta = head_parameters(trained.model)
    recipe = TrainConfig.from_dict(trained.train_config)
    ids = [int(i) for i in digits.train.ids[:2]]
    REMOVAL_CACHE.clear()  # a new process
    invoke_json("forget", "-c", str(tmp_path / "lr"), "--forget", f"ids:{ids[0]},{ids[1]}", "--method", "certified",
                "--out", str(tmp_path / "lr1"), *cpu)
    split = select(digits.train, f"ids:{ids[0]},{ids[1]}", seed=0)
    expected = direct_step(theta, split, recipe.weight_decay)
    first = head_parameters(load_checkpoint(tmp_path / "lr1").model)
    assert float((first - expected.theta).abs().max()) < 1e-8
    key, state = REMOVAL_CACHE.for_weights(first)
    assert torch.equal(state.theta0, theta) and state.removed == 2  # the trained factor, corrected for 2 rows
    assert state_file(tmp_path / "lr1").exists()
    REMOVAL_CACHE.clear()
    invoke_json("forget", "-c", str(tmp_path / "lr1"), "--forget", f"ids:{int(digits.train.ids[5])}", "--method",
                "certified", "--out", str(tmp_path / "lr2"), *cpu)
    second = head_parameters(load_checkpoint(tmp_path / "lr2").model)
    assert REMOVAL_CACHE.for_weights(second)[1].removed == 3  # the saved state, carried one more step

    REMOVAL_CACHE.clear()
    state_file(tmp_path / "lr").write_bytes(b"not a torch file")
    damaged = invoke_json("forget", "-c", str(tmp_path / "lr"), "--forget", f"ids:{ids[0]},{ids[1]}", "--method",
                          "certified", "--out", str(tmp_path / "lr3"), *cpu)
    assert any("unreadable removal state" in note for note in damaged["notes"])
    assert float((head_parameters(load_checkpoint(tmp_path / "lr3").model) - expected.theta).abs().max()) < 1e-8
    REMOVAL_CACHE.clear()
    state_file(tmp_path / "lr").write_bytes(state_file(tmp_path / "lr2").read_bytes())  # other weights' state
    invoke_json("forget", "-c", str(tmp_path / "lr"), "--forget", f"ids:{ids[0]}", "--method", "certified",
                "--out", str(tmp_path / "lr4"), *cpu)
    assert REMOVAL_CACHE.for_weights(head_parameters(load_checkpoint(tmp_path / "lr4").model)) is None


def test_the_saved_state_never_overwrites_a_checkpoint_of_that_name(digits, tmp_path):
    """A checkpoint named PATH.removal (its weights are PATH.removal.safetensors) beside a logistic PATH keeps its
    weights: the state is not written over a file that is not one."""
    from unlearnkit.exact.linear import REMOVAL_CACHE, state_file

    cpu = ("--device", "cpu", "--no-progress")
    invoke_json("train", "--model", "mlp", "--epochs", "1", "--out", str(tmp_path / "lr.removal"), *cpu)
    before = (tmp_path / "lr.removal.safetensors").read_bytes()
    invoke_json("train", "--model", "logistic", "--weight-decay", "0.01", "--out", str(tmp_path / "lr"), *cpu)
    assert state_file(tmp_path / "lr") == tmp_path / "lr.removal.safetensors"
    assert (tmp_path / "lr.removal.safetensors").read_bytes() == before
    load_checkpoint(tmp_path / "lr.removal")  # still whole
    REMOVAL_CACHE.clear()  # a new process: it finds the other file, says so and goes on without it
    info = invoke_json("forget", "-c", str(tmp_path / "lr"), "--forget", "random:0.002", "--method", "certified",
                       "--out", str(tmp_path / "lr1"), *cpu)
    assert any("unreadable removal state" in note for note in info["notes"]) and not info["retrained"]


def test_cli_head_with_perturbation_retrains_past_its_budget(digits, tmp_path):
    cpu = ("--device", "cpu", "--no-progress")
    invoke_json("train", "--model", "cnn", "--epochs", "1", "--out", str(tmp_path / "cnn"), *cpu)
    head = invoke_json("train", "--model", "logistic", "--features-from", str(tmp_path / "cnn"), "--perturbation",
                       "0.5", "--unit-norm", "--weight-decay", "0.01", "--out", str(tmp_path / "head"), *cpu)
    assert head["test_accuracy"] > 0.5
    sidecar = json.loads((tmp_path / "head.json").read_text())
    assert sidecar["model"]["kwargs"] == {"perturbation": 0.5, "normalize": True, "backbone": "cnn",
                                          "backbone_kwargs": {}}
    assert sidecar["features_from"] == str(tmp_path / "cnn")
    info = invoke_json("forget", "-c", str(tmp_path / "head"), "--forget", "random:0.005", "--method", "certified",
                       "--out", str(tmp_path / "head1"), *cpu)
    assert info["budget"] == pytest.approx(residual_budget(0.5, 1.0, 1e-4))
    assert info["retrained"] == (info["residual_bound"] > info["budget"])
    assert info["epsilon"] == pytest.approx(epsilon_spent(info["cumulative_bound"], 0.5, 1e-4))


def test_cli_errors_are_one_line(capsys, tmp_path):
    assert "--unit-norm and --features-from apply to the linear and logistic models; add --model logistic" in fails(
        capsys, "train", "--model", "mlp", "--perturbation", "1", "--out", str(tmp_path / "m"), "--device", "cpu")
    assert "optimizer 'lbfgs' trains the linear and logistic models" in fails(
        capsys, "train", "--model", "mlp", "--optimizer", "lbfgs", "--out", str(tmp_path / "m"), "--device", "cpu")
    invoke_json("train", "--model", "mlp", "--epochs", "1", "--out", str(tmp_path / "mlp"), "--device", "cpu")
    assert "certified removal needs a linear or logistic model" in fails(
        capsys, "forget", "-c", str(tmp_path / "mlp"), "--forget", "random:0.01", "--method", "certified", "--out",
        str(tmp_path / "x"), "--device", "cpu")
    assert "reads inputs of shape" in fails(
        capsys, "train", "--dataset", "digits", "--model", "logistic", "--features-from",
        str(_other_shape(tmp_path)), "--out", str(tmp_path / "h"), "--device", "cpu")


def _other_shape(tmp_path: Path) -> Path:
    """A checkpoint of an mlp on 3x8x8 inputs: its features cannot feed a head on 1x8x8 digits."""
    from unlearnkit.data import DataSpec

    spec = DataSpec((3, 8, 8), 10)
    model = build_model("mlp", spec, hidden=(8,))
    save_checkpoint(tmp_path / "rgb", model, CheckpointMeta("mlp", {"hidden": (8,)}, spec, {"source": "none"}, {}))
    return tmp_path / "rgb"


FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.fashion
@pytest.mark.skipif(not FASHION_DIR.is_dir(), reason=f"Fashion-MNIST not installed in {FASHION_DIR} "
                    "(apt-get install dataset-fashion-mnist)")
def test_logistic_on_12000_fashion_images_reaches_the_optimum(tmp_path):
    """Issue 19: `unlearn train --dataset fashion-mnist --train-size 12000 --model logistic` stalled at 2e-6 with
    L-BFGS alone; at the defaults it now reaches the optimum certified removal needs."""
    result = runner.invoke(app, ["train", "--dataset", "fashion-mnist", "--train-size", "12000", "--model",
                                 "logistic", "--out", str(tmp_path / "lr"), "--device", "cpu", "--no-progress"])
    assert result.exit_code == 0, result.output
    from unlearnkit.runs import load_with_data

    ckpt, bundle = load_with_data(tmp_path / "lr")
    theta = head_parameters(ckpt.model)
    grad = loss_gradient(theta, bundle.train.x, bundle.train.y, objective="logistic", weight_decay=1e-3)
    assert float(grad.norm()) / len(bundle.train) <= AT_OPTIMUM


def test_cg_solver_equals_the_direct_solve(digits, logistic):
    """The Hessian-free step (preconditioned conjugate gradients) is the Cholesky step to 1e-8, and its bound
    counts the solve's own residual on top of Corollary 1's."""
    split = select(digits.train, "random:0.01", seed=0)
    theta = head_parameters(logistic)
    args = (theta, split.retain.x.flatten(1), split.retain.y, split.forget.x.flatten(1), split.forget.y)
    direct = newton_removal(*args, objective="logistic", weight_decay=RECIPE.weight_decay, solver="direct")
    cg = newton_removal(*args, objective="logistic", weight_decay=RECIPE.weight_decay, solver="cg")
    assert float((cg.theta - direct.theta).abs().max()) < 1e-8
    assert cg.residual_bound >= direct.residual_bound * (1 - 1e-6)
    assert cg.residual_bound - direct.residual_bound < 1e-6


def direct_step(theta: torch.Tensor, split, weight_decay: float = RECIPE.weight_decay):
    """The uncached Newton step (the Cholesky solve on the Hessian built directly): what every cached path equals."""
    return newton_removal(theta, split.retain.x.flatten(1), split.retain.y, split.forget.x.flatten(1), split.forget.y,
                          objective="logistic", weight_decay=weight_decay, solver="direct")


def assert_is_step(result, expected) -> None:
    assert float((head_parameters(result.model) - expected.theta).abs().max()) < 1e-8
    assert result.info["residual_bound"] == pytest.approx(expected.residual_bound, rel=1e-6, abs=1e-9)


def test_successive_removals_with_the_cache_equal_uncached_updates(digits, logistic, logistic_ckpt, tmp_path):
    """Four certified removals in a row, the cache cold at first (the second request factors the Hessian, the
    later ones reuse that factor away from its weights), give the weights of four uncached direct Newton steps to
    1e-8, and the same bounds."""
    from unlearnkit.exact.linear import FEATURES, REMOVAL_CACHE, augment

    REMOVAL_CACHE.clear()
    FEATURES.clear()
    theta = head_parameters(logistic)
    retain, path, model, removed = digits.train, logistic_ckpt, logistic, []
    for request in range(4):
        split = select(retain, "random:0.005", seed=request)
        removed.append(len(split.forget))
        result = certified(model, split, RECIPE, path)
        expected = direct_step(theta, split)
        assert_is_step(result, expected)
        assert not result.info["retrained"]
        assert bool(REMOVAL_CACHE.states) == (request >= 1)  # the second request in a row factored the Hessian
        path = save_unlearned(tmp_path / f"r{request}", result, split, load_checkpoint(path))
        theta, retain, model = expected.theta, split.retain, result.model
    kept = REMOVAL_CACHE.find(retain.ids, augment(retain.x.flatten(1)), RECIPE.weight_decay)
    assert kept is not None and kept.removed == sum(removed[1:])  # the rows removed since the factor, requests 2-4


def test_prepared_cache_steps_without_a_pass_and_equals_the_direct_step(digits, logistic, logistic_ckpt):
    """With the Hessian factored at the model's weights beforehand (REMOVAL_CACHE.prepare), the first request is a
    Woodbury solve: the same weights as the direct Newton step to 1e-8 and the same bound; two requests from the
    same model (two branches) share the prepared state without disturbing each other; a forget set too large for
    the correction is solved without it, to the same weights."""
    from unlearnkit.exact.linear import REMOVAL_CACHE, augment

    REMOVAL_CACHE.clear()
    theta = head_parameters(logistic)
    REMOVAL_CACHE.prepare(theta, digits.train.ids, augment(digits.train.x.flatten(1)), "logistic", RECIPE.weight_decay)
    for seed, spec in ((0, "random:0.01"), (1, "random:0.01"), (2, "class:3")):
        split = select(digits.train, spec, seed=seed)
        result = certified(logistic, split, RECIPE, logistic_ckpt)
        expected = direct_step(theta, split)
        assert_is_step(result, expected)
        kept = REMOVAL_CACHE.find(split.retain.ids, augment(split.retain.x.flatten(1)), RECIPE.weight_decay)
        if spec == "class:3":  # ~140 rows: a correction of rank 1400 costs more than the solve without it
            assert kept is None
        else:
            assert kept is not None and kept.removed == len(split.forget) and torch.equal(kept.theta0, theta)


def test_hessian_state_solves_the_hessian_on_the_remaining_data(digits, logistic):
    """The Woodbury-corrected factor (rows removed in two batches) solves the Hessian built directly on what
    remains, at the factor's weights, to 1e-10 relative; its Gram matrix is the remaining rows' own."""
    from unlearnkit.exact.linear import RemovalCache, augment
    from unlearnkit.models.convex import _hessian

    theta = head_parameters(logistic)
    xa = augment(digits.train.x.flatten(1))
    state = RemovalCache().prepare(theta, digits.train.ids, xa, "logistic", RECIPE.weight_decay)
    state = state.without(xa[:7]).without(xa[7:20])
    rest = xa[20:]
    hess = _hessian(theta, rest, "logistic", RECIPE.weight_decay)
    rhs = torch.randn(theta.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    expected = torch.linalg.solve(hess, rhs.reshape(-1, 1)).reshape(rhs.shape)
    assert float((state.solve(rhs) - expected).norm() / expected.norm()) < 1e-10
    assert torch.allclose(state.gram, rest.T @ rest, rtol=1e-10, atol=1e-9) and state.removed == 20
    assert state.matches(rest) and not state.matches(xa[19:])


def test_prepared_cache_still_retrains_past_the_budget(digits, logistic, logistic_ckpt):
    """The cache changes how the step is solved, not the budget: past it the model is retrained from scratch."""
    from unlearnkit.exact.linear import REMOVAL_CACHE, augment

    REMOVAL_CACHE.clear()
    REMOVAL_CACHE.prepare(head_parameters(logistic), digits.train.ids, augment(digits.train.x.flatten(1)),
                          "logistic", RECIPE.weight_decay)
    split = select(digits.train, "random:0.01", seed=0)
    result = certified(logistic, split, RECIPE, logistic_ckpt, removal_budget=1e-9)
    assert result.info["retrained"]
    assert torch.equal(head_parameters(result.model), head_parameters(trained(digits, "logistic", data=split.retain)))


def test_feature_cache_equals_the_network_and_keys_by_its_weights(digits):
    """The cached head features are the feature network's own outputs, row for row by id; rows missing from the
    cache are computed; another network (other weights) gets its own entry."""
    from unlearnkit.exact.linear import FEATURES

    FEATURES.clear()
    cnn = fit(build_model("cnn", digits.spec, seed=0), digits.train, TrainConfig(epochs=1), progress=False)
    head = build_model("logistic", digits.spec, backbone="cnn", backbone_kwargs={})
    head.features.load_network(cnn)
    part = digits.train.subset(torch.arange(100))
    first = FEATURES(head, part)
    assert torch.equal(first.x, frozen_features(head, part).x) and len(FEATURES.tables) == 1
    later = FEATURES(head, digits.train.subset(torch.arange(50, 300)))  # 200 rows new, 50 cached
    assert torch.allclose(later.x, frozen_features(head, digits.train.subset(torch.arange(50, 300))).x, atol=1e-6)
    other = build_model("logistic", digits.spec, backbone="cnn", backbone_kwargs={})
    other.features.load_network(build_model("cnn", digits.spec, seed=1))
    assert not torch.allclose(FEATURES(other, part).x, first.x) and len(FEATURES.tables) == 2
