"""Tests for unlearnkit.models: architectures by name, seeded builds, fresh copies, checkpoints.

Run: PYTHONPATH=src .venv/bin/python -m pytest tests/test_models.py -q
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from unlearnkit.data import DataSpec
from unlearnkit.errors import CheckpointError, ConfigError
from unlearnkit.models import (
    MODELS,
    CheckpointMeta,
    build_model,
    checkpoint_exists,
    checkpoint_paths,
    fresh_copy,
    load_checkpoint,
    read_sidecar,
    register_model,
    save_checkpoint,
)

DIGITS = DataSpec((1, 8, 8), 10)
MNIST = DataSpec((1, 28, 28), 10)
CIFAR = DataSpec((3, 32, 32), 10)
# resnet18 at width 8: the same graph as the real one, 64x fewer weights, so the tests stay fast
SMALL = {"mlp": {"hidden": (32, 16)}, "cnn": {"width": 4, "hidden": 16}, "resnet18": {"width": 8}}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These models are tiny: intra-op threads only add spin-waiting, badly so on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def params_equal(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# --- building ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["mlp", "cnn", "resnet18"])
@pytest.mark.parametrize("spec", [DIGITS, MNIST, CIFAR], ids=["8x8x1", "28x28x1", "32x32x3"])
def test_build_model_output_shape(name, spec):
    model = build_model(name, DataSpec(spec.input_shape, 7), **SMALL[name]).eval()
    out = model(torch.randn(3, *spec.input_shape))
    assert out.shape == (3, 7)
    assert isinstance(model.classifier, nn.Linear) and model.classifier.out_features == 7


def test_resnet18_default_width_is_the_real_resnet18():
    model = build_model("resnet18", CIFAR)
    n_params = sum(p.numel() for p in model.parameters())
    assert 11_000_000 < n_params < 11_250_000  # ResNet-18 (CIFAR form) has ~11.17M parameters
    assert model.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_mlp_on_flat_features_and_its_hidden_layers():
    model = build_model("mlp", DataSpec((5,), 3), hidden=(4, 6), dropout=0.5)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(5, 4), (4, 6), (6, 3)]
    assert sum(isinstance(m, nn.Dropout) for m in model.modules()) == 2
    assert model(torch.randn(2, 5)).shape == (2, 3)


@pytest.mark.parametrize("name", ["mlp", "cnn", "resnet18"])
def test_same_seed_same_weights_different_seed_different(name):
    a = build_model(name, MNIST, seed=11, **SMALL[name])
    b = build_model(name, MNIST, seed=11, **SMALL[name])
    c = build_model(name, MNIST, seed=12, **SMALL[name])
    assert params_equal(a, b)
    assert not torch.equal(a.classifier.weight, c.classifier.weight)


def test_build_model_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(4)
    torch.manual_seed(123)
    build_model("mlp", DIGITS, seed=7)
    assert torch.equal(torch.rand(4), expected)


@pytest.mark.parametrize(
    ("name", "spec", "kwargs", "match"),
    [
        ("vit", DIGITS, {}, r"unknown model 'vit'; choose one of: cnn, linear, logistic, mlp, mtl-cnn, mtl-mlp, "
                            r"resnet18, sisa-ensemble"),
        ("mlp", DIGITS, {"depth": 3},
         r"model 'mlp' has no parameter\(s\) \['depth'\]; its parameters: \['dropout', 'erased', 'hidden'\]"),
        ("cnn", DIGITS, {"hidden": 8, "blocks": 2}, r"model 'cnn' has no parameter\(s\) \['blocks'\]"),
        ("cnn", DataSpec((64,), 10), {},
         r"the cnn needs image inputs \[C, H, W\] of at least 8x8, got \(64,\); use mlp"),
        ("cnn", DataSpec((1, 4, 4), 10), {}, r"at least 8x8, got \(1, 4, 4\)"),
        ("resnet18", DataSpec((64,), 10), {}, r"resnet18 needs image inputs \[C, H, W\], got \(64,\); use"),
    ],
)
def test_build_model_errors(name, spec, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        build_model(name, spec, **kwargs)


def test_registry_refuses_duplicates_and_lists_params():
    with pytest.raises(ValueError, match=r"model 'mlp' is already registered"):
        register_model("mlp", nn.Linear, "duplicate")
    assert MODELS["mlp"].params() == {"hidden": (256, 128), "dropout": 0.0, "erased": False}
    assert MODELS["cnn"].params() == {"width": 16, "hidden": 128, "erased": False}
    assert MODELS["resnet18"].params() == {"width": 64, "erased": False}


# --- fresh_copy ----------------------------------------------------------------------------------

def perturbed(model: nn.Module) -> nn.Module:
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    return model


@pytest.mark.parametrize("name", ["mlp", "cnn", "resnet18"])
def test_fresh_copy_reinitialises_every_layer(name):
    trained = perturbed(build_model(name, DIGITS, seed=0, **SMALL[name]))
    before = {k: v.clone() for k, v in trained.state_dict().items()}
    fresh = fresh_copy(trained, seed=5)
    assert fresh is not trained
    trained_params = dict(trained.named_parameters())
    for key, p in fresh.named_parameters():
        assert not torch.equal(p, trained_params[key]), key
    assert all(torch.equal(v, trained.state_dict()[k]) for k, v in before.items())  # original untouched
    assert params_equal(fresh_copy(trained, seed=5), fresh)
    assert params_equal(fresh_copy(build_model(name, DIGITS, seed=3, **SMALL[name]), seed=5), fresh)
    assert not params_equal(fresh_copy(trained, seed=6), fresh)


def test_fresh_copy_resets_batchnorm_statistics():
    model = build_model("resnet18", CIFAR, width=8)
    model.train()(torch.randn(4, 3, 32, 32) * 3 + 2)
    assert float(model.bn1.running_mean.abs().sum()) > 0
    fresh = fresh_copy(model, seed=0)
    assert torch.equal(fresh.bn1.running_mean, torch.zeros_like(fresh.bn1.running_mean))
    assert int(fresh.bn1.num_batches_tracked) == 0


def test_fresh_copy_leaves_global_rng_alone():
    model = build_model("mlp", DIGITS)
    torch.manual_seed(1)
    expected = torch.rand(2)
    torch.manual_seed(1)
    fresh_copy(model, seed=99)
    assert torch.equal(torch.rand(2), expected)


# --- checkpoints: round trip ---------------------------------------------------------------------

def meta_for(name: str = "mlp", kwargs: dict | None = None, spec: DataSpec = DIGITS, **extra):
    return CheckpointMeta(
        model_name=name,
        model_kwargs=SMALL[name] if kwargs is None else kwargs,
        spec=spec,
        data={"source": "digits", "options": {"test_fraction": 0.2}, "fingerprint": "ab" * 32,
              "train_size": 1438},
        train_config={"epochs": 3, "lr": 0.05, "seed": 0},
        **extra,
    )


def save(tmp_path: Path, name: str = "mlp", spec: DataSpec = DIGITS, seed: int = 0, stem: str = "run",
         **extra):
    model = perturbed(build_model(name, spec, seed=seed, **SMALL[name]))
    weights, sidecar = save_checkpoint(tmp_path / stem, model, meta_for(name, spec=spec, **extra))
    return model, weights, sidecar


@pytest.mark.parametrize(("name", "spec"), [("mlp", DIGITS), ("cnn", MNIST), ("resnet18", CIFAR)])
def test_checkpoint_round_trip(tmp_path, name, spec):
    history = [{"spec": "ids:1,2", "method": "finetune", "forget_ids": [1, 2]}, {"forget_ids": [9]}]
    model, weights, sidecar = save(tmp_path, name, spec, history=history, extra={"note": "hello"})
    assert (weights.name, sidecar.name) == ("run.safetensors", "run.json")
    loaded = load_checkpoint(tmp_path / "run")
    assert params_equal(loaded.model, model)
    assert not loaded.model.training
    x = torch.randn(4, *spec.input_shape)
    assert torch.equal(loaded.model(x), model.eval()(x))
    assert loaded.model_name == name
    assert loaded.model_kwargs == json.loads(json.dumps(SMALL[name]))  # tuples are stored as JSON lists
    assert loaded.spec == spec
    assert loaded.train_config == {"epochs": 3, "lr": 0.05, "seed": 0}
    assert loaded.data["train_size"] == 1438 and loaded.data["spec"] == spec.to_dict()
    assert loaded.history == history
    assert loaded.forgotten_ids() == [1, 2, 9]
    assert loaded.meta["note"] == "hello"
    assert loaded.path == tmp_path / "run"


def test_tuple_kwargs_survive_json(tmp_path):
    model = build_model("mlp", DIGITS, hidden=(12, 6, 3), dropout=0.1)
    save_checkpoint(tmp_path / "t", model, meta_for("mlp", kwargs={"hidden": (12, 6, 3), "dropout": 0.1}))
    assert read_sidecar(tmp_path / "t")["model"]["kwargs"] == {"hidden": [12, 6, 3], "dropout": 0.1}
    loaded = load_checkpoint(tmp_path / "t")
    linears = [m.out_features for m in loaded.model.modules() if isinstance(m, nn.Linear)]
    assert linears == [12, 6, 3, 10]


@pytest.mark.parametrize("given", ["run", "run.json", "run.safetensors"])
def test_checkpoint_path_with_or_without_suffix(tmp_path, given):
    model = build_model("mlp", DIGITS, **SMALL["mlp"])
    weights, sidecar = save_checkpoint(tmp_path / "sub" / given, model, meta_for())
    assert (weights, sidecar) == (tmp_path / "sub" / "run.safetensors", tmp_path / "sub" / "run.json")
    for path in ("run", "run.json", "run.safetensors"):
        assert params_equal(load_checkpoint(tmp_path / "sub" / path).model, model)
        assert checkpoint_exists(tmp_path / "sub" / path)


def test_checkpoint_paths_and_exists(tmp_path):
    assert checkpoint_paths("runs/x.json") == (Path("runs/x.safetensors"), Path("runs/x.json"))
    assert checkpoint_paths("runs/x.v2") == (Path("runs/x.v2.safetensors"), Path("runs/x.v2.json"))
    assert not checkpoint_exists(tmp_path / "run")
    save(tmp_path)
    assert checkpoint_exists(tmp_path / "run")


def test_save_leaves_no_temporary_files_and_records_sha(tmp_path):
    import hashlib

    _, weights, sidecar = save(tmp_path)
    save(tmp_path, seed=1)  # overwrite in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json", "run.safetensors"]
    doc = json.loads(sidecar.read_text())
    assert doc["format"] == "unlearnkit-checkpoint" and doc["version"] == 1
    assert doc["weights"]["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert doc["weights"]["file"] == "run.safetensors"


def test_failed_save_leaves_no_files(tmp_path):
    model = build_model("mlp", DIGITS, **SMALL["mlp"])
    meta = meta_for(extra={"not_json": object()})
    with pytest.raises(TypeError, match="not JSON serializable"):
        save_checkpoint(tmp_path / "run", model, meta)
    assert list(tmp_path.iterdir()) == []


def test_loaded_model_on_requested_device(tmp_path):
    save(tmp_path)
    loaded = load_checkpoint(tmp_path / "run", device="cpu")
    assert next(loaded.model.parameters()).device.type == "cpu"


# --- checkpoints: refusals -----------------------------------------------------------------------

def test_missing_sidecar(tmp_path):
    with pytest.raises(
        CheckpointError, match=r"checkpoint sidecar .*run.json not found; pass the path given to --out"
    ):
        load_checkpoint(tmp_path / "run")
    _, _, sidecar = save(tmp_path)
    sidecar.unlink()
    with pytest.raises(CheckpointError, match=r"run.json not found \(found run.safetensors alone\)"):
        load_checkpoint(tmp_path / "run")


def test_missing_weights(tmp_path):
    _, weights, _ = save(tmp_path)
    weights.unlink()
    with pytest.raises(
        CheckpointError, match=r"checkpoint weights .*run.safetensors not found beside run.json"
    ):
        load_checkpoint(tmp_path / "run")
    assert read_sidecar(tmp_path / "run")["model"]["name"] == "mlp"  # the sidecar alone is still readable


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{not json", r"checkpoint sidecar .*run.json is not valid JSON \(.*\); restore it from a backup"),
        (b"\xff\xfe\x00garbage", r"is not valid JSON"),
        ('{"format": "keras", "version": 1}', r"run.json is not an unlearnkit checkpoint sidecar"),
        ("[1, 2, 3]", r"is not an unlearnkit checkpoint sidecar"),
        ('{"format": "unlearnkit-checkpoint", "version": 2}', r"has checkpoint version 2; this unlearnkit"),
        ('{"format": "unlearnkit-checkpoint", "version": 1, "model": {}, "data": {}, "train_config": {}}',
         r"run.json: field 'model.name' is missing; the sidecar is damaged: retrain or restore it"),
    ],
)
def test_bad_sidecar(tmp_path, content, match):
    _, _, sidecar = save(tmp_path)
    if isinstance(content, bytes):
        sidecar.write_bytes(content)
    else:
        sidecar.write_text(content)
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(tmp_path / "run")


def test_weights_of_another_checkpoint_are_refused(tmp_path):
    save(tmp_path, stem="a", seed=0)
    _, other_weights, _ = save(tmp_path, stem="b", seed=1)
    (tmp_path / "a.safetensors").write_bytes(other_weights.read_bytes())
    expected = r"a.safetensors does not match a.json \(sha256 differs\): the weights were replaced or"
    with pytest.raises(CheckpointError, match=expected):
        load_checkpoint(tmp_path / "a")


def test_truncated_weights_are_refused(tmp_path):
    _, weights, _ = save(tmp_path)
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"sha256 differs"):
        load_checkpoint(tmp_path / "run")


def test_corrupt_weights_with_matching_sha_are_refused(tmp_path):
    """A sidecar rewritten to match damaged weights still fails, in safetensors' own reader."""
    import hashlib

    _, weights, sidecar = save(tmp_path)
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    doc = json.loads(sidecar.read_text())
    doc["weights"]["sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    sidecar.write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match=r"cannot read .*run.safetensors \(.*\); the file is corrupt"):
        load_checkpoint(tmp_path / "run")


def edit_sidecar(sidecar: Path, **model) -> None:
    """Change the sidecar's model section; the weights (and so their sha256) stay as saved."""
    doc = json.loads(sidecar.read_text())
    doc["model"].update(model)
    sidecar.write_text(json.dumps(doc))


@pytest.mark.parametrize(
    ("model", "match"),
    [
        ({"name": "cnn", "kwargs": {}},
         r"weights in run.safetensors do not fit model 'cnn' \(Missing key\(s\).*\); the sidecar names"),
        ({"kwargs": {"hidden": [32, 8]}}, r"do not fit model 'mlp' \(size mismatch"),
        ({"name": "resnet18"}, r"run.json names model 'resnet18' with kwargs that cannot be built .*"
                               r"has no parameter\(s\) \['hidden'\].*wrong architecture"),
        ({"name": "cnn"}, r"names model 'cnn' with kwargs that cannot be built"),
        ({"name": "transformer"}, r"names model 'transformer' .*unknown model 'transformer'"),
    ],
)
def test_sidecar_naming_the_wrong_architecture(tmp_path, model, match):
    _, _, sidecar = save(tmp_path)  # an mlp with hidden=(32, 16)
    edit_sidecar(sidecar, **model)
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(tmp_path / "run")
