"""Tests for what ``compare`` trains by default: the shrunk training set and the memorising recipe.

The Fashion-MNIST case reads the real files (skipped with the reason when the Debian package is absent)
and checks the claim the default exists for: the original memorises (train accuracy at least 5 points
above test accuracy), which random forgetting needs to mean anything.

Run: .venv/bin/python -m pytest tests/test_compare.py -q
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from unlearnkit.bench import MEMORISING_DEFAULTS, apply_compare_defaults
from unlearnkit.data import load_dataset, shrink_train
from unlearnkit.errors import ConfigError
from unlearnkit.runs import train_model
from unlearnkit.train import accuracy_on, default_recipe

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


def test_shrink_train_equals_loading_with_train_size(digits):
    shrunk = shrink_train(load_dataset("digits"), 200)
    loaded = load_dataset("digits", train_size=200)
    assert torch.equal(shrunk.train.ids, loaded.train.ids)
    assert torch.equal(shrunk.train.x, loaded.train.x)
    assert torch.equal(shrunk.test.ids, digits.test.ids)
    # the options rebuild the same subset (checkpoints rely on that)
    assert shrunk.options == loaded.options
    assert torch.equal(load_dataset("digits", **shrunk.options).train.ids, shrunk.train.ids)


def test_shrink_train_refuses_a_second_shrink_and_bad_sizes():
    bundle = load_dataset("digits", train_size=300)
    with pytest.raises(ConfigError, match="already shrunk; load the dataset again with train_size"):
        shrink_train(bundle, 100)
    with pytest.raises(ConfigError, match=r"--train-size must lie in \[2, 1438\] for 'digits', got 5000"):
        shrink_train(load_dataset("digits"), 5000)


def test_compare_defaults_leave_other_datasets_alone(digits):
    bundle, epochs = apply_compare_defaults(load_dataset("digits"), train_size=None, epochs=None)
    assert len(bundle.train) == len(digits.train) and epochs is None
    assert "digits" not in MEMORISING_DEFAULTS


def test_compare_defaults_apply_only_where_the_user_said_nothing(monkeypatch):
    monkeypatch.setitem(MEMORISING_DEFAULTS, "digits", {"train_size": 400, "epochs": 7})
    bundle, epochs = apply_compare_defaults(load_dataset("digits"), train_size=None, epochs=None)
    assert (len(bundle.train), epochs) == (400, 7)
    assert bundle.options["train_size"] == 400
    # the user's epochs win; the default subset still applies
    bundle, epochs = apply_compare_defaults(load_dataset("digits"), train_size=None, epochs=3)
    assert (len(bundle.train), epochs) == (400, 3)
    # the user's own --train-size (already applied by load_dataset) wins over the default size
    bundle, epochs = apply_compare_defaults(load_dataset("digits", train_size=900), train_size=900, epochs=None)
    assert (len(bundle.train), epochs) == (900, 7)
    # a training set already smaller than the default is kept whole
    monkeypatch.setitem(MEMORISING_DEFAULTS, "digits", {"train_size": 5000, "epochs": 7})
    bundle, _ = apply_compare_defaults(load_dataset("digits"), train_size=None, epochs=None)
    assert len(bundle.train) == 1438


@pytest.mark.slow
@pytest.mark.fashion
@pytest.mark.skipif(not FASHION_DIR.is_dir(), reason=f"Fashion-MNIST not installed in {FASHION_DIR} "
                    "(apt-get install -y dataset-fashion-mnist)")
def test_fashion_mnist_compare_default_memorises():
    bundle, epochs = apply_compare_defaults(load_dataset("fashion-mnist"), train_size=None, epochs=None)
    assert (len(bundle.train), epochs) == (10_000, 20)
    trained = train_model(bundle, "cnn", default_recipe("fashion-mnist", "cnn").with_(epochs=epochs), progress=False)
    train_acc, test_acc = accuracy_on(trained.model, bundle.train), accuracy_on(trained.model, bundle.test)
    assert train_acc >= test_acc + 0.05, (train_acc, test_acc)


def test_all_leaves_out_methods_that_need_training_files_and_naming_one_is_refused():
    from unlearnkit.bench.compare import resolve_methods
    from unlearnkit.errors import ConfigError
    from unlearnkit.methods import METHODS, methods_of_kind

    needing = sorted(n for n, c in METHODS.items() if c.requires)
    names = resolve_methods("all")
    assert names[0] == "retrain" and not set(needing) & set(names)
    assert len(names) == len(methods_of_kind("samples")) - len(needing)  # attribute methods are not in "all"
    with pytest.raises(ConfigError, match=rf"{needing[0]} needs .*use `unlearn forget --method {needing[0]}`"):
        resolve_methods(f"finetune,{needing[0]}")
    with pytest.raises(ConfigError, match=r"dfr removes an attribute, not samples; compare it with --attribute"):
        resolve_methods("finetune,dfr")
