"""Tests for unlearnkit.train (TrainConfig, fit, predictions) and unlearnkit.device.

Run: PYTHONPATH=src .venv/bin/python -m pytest tests/test_train.py -q
"""

from __future__ import annotations

import dataclasses
import math
import re

import pytest
import torch
from torch import nn

from unlearnkit.data import DatasetBundle, IndexedDataset, load_dataset
from unlearnkit.device import resolve_device
from unlearnkit.errors import ConfigError, TrainingDivergedError
from unlearnkit.models import build_model
from unlearnkit.train import (
    TrainConfig,
    accuracy_on,
    batches,
    default_recipe,
    fit,
    predict_logits,
    show_progress,
)

SMALL = TrainConfig(epochs=3, batch_size=64, lr=0.05)
HAS_MPS = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These models are tiny: intra-op threads only add spin-waiting, badly so on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits() -> DatasetBundle:
    return load_dataset("digits")


@pytest.fixture(scope="module")
def small_train(digits) -> IndexedDataset:
    """300 digits: enough for the determinism checks, a fraction of the time of the full set."""
    return digits.train.subset(torch.arange(300))


@pytest.fixture(scope="module")
def trained(digits) -> nn.Module:
    return fit(build_model("mlp", digits.spec, seed=0, hidden=(64,)), digits.train, SMALL, progress=False)


def mlp(spec, seed: int = 0) -> nn.Module:
    return build_model("mlp", spec, seed=seed, hidden=(32,))


def weights_equal(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# --- TrainConfig ---------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"optimizer": "rmsprop"}, "parameter 'optimizer' of TrainConfig must be one of 'sgd', 'adam', 'lbfgs', got "
                                   "'rmsprop'; lbfgs: full batch, to the optimum (linear and logistic models)"),
        ({"schedule": "step"}, "parameter 'schedule' of TrainConfig must be one of 'cosine', 'constant', got 'step'"),
        ({"epochs": 0}, "parameter 'epochs' of TrainConfig must be an int in [1, inf), got 0"),
        ({"epochs": 2.5}, "parameter 'epochs' of TrainConfig must be an int in [1, inf), got 2.5"),
        ({"batch_size": 0}, "parameter 'batch_size' of TrainConfig must be an int in [1, inf), got 0"),
        ({"batch_size": True}, "parameter 'batch_size' of TrainConfig must be an int in [1, inf), got True"),
        ({"lr": 0.0}, "parameter 'lr' of TrainConfig must be a float in (0, inf), got 0.0"),
        ({"lr": -0.1}, "parameter 'lr' of TrainConfig must be a float in (0, inf), got -0.1"),
        ({"lr": math.inf}, "parameter 'lr' of TrainConfig must be a float in (0, inf), got inf"),
        ({"lr": math.nan}, "parameter 'lr' of TrainConfig must be a float in (0, inf), got nan"),
        ({"lr": "0.1"}, "parameter 'lr' of TrainConfig must be a float in (0, inf), got '0.1'"),
        ({"weight_decay": -1e-4}, "parameter 'weight_decay' of TrainConfig must be a float in [0, inf), got -0.0001"),
        ({"weight_decay": math.nan}, "parameter 'weight_decay' of TrainConfig must be a float in [0, inf), got nan"),
        ({"weight_decay": math.inf}, "parameter 'weight_decay' of TrainConfig must be a float in [0, inf), got inf"),
        ({"momentum": 1.0}, "parameter 'momentum' of TrainConfig must be a float in [0, 1), got 1.0"),
        ({"momentum": -0.5}, "parameter 'momentum' of TrainConfig must be a float in [0, 1), got -0.5"),
        ({"momentum": math.nan}, "parameter 'momentum' of TrainConfig must be a float in [0, 1), got nan"),
        ({"seed": 0.5}, "parameter 'seed' of TrainConfig must be an int, got 0.5"),
    ],
)
def test_train_config_validation(kwargs, message):
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        TrainConfig(**kwargs)


def test_train_config_accepts_the_edges():
    """Ints where floats are declared, and the closed ends of the intervals."""
    config = TrainConfig(epochs=1, batch_size=1, lr=1, momentum=0, weight_decay=0)
    assert (config.lr, config.momentum, config.weight_decay) == (1, 0, 0)
    assert TrainConfig(optimizer="lbfgs").optimizer == "lbfgs"


def test_train_config_dict_round_trip_and_with():
    config = TrainConfig(epochs=7, batch_size=32, optimizer="adam", lr=1e-3, momentum=0.0, weight_decay=0.0,
                         schedule="constant", seed=4)
    d = config.to_dict()
    assert d == {"epochs": 7, "batch_size": 32, "optimizer": "adam", "lr": 1e-3, "momentum": 0.0,
                 "weight_decay": 0.0, "schedule": "constant", "seed": 4}
    assert TrainConfig.from_dict(d) == config
    assert TrainConfig.from_dict({}) == TrainConfig()
    changed = config.with_(seed=5)
    assert changed.seed == 5 and config.seed == 4 and changed.epochs == 7
    with pytest.raises(ConfigError, match=re.escape("parameter 'epochs' of TrainConfig must be an int in [1, inf)")):
        config.with_(epochs=0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.lr = 1.0  # type: ignore[misc]


def test_train_config_from_dict_unknown_field():
    with pytest.raises(
        ConfigError, match=r"unknown TrainConfig field\(s\) \['learning_rate'\]; known: \['batch_size'"
    ):
        TrainConfig.from_dict({"epochs": 2, "learning_rate": 0.1})


def test_default_recipes():
    assert default_recipe("fashion-mnist", "cnn") == TrainConfig(epochs=10, batch_size=128, lr=0.05)
    assert default_recipe("digits", "mlp").epochs == 30
    assert default_recipe("tabular", "mlp") == TrainConfig()


def test_show_progress_flag():
    assert show_progress(True) is True
    assert show_progress(False) is False


# --- batches -------------------------------------------------------------------------------------

def test_batches_cover_every_sample_once_in_a_seeded_order(small_train):
    def order(seed):
        gen = torch.Generator().manual_seed(seed)
        return torch.cat([y for _, y in batches(small_train, 64, generator=gen)])

    sizes = [len(y) for _, y in batches(small_train, 64, shuffle=False)]
    assert sizes == [64, 64, 64, 64, 44]
    assert sorted(order(0).tolist()) == sorted(small_train.y.tolist())
    assert torch.equal(order(0), order(0))
    assert not torch.equal(order(0), order(1))
    unshuffled = torch.cat([x for x, _ in batches(small_train, 64, shuffle=False)])
    assert torch.equal(unshuffled, small_train.x)


# --- fit -----------------------------------------------------------------------------------------

def test_fit_on_digits_learns(trained, digits):
    assert accuracy_on(trained, digits.train) > 0.9
    assert accuracy_on(trained, digits.test) > 0.85
    assert not trained.training  # fit leaves the model in eval mode


def test_fit_returns_the_same_model_and_reports_epochs(small_train):
    model = mlp(small_train.spec)
    losses: list[tuple[int, float]] = []
    out = fit(model, small_train, TrainConfig(epochs=3), progress=False,
              on_epoch=lambda e, loss: losses.append((e, loss)))
    assert out is model
    assert [e for e, _ in losses] == [1, 2, 3]
    assert losses[-1][1] < losses[0][1] < math.log(10) + 0.5


def test_fit_is_deterministic_for_a_seed_and_differs_across_seeds(small_train):
    config = TrainConfig(epochs=2, seed=3)
    a = fit(mlp(small_train.spec), small_train, config, progress=False, device="cpu")
    b = fit(mlp(small_train.spec), small_train, config, progress=False, device="cpu")
    c = fit(mlp(small_train.spec), small_train, config.with_(seed=4), progress=False, device="cpu")
    assert weights_equal(a, b)
    assert not torch.equal(a.classifier.weight, c.classifier.weight)


def test_fit_seeds_dropout_and_leaves_global_rng_alone(small_train):
    def run():
        model = build_model("mlp", small_train.spec, hidden=(32,), dropout=0.5)
        return fit(model, small_train, TrainConfig(epochs=1), progress=False)

    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    a = run()
    assert torch.equal(torch.rand(3), expected)
    torch.manual_seed(1)  # a different global state must not change the result
    assert weights_equal(a, run())


@pytest.mark.parametrize(
    "config",
    [
        TrainConfig(epochs=2, optimizer="adam", lr=1e-2, schedule="constant"),
        TrainConfig(epochs=2, schedule="constant"),
        TrainConfig(epochs=2, optimizer="adam", lr=1e-2, weight_decay=0.0),
    ],
    ids=["adam-constant", "sgd-constant", "adam-cosine"],
)
def test_optimizer_and_schedule_paths_train(small_train, config):
    losses: list[float] = []
    model = fit(mlp(small_train.spec), small_train, config, progress=False,
                on_epoch=lambda _e, loss: losses.append(loss))
    assert losses[1] < losses[0]
    assert accuracy_on(model, small_train) > 0.5


def test_huge_learning_rate_diverges_with_a_clear_message(small_train):
    expected = r"loss became (nan|inf) at epoch 1 of train; lower the learning rate \(--lr\)"
    with pytest.raises(TrainingDivergedError, match=expected):
        fit(mlp(small_train.spec), small_train, TrainConfig(epochs=2, lr=1e30), progress=False)


def test_nan_in_data_diverges_and_names_the_description(small_train):
    x = small_train.x.clone()
    x[0, 0, 0, 0] = float("nan")
    poisoned = IndexedDataset(x, small_train.y, small_train.ids, small_train.num_classes)
    with pytest.raises(
        TrainingDivergedError, match=r"loss became nan at epoch 1 of retrain; lower the learning rate"
    ):
        fit(mlp(small_train.spec), poisoned, TrainConfig(epochs=1), progress=False, description="retrain")


def test_fit_on_empty_dataset(digits):
    with pytest.raises(ConfigError, match=r"cannot train on an empty dataset"):
        fit(mlp(digits.spec), digits.train.subset([]), SMALL, progress=False)


# --- predictions ---------------------------------------------------------------------------------

def test_predict_logits_order_shape_and_batching(trained, digits):
    test = digits.test
    shuffled = test.subset(torch.randperm(len(test), generator=torch.Generator().manual_seed(0)))
    logits = predict_logits(trained, shuffled)
    assert logits.shape == (len(test), 10) and logits.dtype == torch.float32
    with torch.no_grad():
        direct = trained.eval()(shuffled.x)
    assert torch.allclose(logits, direct, atol=1e-5)  # row i belongs to sample i, whatever the order
    assert torch.allclose(predict_logits(trained, shuffled, batch_size=7), logits, atol=1e-5)
    assert torch.allclose(predict_logits(trained, shuffled, device="cpu"), logits, atol=1e-5)


def test_predict_logits_restores_training_mode_and_uses_eval(digits):
    model = build_model("mlp", digits.spec, hidden=(32,), dropout=0.9).train()
    a = predict_logits(model, digits.test)
    b = predict_logits(model, digits.test)
    assert torch.equal(a, b)  # dropout off while predicting
    assert model.training


def test_predict_logits_on_empty_dataset(trained, digits):
    assert predict_logits(trained, digits.test.subset([])).shape == (0, 10)


def test_accuracy_on_known_answer():
    model = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.eye(2))  # predicts the larger coordinate
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0], [0.0, 3.0]])
    ds = IndexedDataset(x, [0, 1, 1, 1], [0, 1, 2, 3], 2)
    assert accuracy_on(model, ds) == 0.75
    assert math.isnan(accuracy_on(model, ds.subset([])))


def test_accuracy_matches_argmax_of_logits(trained, digits):
    logits = predict_logits(trained, digits.test)
    expected = (logits.argmax(1) == digits.test.y).float().mean().item()
    assert accuracy_on(trained, digits.test) == pytest.approx(expected)


# --- devices -------------------------------------------------------------------------------------

def test_resolve_device_cpu_and_auto():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    if not torch.cuda.is_available() and not HAS_MPS:
        assert resolve_device(None) == torch.device("cpu")
        assert resolve_device("auto") == torch.device("cpu")
    else:
        assert resolve_device(None).type in ("cuda", "mps")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here; the refusal cannot be seen")
def test_resolve_device_cuda_without_cuda():
    with pytest.raises(
        ConfigError, match=r"device 'cuda' requested but CUDA is not available here; use --device cpu"
    ):
        resolve_device("cuda")
    with pytest.raises(ConfigError, match=r"device 'cuda:1' requested but CUDA is not available"):
        resolve_device("cuda:1")


@pytest.mark.skipif(HAS_MPS, reason="MPS is available here; the refusal cannot be observed")
def test_resolve_device_mps_without_mps():
    with pytest.raises(ConfigError, match=r"device 'mps' requested but MPS is not available here"):
        resolve_device("mps")


def test_resolve_device_unknown_name():
    with pytest.raises(ConfigError, match=r"unknown device 'gpu0'; use auto, cpu, cuda, cuda:N or mps"):
        resolve_device("gpu0")


def test_fit_should_stop_ends_training_early(small_train):
    model = mlp(small_train.spec)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    calls: list[int] = []

    def stop_after_two() -> bool:
        calls.append(1)
        return len(calls) > 2

    fit(model, small_train, TrainConfig(epochs=5), progress=False, should_stop=stop_after_two)
    assert len(calls) == 3  # asked before each step: two steps ran, the third was refused
    assert not model.training
    assert any(not torch.equal(v, before[k]) for k, v in model.state_dict().items())
    untouched = mlp(small_train.spec)
    fit(untouched, small_train, TrainConfig(epochs=5), progress=False, should_stop=lambda: True)
    assert all(torch.equal(v, before[k]) for k, v in untouched.state_dict().items())
