"""Claims of the NeurIPS-2023 challenge methods: forget-free, fanchuan, targeted-reinit, conv-noise, conv-transpose.

The conv-only methods (targeted-reinit, conv-noise, conv-transpose; ``needs_conv``) run on the shared
digits ``cnn``, the others on the digits ``mlp``. Each claim test can fail: forget accuracy on ``class:3`` must fall
to the retrained model's level (or, for forget-free, to the ceiling its docstring states) while retain accuracy
stays within 0.1 of the original's.
"""

from __future__ import annotations

import copy
import importlib

import pytest
import torch
import torch.nn.functional as F

from tests.conftest import DIGITS_RECIPE, same_state, state_copy
from unlearnkit.errors import ConfigError
from unlearnkit.methods import METHODS, UnlearnTask
from unlearnkit.methods.layers import conv_layers
from unlearnkit.train import accuracy_on, predict_logits
from unlearnkit.unlearning import unlearn

CONV_ONLY = ["targeted-reinit", "conv-noise", "conv-transpose"]


def _module(name: str):
    """The module that defines a registered method (its helper functions live there)."""
    return importlib.import_module(METHODS[name].__module__)


def _run(model, split, name, digits, **kwargs):
    return unlearn(model, split, name, train_config=DIGITS_RECIPE, holdout=digits.test, progress=False, **kwargs)


# --- class forgetting claims --------------------------------------------------------------------------

# The claim: forgetting class 3 brings forget accuracy to the level of the model retrained without it (the
# `retrained_forget_accuracy` fixture, ~0), within one class in ten (0.1, what a uniform guess gets right).
# forget-free is the exception its docstring states: it distils the original's logits, which carry knowledge
# of the forgotten class, so class:3 forget accuracy falls "to about 0.2-0.7, not reliably to 0"; its bound
# is the top of that documented range.
CLASS_METHODS = ["conv-noise", "conv-transpose", "fanchuan", "forget-free", "targeted-reinit"]
CHANCE = 0.1
DOCUMENTED_CEILING = {"forget-free": 0.7}


@pytest.fixture(scope="module")
def retrained_forget_accuracy(digits, digits_model, digits_cnn, class_split):
    """Forget accuracy on class:3 of the mlp and the cnn retrained without it: the level forgetting aims at."""
    return {kind: accuracy_on(_run(model, class_split, "retrain", digits, seed=0).model, class_split.forget)
            for kind, model in (("mlp", digits_model), ("cnn", digits_cnn))}


@pytest.mark.parametrize("name", CLASS_METHODS)
def test_class_forgetting_claim(name, digits, digits_model, digits_cnn, class_split, retrained_forget_accuracy):
    model = digits_cnn if name in CONV_ONLY else digits_model
    assert accuracy_on(model, class_split.forget) > 0.95  # there was something to forget
    result = _run(model, class_split, name, digits, seed=0)
    bound = DOCUMENTED_CEILING.get(name, retrained_forget_accuracy["cnn" if name in CONV_ONLY else "mlp"] + CHANCE)
    assert accuracy_on(result.model, class_split.forget) <= bound
    assert accuracy_on(result.model, class_split.retain) >= accuracy_on(model, class_split.retain) - 0.1


# --- conv-only methods: a clear error on the mlp (the conformance suite runs them on the digits cnn) ---

@pytest.mark.parametrize("name", CONV_ONLY)
def test_conv_only_methods_refuse_the_mlp(name, digits, digits_model, class_split):
    assert METHODS[name].needs_conv  # so the conformance suite runs it on the digits cnn
    with pytest.raises(ConfigError, match="works on conv layers and this model has none"):
        _run(digits_model, class_split, name, digits)


# --- methods that never read the forget set --------------------------------------------------------

@pytest.mark.parametrize("name", ["forget-free", "conv-noise", "conv-transpose"])
def test_forget_set_free_methods_ignore_the_forget_samples(name, digits, digits_model, digits_cnn, random_split):
    assert METHODS[name].needs_forget is False
    model = digits_cnn if name in CONV_ONLY else digits_model
    tampered = copy.deepcopy(random_split)
    tampered.forget.x = torch.randn_like(tampered.forget.x)
    a = _run(model, random_split, name, digits, epochs=1)
    b = _run(model, tampered, name, digits, epochs=1)
    assert same_state(state_copy(a.model), state_copy(b.model))


# --- forget-free -----------------------------------------------------------------------------------

def test_forget_free_resets_a_growing_share_of_layers():
    method = METHODS["forget-free"](cycles=3, layer_fraction=1.0)
    assert [method.layers_to_reset(9, c) for c in range(3)] == [3, 6, 9]
    small = METHODS["forget-free"](cycles=3, layer_fraction=0.34)
    assert [small.layers_to_reset(3, c) for c in range(3)] == [1, 1, 1]  # never zero


def test_forget_free_really_resets_layers(digits, digits_model, random_split):
    """With a negligible learning rate the result is the original with some layers freshly initialised."""
    result = _run(digits_model, random_split, "forget-free", digits, cycles=1, epochs=1, layer_fraction=0.34,
                  lr_scale=1e-6)
    before, after = state_copy(digits_model), state_copy(result.model)
    moved = [k for k in before if k.endswith("weight") and not torch.allclose(before[k], after[k], atol=1e-4)]
    assert len(moved) == 1  # one of the three layers, the rest untouched


# --- fanchuan --------------------------------------------------------------------------------------

def test_fanchuan_losses():
    contrastive_spread, uniform_kl = _module("fanchuan").contrastive_spread, _module("fanchuan").uniform_kl

    assert uniform_kl(torch.zeros(4, 10)).item() == pytest.approx(0.0, abs=1e-6)
    assert uniform_kl(torch.eye(10)[:4] * 5).item() > 0.5
    retain = torch.randn(8, 10)
    # lowest (log of the retain batch size) when no retain output stands out for a forget output
    assert contrastive_spread(torch.zeros(4, 10), retain, 1.15).item() == pytest.approx(torch.log(torch.tensor(8.)))
    forget = retain[:4].clone().requires_grad_(True)  # forget outputs that copy some retain outputs
    loss = contrastive_spread(forget, retain, 1.15)
    assert loss.item() > torch.log(torch.tensor(8.0)).item()
    loss.backward()
    stepped = forget - 0.1 * forget.grad  # one descent step spreads the similarities out
    assert contrastive_spread(stepped, retain, 1.15).item() < loss.item()


def test_fanchuan_uniform_stage_raises_forget_entropy(digits, digits_model, class_split):
    """Stage 1 alone (near-zero later learning rates) pulls forget predictions toward uniform."""
    result = _run(digits_model, class_split, "fanchuan", digits, epochs=1, forget_lr_scale=1e-9,
                  retain_lr_scale=1e-9, uniform_lr_scale=0.2)

    def entropy(model):
        logp = F.log_softmax(predict_logits(model, class_split.forget), dim=1)
        return float(-(logp.exp() * logp).sum(1).mean())

    assert entropy(result.model) > entropy(digits_model) + 0.5


# --- targeted-reinit -------------------------------------------------------------------------------

def _task(model, split, digits, seed=0):
    return UnlearnTask(model=model, split=split, train_config=DIGITS_RECIPE, device=torch.device("cpu"), seed=seed,
                       holdout=digits.test, progress=False)


def test_targeted_reinit_resets_the_smallest_gradient_weights(digits, digits_cnn, class_split):
    method = METHODS["targeted-reinit"](fraction=0.3)
    task = _task(digits_cnn, class_split, digits)
    model = task.clone_model()
    assert method.saliency(model, task)
    convs = conv_layers(model, "test")
    grads = {n: c.weight.grad.abs().clone() for n, c in convs}
    originals = {n: c.weight.detach().clone() for n, c in convs}
    masks = method.reset(convs, task)
    for name, conv in convs:
        mask, w = masks[name], conv.weight.detach()
        assert int(mask.sum()) == round(0.3 * mask.numel())  # the requested share
        assert grads[name][mask].max() <= grads[name][~mask].min()  # the smallest |gradient|
        assert torch.equal(w[~mask], originals[name][~mask])  # kept weights untouched
        assert not torch.isclose(w[mask], originals[name][mask]).any()  # reset weights drawn anew


def test_targeted_reinit_gives_kept_weights_a_tenth_of_the_rate(digits, digits_cnn, class_split):
    method = METHODS["targeted-reinit"]()
    task = _task(digits_cnn, class_split, digits)
    model = task.clone_model()
    method.saliency(model, task)
    convs = conv_layers(model, "test")
    masks = method.reset(convs, task)
    x, y = class_split.retain.x[:64], class_split.retain.y[:64]

    def grads():
        model.zero_grad()
        F.cross_entropy(model(x), y).backward()
        return {n: c.weight.grad.clone() for n, c in convs}

    plain = grads()
    hooks = method.scale_gradients(convs, masks)
    scaled = grads()
    for h in hooks:
        h.remove()
    for name, _ in convs:
        expected = torch.where(masks[name], plain[name], 0.1 * plain[name])
        assert torch.allclose(scaled[name], expected)
    assert all(torch.equal(g, plain[n]) for n, g in grads().items())  # hooks removed


# --- conv-noise ------------------------------------------------------------------------------------

def test_conv_noise_is_relative_to_each_layer():
    add_relative_noise = _module("conv-noise").add_relative_noise

    conv = torch.nn.Conv2d(8, 16, 3)
    with torch.no_grad():
        conv.weight.mul_(7.0)
    before = conv.weight.detach().clone()
    add_relative_noise([("c", conv)], 0.5, torch.Generator().manual_seed(0))
    ratio = float((conv.weight.detach() - before).std() / before.std())
    assert ratio == pytest.approx(0.5, rel=0.1)


def test_conv_noise_balanced_class_weights():
    balanced_class_weights = _module("conv-noise").balanced_class_weights

    w = balanced_class_weights(torch.tensor([0, 0, 0, 1, 2, 2]), 4)
    assert w.tolist() == pytest.approx([6 / 9, 6 / 3, 6 / 6, 0.0])  # n / (classes present x count); absent: 0


# --- conv-transpose --------------------------------------------------------------------------------

def test_conv_transpose_swaps_kernel_axes(digits_cnn):
    transpose_kernels = _module("conv-transpose").transpose_kernels

    model = copy.deepcopy(digits_cnn)
    names = transpose_kernels(model)
    assert names == ["features.0", "features.3"]
    for name in names:
        w0, w1 = dict(digits_cnn.named_modules())[name].weight, dict(model.named_modules())[name].weight
        assert torch.equal(w1, w0.transpose(-1, -2))
    transpose_kernels(model)  # an involution
    assert same_state(state_copy(model), state_copy(digits_cnn))


def test_conv_transpose_refuses_non_square_kernels():
    transpose_kernels = _module("conv-transpose").transpose_kernels

    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, (1, 3)), torch.nn.Flatten())
    with pytest.raises(ConfigError, match="square conv kernels"):
        transpose_kernels(model)


# --- config validation -----------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "bad"), [
    ("forget-free", {"layer_fraction": 0.0}), ("forget-free", {"cycles": 0}), ("forget-free", {"clip_grad": -1.0}),
    ("fanchuan", {"temperature": 0.0}), ("fanchuan", {"forget_lr_scale": 0.0}),
    ("targeted-reinit", {"fraction": 1.5}), ("targeted-reinit", {"kept_lr_factor": 2.0}),
    ("conv-noise", {"noise": 0.0}), ("conv-noise", {"final_noise": -0.1}), ("conv-transpose", {"epochs": 0}),
])
def test_bad_values_refused(name, bad):
    (field, value), = bad.items()
    with pytest.raises(ConfigError, match=rf"^parameter '{field}' of method '{name}' must be .*, got {value}$"):
        METHODS[name](**bad)
