"""Claims of the fine-tuning family: neggrad-plus, random-label, boundary-shrink, l1-sparse, salun, unsir.

Every method must forget a whole class on digits (forget accuracy from ~1.0 to at most 0.3; all six
reach 0.0 with their defaults) while keeping retain accuracy within 0.1 of the original's, plus one or
two checks of what makes each method what it is.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from tests.conftest import DIGITS_RECIPE, same_state, state_copy
from unlearnkit.errors import ConfigError
from unlearnkit.methods import METHODS, UnlearnTask
from unlearnkit.methods.boundary_shrink import nearest_wrong_labels
from unlearnkit.methods.l1_sparse import l1_norm
from unlearnkit.methods.random_label import relabelled_mix
from unlearnkit.methods.salun import saliency_mask
from unlearnkit.methods.unsir import error_maximising_noise
from unlearnkit.train import accuracy_on, batches
from unlearnkit.unlearning import unlearn

FAMILY = ["neggrad-plus", "random-label", "boundary-shrink", "l1-sparse", "salun", "unsir"]


def _run(model, split, name, **config):
    return unlearn(model, split, name, train_config=DIGITS_RECIPE, progress=False, seed=0, **config).model


def _task(model, split, seed: int = 0) -> UnlearnTask:
    return UnlearnTask(model=model, split=split, train_config=DIGITS_RECIPE, device=torch.device("cpu"), seed=seed)


@pytest.fixture(scope="module")
def forgotten(digits_model, class_split):
    """Each method's default run on class:3."""
    return {name: _run(digits_model, class_split, name) for name in FAMILY}


def _tampered(split, part: str):
    """A copy of the split whose ``part`` (forget or retain) inputs are replaced by noise."""
    other = copy.deepcopy(split)
    data = getattr(other, part)
    data.x = torch.randn(data.x.shape, generator=torch.Generator().manual_seed(5))
    return other


# --- the shared claim -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", FAMILY)
def test_forgets_a_class_and_keeps_the_rest(name, forgotten, class_split, digits_model):
    assert accuracy_on(digits_model, class_split.forget) > 0.9  # there was something to forget
    assert accuracy_on(forgotten[name], class_split.forget) <= 0.3
    assert accuracy_on(forgotten[name], class_split.retain) >= accuracy_on(digits_model, class_split.retain) - 0.1


@pytest.mark.parametrize(("name", "bad", "message"), [
    ("neggrad-plus", {"alpha": 1.5}, r"'alpha' of method 'neggrad-plus' must be a float in \[0, 1\], got 1.5$"),
    ("neggrad-plus", {"clip_grad": 0.0}, r"'clip_grad' of method 'neggrad-plus' must be a float in \(0, inf\) or None"),
    ("random-label", {"lr_scale": 0.0}, r"'lr_scale' of method 'random-label' must be a float in \(0, inf\)"
     r" or None, got 0.0$"),
    ("boundary-shrink", {"epsilon": 0.0}, r"'epsilon' of method 'boundary-shrink' must be a float in \(0, inf\)"),
    ("l1-sparse", {"l1": -1e-3}, r"'l1' of method 'l1-sparse' must be a float in \[0, inf\) or None, got -0.001$"),
    ("salun", {"mask_fraction": 0.0}, r"'mask_fraction' of method 'salun' must be a float in \(0, 1\]"
     r" or None, got 0.0$"),
    ("salun", {"mask_fraction": 1.5}, r"'mask_fraction' of method 'salun' must be a float in \(0, 1\]"
     r" or None, got 1.5$"),
    ("unsir", {"noise_size": 0}, r"'noise_size' of method 'unsir' must be an int in \[1, inf\) or None, got 0$"),
    ("unsir", {"noise_l2": -0.1}, r"'noise_l2' of method 'unsir' must be a float in \[0, inf\), got -0.1$"),
])
def test_bad_config_refused(name, bad, message):
    with pytest.raises(ConfigError, match=message):
        METHODS[name](**bad)


# --- neggrad-plus ---------------------------------------------------------------------------------

def test_neggrad_plus_raises_the_forget_loss(digits_model, class_split, forgotten):
    x, y = class_split.forget.x, class_split.forget.y
    with torch.no_grad():
        before = F.cross_entropy(digits_model(x), y)
        after = F.cross_entropy(forgotten["neggrad-plus"](x), y)
    assert after > before + 1.0


def test_neggrad_plus_with_alpha_one_ignores_the_forget_set(digits_model, random_split):
    """alpha = 1 leaves only retain descent: the forget inputs then change nothing."""
    tampered = _tampered(random_split, "forget")
    a = _run(digits_model, random_split, "neggrad-plus", alpha=1.0, epochs=1)
    b = _run(digits_model, tampered, "neggrad-plus", alpha=1.0, epochs=1)
    assert same_state(state_copy(a), state_copy(b))
    c = _run(digits_model, random_split, "neggrad-plus", epochs=1)
    d = _run(digits_model, tampered, "neggrad-plus", epochs=1)
    assert not same_state(state_copy(c), state_copy(d))  # with the default alpha the forget set matters


# --- random-label ---------------------------------------------------------------------------------

def test_random_label_relabels_every_forget_sample_to_a_wrong_class(digits_model, class_split):
    mix = relabelled_mix(_task(digits_model, class_split))
    n = len(class_split.forget)
    assert len(mix) == n + len(class_split.retain)
    assert torch.equal(mix.x[:n], class_split.forget.x)
    assert not (mix.y[:n] == class_split.forget.y).any()
    assert len(mix.y[:n].unique()) > 5  # spread over the other classes, not one fixed class
    assert torch.equal(mix.y[n:], class_split.retain.y)
    again = relabelled_mix(_task(digits_model, class_split))
    assert torch.equal(mix.y, again.y)  # seeded


# --- boundary-shrink ------------------------------------------------------------------------------

def test_boundary_shrink_labels_are_wrong_and_near(digits_model, class_split):
    labels, crossed = nearest_wrong_labels(copy.deepcopy(digits_model), class_split.forget, 0.5,
                                           _task(digits_model, class_split))
    assert not (labels == class_split.forget.y).any()
    assert crossed > 0
    # the nearest wrong class is one the model already ranks high: its second choice for most samples
    with torch.no_grad():
        second = digits_model(class_split.forget.x).topk(2, dim=1).indices[:, 1]
    assert (labels == second).float().mean() > 0.5


def test_boundary_shrink_reads_no_retain_data(digits_model, class_split):
    assert not METHODS["boundary-shrink"].needs_retain
    a = _run(digits_model, class_split, "boundary-shrink", epochs=1)
    b = _run(digits_model, _tampered(class_split, "retain"), "boundary-shrink", epochs=1)
    assert same_state(state_copy(a), state_copy(b))


# --- l1-sparse ------------------------------------------------------------------------------------

def test_l1_sparse_penalty_shrinks_the_weights(digits_model, random_split):
    # the class-forgetting default strength (2e-3 at 2x the lr; random samples default to half of each)
    plain = _run(digits_model, random_split, "l1-sparse", l1=0.0, epochs=1, lr_scale=2.0)
    sparse = _run(digits_model, random_split, "l1-sparse", l1=2e-3, epochs=1, lr_scale=2.0)
    with torch.no_grad():
        assert l1_norm(sparse) < 0.8 * l1_norm(plain)
    assert accuracy_on(sparse, random_split.retain) > 0.9


def test_l1_sparse_reads_no_forget_data(digits_model, random_split):
    assert not METHODS["l1-sparse"].needs_forget
    a = _run(digits_model, random_split, "l1-sparse", epochs=1)
    b = _run(digits_model, _tampered(random_split, "forget"), "l1-sparse", epochs=1)
    assert same_state(state_copy(a), state_copy(b))


# --- salun ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("fraction", [0.1, 0.5])
def test_salun_mask_covers_the_requested_fraction(digits_model, class_split, fraction):
    model = copy.deepcopy(digits_model)
    masks = saliency_mask(model, _task(digits_model, class_split), fraction)
    total = sum(p.numel() for p in model.parameters())
    assert sum(int(m.sum()) for m in masks.values()) == round(fraction * total)
    assert {n for n, _ in model.named_parameters()} == set(masks)
    # the kept weights are those with the largest forget-loss gradient (one global threshold)
    grads = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for x, y in batches(class_split.forget, DIGITS_RECIPE.batch_size, shuffle=False):
        grad = torch.autograd.grad(F.cross_entropy(model(x), y), list(model.parameters()))
        for n, g in zip(grads, grad, strict=True):
            grads[n] += g
    kept = torch.cat([grads[n].abs()[m] for n, m in masks.items()])
    dropped = torch.cat([grads[n].abs()[~m] for n, m in masks.items()])
    assert kept.min() >= dropped.max()


def test_salun_leaves_non_salient_weights_unchanged(digits_model, class_split, forgotten):
    masks = saliency_mask(copy.deepcopy(digits_model), _task(digits_model, class_split), 0.5)
    before = dict(digits_model.named_parameters())
    after = dict(forgotten["salun"].named_parameters())
    for name, mask in masks.items():
        assert torch.equal(after[name][~mask], before[name][~mask]), name
    assert any(not torch.equal(after[n][m], before[n][m]) for n, m in masks.items())


def test_salun_with_full_mask_is_random_label(digits_model, class_split):
    config = {"epochs": 1, "lr_scale": 0.1}
    a = _run(digits_model, class_split, "salun", mask_fraction=1.0, **config)
    b = _run(digits_model, class_split, "random-label", **config)
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6, msg=name)


# --- unsir ----------------------------------------------------------------------------------------

def test_unsir_noise_maximises_the_forget_class_loss(digits_model, class_split):
    model = copy.deepcopy(digits_model)
    classes = torch.tensor([3])
    shape = tuple(class_split.forget.x.shape[1:])
    start = torch.randn(16, *shape, generator=torch.Generator().manual_seed(0))
    noise = error_maximising_noise(model, classes, shape, 16, 40, 0.1, 0.1, _task(digits_model, class_split))
    assert noise.shape == (16, *shape)
    label = torch.full((16,), 3)
    with torch.no_grad():
        assert F.cross_entropy(model(noise), label) > F.cross_entropy(model(start), label) + 1.0
        assert (model(noise).argmax(1) != 3).all()


def test_unsir_reads_only_the_forget_labels(digits_model, random_split):
    a = _run(digits_model, random_split, "unsir")
    b = _run(digits_model, _tampered(random_split, "forget"), "unsir")
    assert same_state(state_copy(a), state_copy(b))


def test_unsir_survives_random_forgetting(digits_model, random_split):
    """random:0.1 holds every class, so noise is learnt for all ten; repair must still save the model."""
    assert len(random_split.forget.y.unique()) == 10
    model = _run(digits_model, random_split, "unsir")
    assert accuracy_on(model, random_split.retain) > 0.85
