"""Claims of the teacher-student and Fisher/second-order methods: scrub, bad-teacher, ssd, fisher, influence.

The shared behaviours (interface, determinism, budgets, input untouched) are in
test_methods_conformance.py; here each method's own claims, on the digits MLP of tests/conftest.py.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from tests.conftest import DIGITS_RECIPE, same_state, state_copy
from unlearnkit.errors import ConfigError
from unlearnkit.methods import influence as influence_module
from unlearnkit.methods.base import UnlearnTask
from unlearnkit.methods.fisher import PerSampleGrads, expected_fisher, sampled_labels
from unlearnkit.methods.influence import GradientRows
from unlearnkit.models import build_model
from unlearnkit.train import accuracy_on, predict_logits
from unlearnkit.unlearning import unlearn

NAMES = ("scrub", "bad-teacher", "ssd", "fisher", "influence")


@pytest.fixture(scope="module")
def class_runs(digits_model, class_split):
    return {name: unlearn(digits_model, class_split, name, train_config=DIGITS_RECIPE, progress=False, seed=0)
            for name in NAMES}


def _run(model, split, name, **config):
    return unlearn(model, split, name, train_config=DIGITS_RECIPE, progress=False, seed=0, **config)


# --- class forgetting, every method ----------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_class_forgetting_moves_to_the_retrained_level(name, class_runs, class_split, digits_model):
    """Forgetting class 3: forget accuracy falls from ~1.0 to at most 0.1 (a retrained model scores 0;
    on this split the methods reach 0.00-0.03), and retain accuracy drops by at most 0.1."""
    assert accuracy_on(digits_model, class_split.forget) > 0.9
    result = class_runs[name].model
    assert accuracy_on(result, class_split.forget) <= 0.1
    assert accuracy_on(result, class_split.retain) >= accuracy_on(digits_model, class_split.retain) - 0.1


# --- scrub -----------------------------------------------------------------------------------------


def test_scrub_without_max_steps_never_reads_the_forget_set(digits_model, random_split):
    """max_epochs=0 leaves only the retain min-steps: tampering with the forget samples changes nothing,
    while the default max-steps do make the result depend on them."""
    tampered = copy.deepcopy(random_split)
    tampered.forget.x = torch.randn_like(tampered.forget.x)
    a = _run(digits_model, random_split, "scrub", max_epochs=0, epochs=1)
    b = _run(digits_model, tampered, "scrub", max_epochs=0, epochs=1)
    assert same_state(state_copy(a.model), state_copy(b.model))
    c = _run(digits_model, random_split, "scrub", max_epochs=1, epochs=1)
    d = _run(digits_model, tampered, "scrub", max_epochs=1, epochs=1)
    assert not same_state(state_copy(c.model), state_copy(d.model))


def test_scrub_max_steps_push_forget_outputs_away_from_the_teacher(digits_model, class_split, class_runs):
    teacher = F.log_softmax(predict_logits(digits_model, class_split.forget), 1)
    student = F.log_softmax(predict_logits(class_runs["scrub"].model, class_split.forget), 1)
    kl = F.kl_div(student, teacher, reduction="batchmean", log_target=True)
    assert kl > 1.0


def test_scrub_rejects_more_max_epochs_than_epochs(digits_model, class_split):
    with pytest.raises(ConfigError, match="max_epochs <= epochs"):
        _run(digits_model, class_split, "scrub", epochs=2, max_epochs=3)


# --- bad-teacher -----------------------------------------------------------------------------------


def test_bad_teacher_makes_forget_predictions_uninformed(class_runs, class_split, digits_model):
    """On forget samples the student copies a random network: confidence drops, retain confidence stays."""
    def confidence(model, data):
        return float(predict_logits(model, data).softmax(1).max(1).values.mean())

    student = class_runs["bad-teacher"].model
    assert confidence(digits_model, class_split.forget) > 0.95
    assert confidence(student, class_split.forget) < 0.8
    assert confidence(student, class_split.retain) > 0.9


def test_bad_teacher_rejects_empty_retain_fraction(digits_model, class_split):
    with pytest.raises(ConfigError, match="retain_fraction"):
        _run(digits_model, class_split, "bad-teacher", retain_fraction=0.0)


# --- ssd -------------------------------------------------------------------------------------------


def test_ssd_only_dampens_a_few_weights(class_runs, digits_model):
    """Every weight is multiplied by a factor in [0, 1]: none grows or flips sign, and only a few change."""
    before, after = state_copy(digits_model), state_copy(class_runs["ssd"].model)
    changed = total = 0
    for k in before:
        assert torch.all(after[k].abs() <= before[k].abs() + 1e-7), k
        assert torch.all(after[k] * before[k] >= 0), k
        changed += int((after[k] != before[k]).sum())
        total += before[k].numel()
    assert 0 < changed < 0.2 * total
    assert any("dampened" in n for n in class_runs["ssd"].notes)


def test_ssd_with_an_unreachable_threshold_changes_nothing(digits_model, class_split):
    result = _run(digits_model, class_split, "ssd", alpha=1e12)
    assert same_state(state_copy(result.model), state_copy(digits_model))


# --- fisher ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_per_sample_gradients_match_torch_func(arch, digits):
    """The hook path (linear and conv layers) agrees with vmap(grad) and with the fallback path."""
    model = build_model(arch, digits.spec, seed=0).eval()
    x, y = digits.train.x[:24], digits.train.y[:24]
    params = {k: v.detach() for k, v in model.named_parameters()}

    def loss(p, xi, yi):
        return F.cross_entropy(functional_call(model, p, (xi[None],)), yi[None])

    ref = vmap(grad(loss), in_dims=(None, 0, 0))(params, x, y)
    grads = PerSampleGrads(model, x)
    per_sample, squares = grads.batch(x, y, mode="per_sample"), grads.batch(x, y, mode="squares")
    for k in params:
        torch.testing.assert_close(per_sample[k], ref[k], atol=1e-6, rtol=1e-4)
        torch.testing.assert_close(squares[k], (ref[k] ** 2).sum(0), atol=1e-8, rtol=1e-4)
    grads.layers, grads.other = {}, list(params)  # force the torch.func fallback for every parameter
    fallback = grads.batch(x, y, mode="per_sample")
    for k in params:
        torch.testing.assert_close(fallback[k], ref[k], atol=1e-6, rtol=1e-4)


def test_expected_fisher_is_the_mean_squared_gradient_at_sampled_labels(digits, digits_model, class_split):
    model = copy.deepcopy(digits_model).eval()
    data = class_split.retain.subset(torch.arange(40))
    task = UnlearnTask(model=model, split=class_split, train_config=DIGITS_RECIPE, device=torch.device("cpu"))
    fisher = expected_fisher(model, data, task, stream=5, chunk=16)
    gen = task.generator(5)
    labels = torch.cat([sampled_labels(model, data.x[i:i + 16], gen) for i in range(0, 40, 16)])
    for k, p in model.named_parameters():
        ref = torch.zeros_like(p)
        for i in range(40):
            g, = torch.autograd.grad(F.cross_entropy(model(data.x[i:i + 1]), labels[i:i + 1]), [p])
            ref += g ** 2
        torch.testing.assert_close(fisher[k], ref / 40, atol=1e-9, rtol=1e-4)


def test_fisher_zeroes_the_forgotten_class_rows(class_runs, digits_model, class_split):
    """Class 3's output unit is reset to zero-mean noise (var 1e-3): nothing of the original row is left,
    while the other rows keep their direction under the small default noise."""
    head = class_runs["fisher"].model.classifier.weight.detach()
    original = digits_model.classifier.weight.detach()
    cosine = F.cosine_similarity(head, original, dim=1)
    assert abs(float(cosine[3])) < 0.5 and head[3].norm() < 0.5 * original[3].norm()
    assert all(float(cosine[c]) > 0.9 for c in range(10) if c != 3)
    assert any("zeroed the classifier rows" in n for n in class_runs["fisher"].notes)


def test_fisher_noise_grows_with_alpha(digits_model, random_split):
    def moved(alpha):
        result = _run(digits_model, random_split, "fisher", alpha=alpha)
        return sum(float((a - b).pow(2).sum()) for a, b in zip(state_copy(result.model).values(),
                                                                 state_copy(digits_model).values(), strict=True))

    assert 0 < moved(1e-7) < moved(1e-5)


# --- influence -------------------------------------------------------------------------------------


def test_influence_step_raises_the_forget_loss(digits_model, random_split):
    """The sign: theta + (1/n) H^-1 sum grad L moves uphill on the forget set, at first order
    (g . step > 0) and for a small step in fact."""
    def forget_loss(model):
        return float(F.cross_entropy(predict_logits(model, random_split.forget), random_split.forget.y))

    result = _run(digits_model, random_split, "influence", scale=0.1)
    model = copy.deepcopy(digits_model)
    loss = F.cross_entropy(model(random_split.forget.x), random_split.forget.y, reduction="sum")
    g = torch.autograd.grad(loss, list(model.parameters()))
    step = [(a - b).detach() for a, b in zip(result.model.parameters(), digits_model.parameters(), strict=True)]
    assert sum(float((gi * si).sum()) for gi, si in zip(g, step, strict=True)) > 0
    assert forget_loss(result.model) > forget_loss(digits_model)


def test_woodbury_solve_matches_the_dense_damped_fisher(digits):
    model = build_model("mlp", digits.spec, seed=0, hidden=(12,)).eval()
    x, y = digits.train.x[:30], digits.train.y[:30]
    grads = PerSampleGrads(model, x)
    rows = GradientRows([grads.batch(x[:20], y[:20], mode="factors"), grads.batch(x[20:], y[20:], mode="factors")])
    dense = grads.batch(x, y, mode="per_sample")
    names = [k for k, _ in model.named_parameters()]
    g = torch.cat([dense[k].flatten(1) for k in names], 1).double()
    v = {k: torch.randn(p.shape, generator=torch.Generator().manual_seed(0)) for k, p in model.named_parameters()}
    flat_v = torch.cat([v[k].flatten() for k in names]).double()
    expected = torch.linalg.solve(g.T @ g / 30 + 1e-2 * torch.eye(g.shape[1], dtype=torch.float64), flat_v)
    got = rows.damped_fisher_solve(v, 1e-2)
    torch.testing.assert_close(torch.cat([got[k].flatten() for k in names]).double(), expected, rtol=1e-3, atol=1e-4)


def test_influence_auto_uses_the_diagonal_for_large_models(digits_model, class_split, monkeypatch):
    monkeypatch.setattr(influence_module, "WOODBURY_MAX_ENTRIES", 10)
    result = _run(digits_model, class_split, "influence")
    assert any("diagonal" in n for n in result.notes)
    assert not same_state(state_copy(result.model), state_copy(digits_model))


def test_influence_rejects_unknown_hessian(digits_model, class_split):
    with pytest.raises(ConfigError, match="'hessian' of method 'influence' must be one of 'auto', 'woodbury', "
                                          "'diagonal', got 'kfac'"):
        _run(digits_model, class_split, "influence", hessian="kfac")


def test_second_order_methods_run_on_a_cnn(digits, class_split):
    """Conv layers take the same per-sample-gradient path (unfold), no special casing by the user."""
    from unlearnkit.train import fit

    cnn = fit(build_model("cnn", digits.spec, seed=0), digits.train, DIGITS_RECIPE.with_(epochs=2), progress=False)
    for name in ("fisher", "influence", "ssd"):
        result = _run(cnn, class_split, name)
        assert type(result.model) is type(cnn)
        assert not same_state(state_copy(result.model), state_copy(cnn))
