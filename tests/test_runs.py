"""Tests for unlearnkit.runs: the checkpoint-level Python API beneath the CLI (train and save, reload
with data, forget and save, sequential deletion, evaluate).

Run: .venv/bin/python -m pytest tests/test_runs.py -q
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial.distance import jensenshannon

from unlearnkit.data import load_dataset
from unlearnkit.errors import CheckpointError, DataError
from unlearnkit.evaluation import BASE_METRICS
from unlearnkit.models import load_checkpoint, save_checkpoint
from unlearnkit.runs import (
    data_meta,
    evaluate_checkpoint,
    forget_checkpoint,
    load_with_data,
    refuse_overwrite,
    save_unlearned,
    train_model,
    training_set,
)
from unlearnkit.train import TrainConfig, predict_logits

RECIPE = TrainConfig(epochs=3, batch_size=64, lr=0.05)


def pair(path: Path) -> tuple[Path, Path]:
    return path.with_name(path.name + ".safetensors"), path.with_name(path.name + ".json")


def copy_pair(src: Path, dst: Path) -> Path:
    for a, b in zip(pair(src), pair(dst), strict=True):
        shutil.copyfile(a, b)
    return dst


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny MLP: intra-op threads only add overhead (and spin on a busy machine). Restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def trained(digits):
    return train_model(digits, "mlp", RECIPE, device="cpu", progress=False)


@pytest.fixture(scope="module")
def original(workdir, trained) -> Path:
    path = workdir / "original"
    save_checkpoint(path, trained.model, trained.meta)
    return path


def test_train_model_meta(trained, digits):
    assert trained.meta.model_name == "mlp"
    assert trained.meta.train_config == RECIPE.to_dict()
    assert trained.meta.data == data_meta(digits)
    assert trained.meta.data["fingerprint"] == digits.train.fingerprint()
    assert trained.meta.data["train_size"] == len(digits.train) == 1438
    assert trained.meta.history == []
    assert trained.seconds > 0
    assert not trained.model.training


def test_round_trip(original, trained, digits):
    ckpt, bundle = load_with_data(original, device="cpu")
    assert ckpt.path == original
    assert ckpt.model_name == "mlp"
    assert ckpt.train_config == RECIPE.to_dict()
    assert ckpt.history == []
    assert bundle.source == "digits"
    assert torch.equal(bundle.train.ids, digits.train.ids)
    assert bundle.train.fingerprint() == ckpt.data["fingerprint"]
    assert torch.equal(predict_logits(ckpt.model, bundle.test), predict_logits(trained.model, digits.test))


def test_load_refuses_other_data(workdir, original):
    path = copy_pair(original, workdir / "other-data")
    side = pair(path)[1]
    meta = json.loads(side.read_text())
    meta["data"]["fingerprint"] = "0" * 64  # only the data fingerprint changes; the weights sha stays right
    side.write_text(json.dumps(meta))
    ckpt = load_checkpoint(path)  # the weights still match their sidecar
    reference = load_checkpoint(original)
    for name, tensor in reference.model.state_dict().items():
        assert torch.equal(ckpt.model.state_dict()[name], tensor)
    with pytest.raises(CheckpointError, match="fingerprint mismatch") as info:
        load_with_data(path, device="cpu")
    assert "'digits' training data" in str(info.value) and "--data-dir" in str(info.value)


def test_refuse_overwrite(workdir, original):
    with pytest.raises(CheckpointError, match="already exists.*--force"):
        refuse_overwrite(original, force=False)
    refuse_overwrite(original, force=True)
    refuse_overwrite(workdir / "free", force=False)
    # a weights file alone counts as an existing checkpoint too
    lone = workdir / "lone"
    shutil.copyfile(pair(original)[0], pair(lone)[0])
    with pytest.raises(CheckpointError, match=r"lone\.safetensors already exists"):
        refuse_overwrite(lone, force=False)


def test_evaluate_refuses_reference_on_other_data(workdir, original):
    small = load_dataset("digits", train_size=300)
    other = train_model(small, "mlp", RECIPE.with_(epochs=1), device="cpu", progress=False)
    path = workdir / "small"
    save_checkpoint(path, other.model, other.meta)
    with pytest.raises(CheckpointError, match="trained on different data"):
        evaluate_checkpoint(original, "class:3", reference=path, device="cpu")


@pytest.fixture(scope="module")
def chain(workdir, original, digits):
    """Sequential deletion: five class-3 ids first, then the rest of class 3."""
    class3 = sorted(int(i) for i in digits.train.ids[digits.train.y == 3])
    first = class3[:5]
    spec1 = "ids:" + ",".join(map(str, first))
    result1, split1, ckpt0, _ = forget_checkpoint(original, spec1, "finetune", seed=0, device="cpu",
                                                  progress=False)
    step1 = workdir / "step1"
    save_unlearned(step1, result1, split1, ckpt0)
    result2, split2, ckpt1, _ = forget_checkpoint(step1, "class:3", "finetune", seed=0, device="cpu",
                                                  progress=False)
    step2 = workdir / "step2"
    save_unlearned(step2, result2, split2, ckpt1)
    return {"class3": class3, "first": first, "spec1": spec1, "split1": split1, "split2": split2,
            "step1": step1, "step2": step2}


def test_first_forget(chain, original):
    assert sorted(int(i) for i in chain["split1"].forget.ids) == chain["first"]
    history = load_checkpoint(chain["step1"]).history
    assert len(history) == 1
    assert history[0]["forget_spec"] == chain["spec1"]
    assert history[0]["forget_ids"] == chain["first"]
    assert history[0]["parent"] == str(original)


def test_second_forget_skips_already_forgotten(chain, digits):
    forgotten = sorted(int(i) for i in chain["split2"].forget.ids)
    assert forgotten == chain["class3"][5:]
    assert len(chain["split2"].retain) == len(digits.train) - len(chain["class3"])


def test_history_has_both_operations(chain):
    ckpt = load_checkpoint(chain["step2"])
    history = ckpt.history
    assert len(history) == 2
    assert [op["forget_spec"] for op in history] == [chain["spec1"], "class:3"]
    assert [op["method"] for op in history] == ["finetune", "finetune"]
    assert history[1]["parent"] == str(chain["step1"])
    assert sorted(ckpt.forgotten_ids()) == chain["class3"]


def test_training_set_follows_history(chain, digits):
    ckpt = load_checkpoint(chain["step2"])
    now = training_set(digits, ckpt)
    before_last = training_set(digits, ckpt, before_last=True)
    assert len(now) == len(digits.train) - len(chain["class3"])
    assert len(before_last) == len(digits.train) - 5
    assert not bool((now.y == 3).any())


def test_repeated_ids_refused(chain):
    spec = f"ids:{chain['first'][0]},{chain['class3'][0] + 100000}"
    with pytest.raises(DataError, match="1 ids were already forgotten") as info:
        forget_checkpoint(chain["step1"], spec, "finetune", device="cpu", progress=False)
    assert str(chain["first"][0]) in str(info.value) and "drop them" in str(info.value)


def test_repeated_ids_refused_whatever_the_spelling(chain):
    spec = f"IDS: {chain['first'][1]}"  # select() accepts this spelling, so the check must too
    with pytest.raises(DataError, match="already forgotten"):
        forget_checkpoint(chain["step1"], spec, "finetune", device="cpu", progress=False)


def test_forget_on_what_remains_only(chain):
    # after step 2 no class-3 sample remains to forget
    with pytest.raises(DataError, match="selects no training sample"):
        forget_checkpoint(chain["step2"], "class:3", "finetune", device="cpu", progress=False)


def test_evaluate_second_checkpoint_same_split(chain):
    report, split, warnings = evaluate_checkpoint(chain["step2"], "class:3", seed=0, device="cpu")
    assert warnings == []
    assert torch.equal(torch.sort(split.forget.ids).values, torch.sort(chain["split2"].forget.ids).values)
    assert set(report.to_json()) == set(BASE_METRICS)


def test_evaluate_second_checkpoint_other_spec_warns(chain):
    _, _, warnings = evaluate_checkpoint(chain["step2"], "class:5", seed=0, device="cpu")
    assert len(warnings) == 1
    assert "class:3 with seed 0" in warnings[0]


def test_evaluate_first_checkpoint_with_reference(chain, original):
    report, split, warnings = evaluate_checkpoint(chain["step1"], chain["spec1"], reference=original, device="cpu")
    assert warnings == []
    assert report.reference is not None
    assert set(report.gap) == set(BASE_METRICS) | {"average"}
    # oracle: SciPy's Jensen-Shannon distance (base 2) squared between the two models' softmax outputs on each
    # forget sample, averaged; finetuning moved the model, so the value is not 0
    p, q = (torch.softmax(predict_logits(load_checkpoint(path).model, split.forget, device="cpu").double(), dim=1)
            for path in (chain["step1"], original))
    oracle = np.mean([jensenshannon(a, b, base=2) ** 2 for a, b in zip(p.numpy(), q.numpy(), strict=True)])
    assert oracle > 0 and report.js_divergence == pytest.approx(oracle, rel=1e-9, abs=1e-12)


def test_load_with_data_names_a_checkpoint_without_a_data_source(tmp_path):
    # cached reference models record a fingerprint but no source: forget/evaluate on one is a one-line error
    from unlearnkit.models import CheckpointMeta, build_model

    data = load_dataset("digits")
    model = build_model("mlp", data.spec, seed=0)
    meta = CheckpointMeta("mlp", {}, data.spec, {"fingerprint": data.train.fingerprint()}, RECIPE.to_dict())
    save_checkpoint(tmp_path / "ref", model, meta)
    with pytest.raises(CheckpointError, match=r"records no data source .*pass a checkpoint written by unlearn train"):
        load_with_data(tmp_path / "ref")
