"""Tests for the NeurIPS-2023 challenge evaluation (``bench/neurips.py``) and ``unlearn neurips``.

The claims checked: the exact method (``retrain``) scores about what two retrained populations score
against each other (the estimator's ceiling), while a method that keeps a forgotten class scores far
below it; the JSON has the documented keys; reference models are cached and reused.

Run: .venv/bin/python -m pytest tests/test_neurips.py -q
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.conftest import DIGITS_RECIPE
from unlearnkit import cli
from unlearnkit.bench.neurips import REFERENCE_SEEDS, neurips_evaluation
from unlearnkit.cli import app
from unlearnkit.errors import ConfigError
from unlearnkit.models import save_checkpoint
from unlearnkit.runs import train_model

N = 6


def run(digits, digits_model, split, method, tmp_path, **kwargs):
    return neurips_evaluation(digits_model, digits.train, split, digits.test, method, train_config=DIGITS_RECIPE,
                              model_name="mlp", n_models=N, cache_dir=str(tmp_path / "cache"), device="cpu",
                              progress=False, **kwargs)


def test_retrain_scores_like_the_retrain_ceiling_and_keeping_the_class_scores_far_below(
        digits, digits_model, class_split, tmp_path):
    exact = run(digits, digits_model, class_split, "retrain", tmp_path)
    assert exact.calibration_forget_quality is not None
    assert exact.forget_quality > 0.1  # the estimator's ceiling is ~0.2, not 1
    assert abs(exact.forget_quality - exact.calibration_forget_quality) < 0.1
    assert exact.retain_ratio == pytest.approx(1.0, abs=0.02) and exact.test_ratio == pytest.approx(1.0, abs=0.02)
    # finetune for one epoch at a tiny rate leaves class 3 recognised: every example is separable (capped epsilon)
    kept = run(digits, digits_model, class_split, "finetune", tmp_path, params={"epochs": 1, "lr_scale": 0.01})
    assert kept.forget_quality < 0.02 < exact.forget_quality
    assert np.median(kept.epsilons) > 10
    assert kept.neurips_score <= kept.forget_quality + 1e-12
    assert len(kept.epsilons) == len(class_split.forget) and kept.models == N
    # U-LiRA on the same populations: a retrained target is a coin toss, a model that kept the class is not
    assert abs(exact.u_lira["accuracy"] - 0.5) < 0.25
    assert kept.u_lira["accuracy"] > 0.95 and kept.u_lira["auc"] > 0.95


def test_references_are_cached_and_reused(digits, digits_model, class_split, tmp_path, monkeypatch):
    run(digits, digits_model, class_split, "finetune", tmp_path, params={"epochs": 1}, calibration=False)
    files = sorted(p.name for p in (tmp_path / "cache").glob("*.safetensors"))
    assert len(files) == N and any(f"seed{REFERENCE_SEEDS}-" in f for f in files)
    import unlearnkit.bench.references as references

    def no_training(*args, **kwargs):
        raise AssertionError("references should come from the cache")

    monkeypatch.setattr(references, "fit_ensemble", no_training)
    again = run(digits, digits_model, class_split, "finetune", tmp_path, params={"epochs": 1}, calibration=False)
    assert again.calibration_forget_quality is None


def test_too_few_models_is_refused(digits, digits_model, class_split, tmp_path):
    with pytest.raises(ConfigError, match="--models must be at least 2"):
        neurips_evaluation(digits_model, digits.train, class_split, digits.test, "finetune", train_config=DIGITS_RECIPE,
                           model_name="mlp", n_models=1, cache_dir=None, progress=False)


@pytest.fixture(scope="module")
def checkpoint(digits, tmp_path_factory):
    path = tmp_path_factory.mktemp("neurips") / "original"
    trained = train_model(digits, "mlp", DIGITS_RECIPE, device="cpu", progress=False)
    save_checkpoint(path, trained.model, trained.meta)
    return path


def test_cli_json_keys(checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("UNLEARNKIT_CACHE", str(tmp_path / "c"))
    result = CliRunner().invoke(app, ["neurips", "-c", str(checkpoint), "-f", "class:3", "--method",
                                      "gradient-ascent", "--models", "3", "--no-calibration", "--json",
                                      "--device", "cpu", "--no-progress", "--save", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    keys = {"forget_quality", "neurips_score", "retain_ratio", "test_ratio", "epsilons", "models", "seconds"}
    assert keys <= set(data) and data["u_lira"] is None  # 3 models: too few to split into shadows and targets
    assert data["models"] == 3 and data["method"] == "gradient-ascent" and data["forget"] == "class:3"
    assert 0 <= data["forget_quality"] <= 1 and all(0 <= e <= 50 for e in data["epsilons"])
    assert json.loads((tmp_path / "r.json").read_text()) == data
    assert len(list((tmp_path / "c" / "references").glob("*.json"))) == 3  # the default cache location


def test_cli_table_and_bad_models(checkpoint, tmp_path, capsys, monkeypatch):
    out = CliRunner().invoke(app, ["neurips", "-c", str(checkpoint), "-f", "class:3", "--method", "finetune",
                                   "--models", "2", "--no-cache", "--device", "cpu", "--no-progress"])
    assert out.exit_code == 0, out.output
    assert re.search(r"forget quality F\s+\d\.\d{4} \(retrain vs retrain: \d\.\d{4}, the ceiling\)", out.stdout)
    assert "NeurIPS score" in out.stdout and "U-LiRA" not in out.stdout
    monkeypatch.setattr("sys.argv", ["unlearn", "neurips", "-c", str(checkpoint), "-f", "class:3", "--method",
                                     "finetune", "--models", "1", "--no-cache", "--no-progress"])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "--models must be at least 2" in err and len(err.splitlines()) == 1
