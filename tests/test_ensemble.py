"""Tests for the vectorized ensemble trainer (unlearnkit.train.fit_ensemble) and the cached retrained
references (unlearnkit.bench.references). The oracle is the obviously-correct slow path: one ``fit`` per seed.

Run: nice -n 19 .venv/bin/python -m pytest -q tests/test_ensemble.py
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from unlearnkit.bench.references import (
    ReferenceCacheWarning,
    cache_key,
    reference_key,
    retrained_models,
)
from unlearnkit.data import IndexedDataset, load_dataset
from unlearnkit.errors import ConfigError, DataError, TrainingDivergedError
from unlearnkit.models import build_model
from unlearnkit.train import EnsembleFallbackWarning, TrainConfig, check_seeds, fit, fit_ensemble

SGD = TrainConfig(epochs=2, batch_size=64, lr=0.05, momentum=0.9, weight_decay=5e-4, schedule="cosine")
ADAM = TrainConfig(epochs=2, batch_size=64, optimizer="adam", lr=1e-2, weight_decay=1e-3, schedule="constant")
SEEDS = [3, 11, 5]


@pytest.fixture(scope="module")
def train() -> IndexedDataset:
    """200 digits: the last batch of 64 holds 8 samples, so the short-batch path is exercised too."""
    return load_dataset("digits", train_size=200).train


def small_mlp(spec, seed: int) -> nn.Module:
    return build_model("mlp", spec, seed=seed, hidden=(32,))


def small_cnn(spec, seed: int) -> nn.Module:
    return build_model("cnn", spec, seed=seed, width=4, hidden=32)


def sequential(build, train, config, seeds) -> list[nn.Module]:
    return [fit(build(train.spec, s), train, config.with_(seed=s), device="cpu", progress=False) for s in seeds]


def max_difference(a: nn.Module, b: nn.Module) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    return max(float((sa[k].float() - sb[k].float()).abs().max()) for k in sa)


def assert_identical(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


# ------------------------------------------------------------------------------------------------ fit_ensemble


@pytest.mark.parametrize("build", [small_mlp, small_cnn], ids=["mlp", "cnn"])
@pytest.mark.parametrize("config", [SGD, ADAM], ids=["sgd-cosine", "adam-constant"])
def test_fit_ensemble_equals_sequential_fit_per_seed(train, build, config):
    with warnings.catch_warnings():
        warnings.simplefilter("error", EnsembleFallbackWarning)  # these models must take the vectorized path
        models = fit_ensemble(lambda s: build(train.spec, s), train, config, len(SEEDS), SEEDS,
                              device="cpu", progress=False, vectorize=True)
    expected = sequential(build, train, config, SEEDS)
    for got, want in zip(models, expected, strict=True):
        assert max_difference(got, want) < 1e-4
        assert not got.training


def test_conv_models_on_cpu_train_one_by_one_by_default(train):
    """Grouped convolutions under vmap are slower on CPU, so the default fits conv models sequentially:
    bit-identical to fit, and silently (it is a speed choice, not a fallback)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", EnsembleFallbackWarning)
        models = fit_ensemble(lambda s: small_cnn(train.spec, s), train, SGD, 2, [0, 1], device="cpu", progress=False)
    for got, want in zip(models, sequential(small_cnn, train, SGD, [0, 1]), strict=True):
        assert_identical(got, want)


@pytest.mark.parametrize("config", [SGD, ADAM], ids=["sgd-cosine", "adam-constant"])
def test_fit_ensemble_is_exact_in_float64(train, config):
    """Without float32 rounding the two paths agree to machine precision: the algorithm itself is the same."""
    train64 = IndexedDataset(train.x.double(), train.y, train.ids, train.num_classes)

    def build(spec, seed):
        return small_mlp(spec, seed).double()

    models = fit_ensemble(lambda s: build(train.spec, s), train64, config, 2, [0, 1], device="cpu", progress=False)
    for got, want in zip(models, sequential(build, train64, config, [0, 1]), strict=True):
        assert max_difference(got, want) < 1e-12


def test_different_seeds_give_different_models_and_independent_parameters(train):
    models = fit_ensemble(lambda s: small_mlp(train.spec, s), train, SGD.with_(epochs=1), 3, device="cpu",
                          progress=False)
    assert max_difference(models[0], models[1]) > 1e-2
    assert max_difference(models[1], models[2]) > 1e-2
    # ordinary modules: their own leaf parameters, not views of one stacked tensor
    first = models[0].classifier.weight
    assert first.is_leaf and first.grad_fn is None
    before = models[1].classifier.weight.clone()
    with torch.no_grad():
        first.add_(1.0)
    assert torch.equal(models[1].classifier.weight, before)


def test_default_seeds_start_at_the_config_seed(train):
    config = SGD.with_(epochs=1, seed=7)
    (model,) = fit_ensemble(lambda s: small_mlp(train.spec, s), train, config, 1, device="cpu", progress=False)
    assert max_difference(model, fit(small_mlp(train.spec, 7), train, config, progress=False)) < 1e-5


def test_unused_parameters_are_left_alone_as_fit_leaves_them(train):
    """A parameter without a gradient gets no weight decay from fit's optimizer; the ensemble must agree."""

    class WithSpareHead(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
            self.spare = nn.Linear(4, 4)  # never called in forward

        def forward(self, x):
            return self.body(x)

    def build(seed):
        torch.manual_seed(seed)
        return WithSpareHead()

    config = SGD.with_(epochs=1)
    models = fit_ensemble(build, train, config, 2, [0, 1], device="cpu", progress=False)
    for seed, model in zip([0, 1], models, strict=True):
        want = fit(build(seed), train, config.with_(seed=seed), progress=False)
        assert torch.equal(model.spare.weight, build(seed).spare.weight)
        assert max_difference(model, want) < 1e-5


def test_batch_norm_falls_back_to_fit_with_identical_results(train):
    config = SGD.with_(epochs=1)

    def build(seed):
        return build_model("resnet18", train.spec, seed=seed, width=4)

    with pytest.warns(EnsembleFallbackWarning, match=r"BatchNorm2d layer 'bn1' tracks running statistics"):
        models = fit_ensemble(build, train, config, 2, [0, 1], device="cpu", progress=False)
    for seed, model in zip([0, 1], models, strict=True):
        assert_identical(model, fit(build(seed), train, config.with_(seed=seed), progress=False))
        assert not model.training


def test_dropout_falls_back_to_fit_with_identical_results(train):
    """fit seeds dropout per model; vmap cannot reproduce those draws, so the models train one by one."""
    config = SGD.with_(epochs=1)

    def build(seed):
        return build_model("mlp", train.spec, seed=seed, hidden=(32,), dropout=0.5)

    with pytest.warns(EnsembleFallbackWarning, match=r"torch\.func could not vectorize it"):
        models = fit_ensemble(build, train, config, 2, [0, 1], device="cpu", progress=False)
    for seed, model in zip([0, 1], models, strict=True):
        assert_identical(model, fit(build(seed), train, config.with_(seed=seed), progress=False))


def test_divergence_raises_what_fit_raises(train):
    build = lambda s: small_mlp(train.spec, s)  # noqa: E731
    with pytest.raises(TrainingDivergedError, match=r"loss became (nan|inf) at epoch 1 of ensemble \(seed 0\); "
                                                    r"lower the learning rate \(--lr\)"):
        fit_ensemble(build, train, TrainConfig(epochs=2, lr=1e30), 2, device="cpu", progress=False)
    x = train.x.clone()
    x[:, 0, 0, 0] = float("nan")
    poisoned = IndexedDataset(x, train.y, train.ids, train.num_classes)
    with pytest.raises(TrainingDivergedError, match=r"loss became nan at epoch 1 of refs \(seed 4\)"):
        fit_ensemble(build, poisoned, SGD, 2, [4, 5], device="cpu", progress=False, description="refs")
    # the sequential fallback names the seed the same way
    with pytest.warns(EnsembleFallbackWarning), pytest.raises(
        TrainingDivergedError, match=r"loss became nan at epoch 1 of refs \(seed 4\)"
    ):
        fit_ensemble(lambda s: build_model("mlp", train.spec, seed=s, hidden=(8,), dropout=0.5), poisoned, SGD, 2,
                     [4, 5], device="cpu", progress=False, description="refs")


@pytest.mark.parametrize(
    ("n_models", "seeds", "match"),
    [
        (0, None, r"n_models must be a positive integer, got 0"),
        (2.0, None, r"n_models must be a positive integer, got 2\.0"),
        (3, [0, 1], r"got 2 seeds for n_models=3; give one seed per model or none"),
        (2, [1, 1], r"seeds must be distinct, got \[1\] more than once"),
        (1, ["a"], r"seeds must be integers"),
        (1, [], r"need at least one seed"),
    ],
)
def test_bad_model_count_or_seeds_are_refused(train, n_models, seeds, match):
    with pytest.raises(ConfigError, match=match):
        fit_ensemble(lambda s: small_mlp(train.spec, s), train, SGD, n_models, seeds, progress=False)


def test_empty_dataset_is_refused(train):
    with pytest.raises(ConfigError, match=r"cannot train on an empty dataset"):
        fit_ensemble(lambda s: small_mlp(train.spec, s), train.subset([]), SGD, 2, progress=False)


def test_check_seeds_accepts_integer_like_values():
    assert check_seeds(range(3)) == [0, 1, 2]
    assert check_seeds(torch.tensor([4, 2])) == [4, 2]


def test_progress_bar_shows_the_description(train, capsys):
    fit_ensemble(lambda s: small_mlp(train.spec, s), train, SGD.with_(epochs=1), 2, device="cpu", progress=True,
                 description="refs-bar")
    assert "refs-bar" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ references

REF_CONFIG = TrainConfig(epochs=1, batch_size=64, lr=0.05)
FORGET = [int(i) for i in range(0, 40, 2)]
KWARGS = {"hidden": (16,)}


@pytest.fixture
def recorded(monkeypatch):
    """Wraps references.fit_ensemble and records the seeds of every call."""
    import unlearnkit.bench.references as references

    calls: list[list[int]] = []
    real = references.fit_ensemble

    def spy(build, dataset, config, n_models, seeds=None, **kwargs):
        calls.append(list(seeds))
        return real(build, dataset, config, n_models, seeds, **kwargs)

    monkeypatch.setattr(references, "fit_ensemble", spy)
    return calls


def references_for(train, seeds, cache_dir, forget=FORGET, config=REF_CONFIG):
    forget_ids = train.ids[torch.tensor(forget)]
    return retrained_models(train, forget_ids, "mlp", KWARGS, train.spec, config, seeds, cache_dir=cache_dir,
                            device="cpu", progress=False)


def test_references_are_retrained_models_cached_and_loaded(train, tmp_path, recorded):
    first = references_for(train, [0, 1], tmp_path)
    assert recorded == [[0, 1]]
    assert len(list(tmp_path.glob("retrain-mlp-seed*-*.safetensors"))) == 2
    assert len(list(tmp_path.glob("retrain-mlp-seed*-*.json"))) == 2
    retain = train.without(train.ids[torch.tensor(FORGET)])
    for seed, model in zip([0, 1], first, strict=True):
        want = fit(build_model("mlp", train.spec, seed=seed, **KWARGS), retain, REF_CONFIG.with_(seed=seed),
                   progress=False)
        assert max_difference(model, want) < 1e-5

    second = references_for(train, [0, 1], tmp_path)
    assert recorded == [[0, 1]]  # nothing trained the second time
    for a, b in zip(first, second, strict=True):
        assert_identical(a, b)
        assert not b.training


def test_one_more_seed_trains_only_that_one(train, tmp_path, recorded):
    references_for(train, [0, 1], tmp_path)
    models = references_for(train, [1, 2, 0], tmp_path)
    assert recorded == [[0, 1], [2]]
    assert len(models) == 3
    assert max_difference(models[0], models[2]) > 1e-3  # returned in the order of the seeds asked for


def test_no_cache_dir_trains_every_time(train, tmp_path, recorded, monkeypatch):
    monkeypatch.chdir(tmp_path)
    references_for(train, [0], None)
    references_for(train, [0], None)
    assert recorded == [[0], [0]]
    assert list(tmp_path.iterdir()) == []


def test_key_covers_forget_set_recipe_model_and_seed(train):
    def key(forget=FORGET, config=REF_CONFIG, kwargs=KWARGS, seed=0):
        retain = train.without(train.ids[torch.tensor(forget)])
        return reference_key(retain, "mlp", kwargs, train.spec, config, seed)

    base = key()
    assert key(forget=list(reversed(FORGET))) == base  # the retain set, not the order of the request
    assert key(config=REF_CONFIG.with_(seed=123)) == base  # the config's own seed is replaced by the model's
    assert key(forget=FORGET[:-1]) != base
    assert key(config=REF_CONFIG.with_(lr=0.1)) != base
    assert key(kwargs={"hidden": (32,)}) != base
    assert key(seed=1) != base
    assert len(base) == 64


def test_corrupt_cache_file_is_retrained_with_a_warning(train, tmp_path, recorded):
    (first,) = references_for(train, [0], tmp_path)
    (weights,) = tmp_path.glob("*.safetensors")
    weights.write_bytes(b"not a safetensors file")
    with pytest.warns(ReferenceCacheWarning, match=rf"cached reference .*{weights.stem}.* is unusable .*sha256"):
        (again,) = references_for(train, [0], tmp_path)
    assert recorded == [[0], [0]]
    assert_identical(first, again)
    (third,) = references_for(train, [0], tmp_path)  # the rewritten file loads again
    assert recorded == [[0], [0]]
    assert_identical(first, third)


def test_unknown_forget_ids_are_refused(train, tmp_path):
    with pytest.raises(DataError, match=r"1 ids not in the training set"):
        retrained_models(train, [10**9], "mlp", KWARGS, train.spec, REF_CONFIG, [0], cache_dir=tmp_path,
                         progress=False)


def test_cache_key_is_canonical_and_refuses_non_json():
    assert cache_key({"a": 1, "b": (1, 2)}) == cache_key({"b": [1, 2], "a": 1})
    with pytest.raises(ConfigError, match=r"cannot build a cache key"):
        cache_key({"w": torch.zeros(2)})
