"""Poisoned data: the BadNets and label-flip builders, the `poisoned:F` spec, the attack metrics against hand-computed
cases and scikit-learn, and a digits BadNets run where retraining without every poisoned id removes the backdoor and
retraining without a tenth of them does not."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score
from typer.testing import CliRunner

from tests.conftest import cli_fails
from unlearnkit.cli import app
from unlearnkit.data import load_dataset, select
from unlearnkit.errors import ConfigError, DataError
from unlearnkit.evaluation import poison_report
from unlearnkit.metrics.poison import attack_success_rate, class_pair_accuracy, corrected_accuracy
from unlearnkit.runs import save_model, train_model
from unlearnkit.train import TrainConfig
from unlearnkit.unlearning import unlearn

runner = CliRunner()
BADNETS = {"poison": "badnets", "poison_rate": "0.1"}


@pytest.fixture(scope="module")
def badnets():
    return load_dataset("digits", data_options=BADNETS)


def test_badnets_builder_counts_patch_labels_and_triggered_test(badnets):
    clean = load_dataset("digits")
    info = badnets.poison
    eligible = int((clean.train.y != 0).sum())
    assert len(info.ids) == round(0.1 * eligible)  # the share of the non-target samples, exactly
    assert torch.equal(badnets.train.poisoned, info.ids)
    mask = badnets.train.poisoned_mask()
    assert (clean.train.y[mask] != 0).all() and (badnets.train.y[mask] == 0).all()  # relabelled to the target
    assert torch.equal(badnets.train.y[~mask], clean.train.y[~mask])  # nothing else relabelled
    top = clean.train.x.amax()
    assert (badnets.train.x[mask][..., -3:, -3:] == top).all()  # a 3x3 patch at the brightest value
    assert torch.equal(badnets.train.x[~mask], clean.train.x[~mask])
    assert torch.equal(badnets.train.x[mask][..., :-3, :], clean.train.x[mask][..., :-3, :])
    trig = info.triggered
    assert (trig.y != 0).all() and len(trig) == int((clean.test.y != 0).sum())  # no target-class input
    assert (trig.x[..., -3:, -3:] == top).all() and torch.equal(trig.y, clean.test.y[clean.test.y != 0])
    assert torch.equal(badnets.test.x, clean.test.x)  # the test split itself stays clean
    again = load_dataset("digits", data_options=BADNETS)
    assert torch.equal(again.poison.ids, info.ids)  # seeded: the same options poison the same ids
    assert badnets.train.fingerprint() != clean.train.fingerprint()
    assert load_dataset("digits").options == clean.options  # clean data keeps its options (and fingerprint)


def test_label_flip_builder_swaps_a_share_of_each_class():
    clean = load_dataset("digits")
    data = load_dataset("digits", data_options={"poison": "label-flip", "poison_rate": "0.2",
                                                "poison_classes": "3,5"})
    mask = data.train.poisoned_mask()
    for a, b in ((3, 5), (5, 3)):
        n = int((clean.train.y == a).sum())
        flipped = mask & (clean.train.y == a)
        assert int(flipped.sum()) == round(0.2 * n) and (data.train.y[flipped] == b).all()
    assert torch.equal(data.train.y[~mask], clean.train.y[~mask]) and torch.equal(data.train.x, clean.train.x)
    assert data.poison.triggered is None


@pytest.mark.parametrize("options, message", [
    ({"poison_rate": "0.1"}, "applies to poisoned data"),
    ({"poison": "sometimes"}, "one of: none, badnets, label-flip"),
    ({"poison": "badnets", "poison_rate": "0"}, "poison_rate"),
    ({"poison": "badnets", "poison_target": "10"}, "not a class of the data"),
    ({"poison": "badnets", "poison_size": "9"}, "larger than the 8x8 images"),
    ({"poison": "label-flip", "poison_classes": "3,3"}, "two distinct classes"),
])
def test_bad_poison_options_fail_in_one_line(options, message):
    with pytest.raises(ConfigError, match=message):
        load_dataset("digits", data_options=options)


def test_poisoned_spec_draws_a_seeded_share_of_the_poisoned_ids(badnets):
    n = len(badnets.poison.ids)
    tenth = select(badnets.train, "poisoned:0.1", seed=0)
    assert len(tenth.forget) == round(0.1 * n) and tenth.forget.poisoned_mask().all()
    assert torch.equal(select(badnets.train, "poisoned:0.1", seed=0).forget.ids, tenth.forget.ids)
    assert not torch.equal(select(badnets.train, "poisoned:0.1", seed=1).forget.ids, tenth.forget.ids)
    everything = select(badnets.train, "poisoned:1")
    assert torch.equal(everything.forget.ids.sort().values, badnets.poison.ids)
    assert not everything.retain.poisoned_mask().any()
    with pytest.raises(DataError, match="this data is clean"):
        select(load_dataset("digits").train, "poisoned:0.5")
    for bad in ("poisoned:0", "poisoned:1.5", "poisoned:x"):
        with pytest.raises(DataError, match="identified share|not a number"):
            select(badnets.train, bad)
    left = everything.retain
    with pytest.raises(DataError, match="no poisoned sample is left"):
        select(left, "poisoned:1")


def test_attack_metrics_against_hand_computed_cases_and_sklearn():
    assert attack_success_rate([0, 0, 1, 2, 0], target=0) == pytest.approx(3 / 5)
    assert attack_success_rate([4, 4], target=0) == 0.0
    pred, true = np.array([1, 2, 2, 0, 3]), np.array([1, 2, 3, 0, 0])
    assert corrected_accuracy(pred, true) == pytest.approx(accuracy_score(true, pred))
    assert class_pair_accuracy(pred, true, (2, 3)) == pytest.approx(0.5)  # rows 1 (right) and 2 (wrong)
    with pytest.raises(DataError):
        attack_success_rate([], target=0)
    with pytest.raises(DataError):
        corrected_accuracy([1, 2], [1])


def test_digits_badnets_retraining_without_all_poison_removes_the_backdoor(badnets):
    """The poisoned original obeys the trigger; `retrain` without every poisoned id brings the attack success rate
    down to a clean model's level, while without a tenth of them the backdoor stays (the corrective-unlearning
    finding of Goel et al.)."""
    recipe = TrainConfig(epochs=10, batch_size=32, lr=0.05)
    model = train_model(badnets, "mlp", recipe, progress=False).model
    before = poison_report(model, badnets)
    assert before["attack_success_rate"] > 0.9
    full = unlearn(model, select(badnets.train, "poisoned:1"), "retrain", train_config=recipe, progress=False)
    after = poison_report(full.model, badnets)
    assert after["attack_success_rate"] < 0.05 and after["clean_accuracy"] > before["clean_accuracy"] - 0.02
    tenth = unlearn(model, select(badnets.train, "poisoned:0.1"), "retrain", train_config=recipe, progress=False)
    assert poison_report(tenth.model, badnets)["attack_success_rate"] > 0.8


def test_evaluate_json_has_the_poison_object(tmp_path, badnets, capsys):
    trained = train_model(badnets, "mlp", TrainConfig(epochs=3), progress=False)
    save_model(tmp_path / "orig", trained.model, trained.meta)
    sidecar = json.loads((tmp_path / "orig.json").read_text())
    assert sidecar["data"]["poison"]["poisoned_ids"] == badnets.poison.ids.tolist()
    result = runner.invoke(app, ["evaluate", "-c", str(tmp_path / "orig"), "--forget", "poisoned:0.5", "--json"])
    assert result.exit_code == 0, result.output
    poison = json.loads(result.stdout)["poison"]
    assert set(poison) >= {"attack_success_rate", "corrected_accuracy", "clean_accuracy"}
    assert poison["clean_accuracy"] == pytest.approx(json.loads(result.stdout)["test_accuracy"])
    clean = train_model(load_dataset("digits"), "mlp", TrainConfig(epochs=1), progress=False)
    save_model(tmp_path / "clean", clean.model, clean.meta)
    assert "this data is clean" in cli_fails(capsys, "evaluate", "-c", str(tmp_path / "clean"), "--forget",
                                             "poisoned:1")


# --- detection -------------------------------------------------------------------------------------------------------

def planted_features(seed: int = 0):
    """Three labels of 60 Gaussian feature rows (dimension 8); 6 rows of label 0 are shifted far along one axis,
    as a backdoor's relabelled samples are in the features."""
    rng = np.random.default_rng(seed)
    feats = rng.normal(size=(180, 8))
    labels = np.repeat([0, 1, 2], 60)
    planted = np.arange(6)
    feats[planted, 3] += 12.0
    return feats, labels, planted


def test_spectral_scores_put_planted_outliers_on_top_and_match_a_reference():
    from unlearnkit.detect.detectors import spectral_scores

    feats, labels, planted = planted_features()
    scores = spectral_scores(feats, labels, directions=1)
    assert set(np.argsort(-scores)[:6]) == set(planted)
    for label in (0, 1, 2):  # the slow reference: the covariance's top eigenvector (numpy's eigh), per label
        rows = np.flatnonzero(labels == label)
        centred = feats[rows] - feats[rows].mean(0)
        _, vecs = np.linalg.eigh(centred.T @ centred)
        ref = (centred @ vecs[:, -1]) ** 2
        assert np.allclose(scores[rows], ref / np.median(ref))


def test_activation_clustering_flags_the_small_cluster_only():
    from unlearnkit.detect.detectors import clustering_scores

    feats, labels, planted = planted_features(1)
    scores = clustering_scores(feats, labels, max_cluster=0.35)
    assert set(np.flatnonzero(scores > 0)) == set(planted)  # labels 1 and 2 split evenly: not suspect


def test_detect_on_digits_badnets_and_the_cli(tmp_path, capsys):
    """`unlearn detect` on a digits BadNets model writes suspects that `--forget ids:FILE` reads, with precision and
    recall against the recorded poison; spectral signatures find most of it."""
    from unlearnkit.detect import detect, precision_recall

    data = load_dataset("digits", data_options={"poison": "badnets", "poison_rate": "0.02"})
    trained = train_model(data, "mlp", TrainConfig(epochs=10, batch_size=32, lr=0.05), progress=False)
    save_model(tmp_path / "bad", trained.model, trained.meta)
    found = detect(trained.model, data.train, "spectral", rate=0.02)
    precision, recall = precision_recall(found.suspects, data.poison.ids)
    assert recall >= 0.5 and precision >= 0.3, (precision, recall)  # chance: precision 26 / 1438 = 0.018
    assert len(found.suspects) == int(np.ceil(1.5 * 0.02 * len(data.train)))
    result = runner.invoke(app, ["detect", "-c", str(tmp_path / "bad"), "--out", str(tmp_path / "s.txt"), "--rate",
                                 "0.02", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["recall"] == pytest.approx(recall) and doc["n_poisoned"] == len(data.poison.ids)
    ids = [int(v) for v in (tmp_path / "s.txt").read_text().split()]
    assert ids == found.suspects.tolist()
    forget = runner.invoke(app, ["forget", "-c", str(tmp_path / "bad"), "--forget", f"ids:{tmp_path / 's.txt'}",
                                 "--method", "finetune", "--out", str(tmp_path / "f"), "--json"])
    assert forget.exit_code == 0 and json.loads(forget.stdout)["n_forget"] == len(ids)
    assert "unknown detector 'psychic'" in cli_fails(capsys, "detect", "-c", str(tmp_path / "bad"), "--out",
                                                     str(tmp_path / "x.txt"), "--method", "psychic")
    assert "already exists" in cli_fails(capsys, "detect", "-c", str(tmp_path / "bad"), "--out",
                                         str(tmp_path / "s.txt"))
    assert "--rate" in cli_fails(capsys, "detect", "-c", str(tmp_path / "bad"), "--out", str(tmp_path / "y.txt"),
                                 "--rate", "2")


# --- trigger-repair --------------------------------------------------------------------------------------------------

def test_estimate_trigger_recovers_the_patch_even_from_half_wrong_suspects():
    from unlearnkit.data.poison import stamp
    from unlearnkit.methods.trigger_repair import estimate_trigger

    gen = torch.Generator().manual_seed(0)
    clean = torch.rand(400, 1, 10, 10, generator=gen)
    poisoned = stamp(torch.rand(40, 1, 10, 10, generator=gen), 3, 2.0)
    truth = torch.zeros(1, 10, 10, dtype=torch.bool)
    truth[..., -3:, -3:] = True
    for identified in (poisoned, torch.cat([poisoned, clean[:40]])):  # all true, then half false positives
        trigger = estimate_trigger(identified, clean[40:])
        assert torch.equal(trigger.mask, truth)
        assert torch.allclose(trigger.pattern[truth], torch.full((9,), 2.0), atol=0.02)
    flat = estimate_trigger(clean[:40], clean[40:])  # no shared patch: a low score
    assert flat.score < 0.3


def test_trigger_repair_removes_a_backdoor_from_a_tenth_of_the_poison():
    """Digits BadNets at 10%: with a tenth of the poisoned ids identified (13), `retrain` keeps the backdoor while
    trigger-repair brings the attack success rate near a clean model's, keeping clean accuracy."""
    data = load_dataset("digits", data_options=BADNETS)
    recipe = TrainConfig(epochs=10, batch_size=32, lr=0.05)
    model = train_model(data, "mlp", recipe, progress=False).model
    before = poison_report(model, data)
    split = select(data.train, "poisoned:0.1", seed=0)
    assert len(split.forget) == 13
    retrained = poison_report(unlearn(model, split, "retrain", train_config=recipe, progress=False).model, data)
    # digits is 40x smaller than Fashion-MNIST, whose defaults make one pass over 20,000 samples: here a few passes,
    # and half of each batch stamped (a 3x3 trigger covers 14% of an 8x8 digit)
    repaired = unlearn(model, split, "trigger-repair", train_config=recipe, progress=False, epochs=5,
                       stamp_share=0.5)
    after = poison_report(repaired.model, data)
    assert before["attack_success_rate"] > 0.9 and retrained["attack_success_rate"] > 0.8
    assert after["attack_success_rate"] < 0.1, after
    assert after["clean_accuracy"] >= before["clean_accuracy"] - 0.03
    assert repaired.info["trigger_pixels"] == 9


def test_trigger_repair_notes_a_label_flip_it_cannot_see():
    data = load_dataset("digits", data_options={"poison": "label-flip", "poison_rate": "0.2"})
    recipe = TrainConfig(epochs=3)
    model = train_model(data, "mlp", recipe, progress=False).model
    result = unlearn(model, select(data.train, "poisoned:1"), "trigger-repair", train_config=recipe,
                     progress=False)
    assert any("share no trigger" in n for n in result.notes)


def test_stored_poison_options_are_checked_against_given_ones(tmp_path, badnets):
    from unlearnkit.runs import load_with_data

    clean = train_model(load_dataset("digits"), "mlp", TrainConfig(epochs=1), progress=False)
    save_model(tmp_path / "clean", clean.model, clean.meta)
    load_with_data(tmp_path / "clean", data_options={"poison": "none"})  # clean data records none: implied
    with pytest.raises(ConfigError, match="poison='badnets' differs from the data"):
        load_with_data(tmp_path / "clean", data_options={"poison": "badnets"})
    bad = train_model(badnets, "mlp", TrainConfig(epochs=1), progress=False)
    save_model(tmp_path / "bad", bad.model, bad.meta)
    _, bundle = load_with_data(tmp_path / "bad", data_options={"poison": "badnets", "poison_rate": "0.1"})
    assert torch.equal(bundle.poison.ids, badnets.poison.ids)  # rebuilt from the sidecar


def test_trigger_repair_refuses_a_shared_pattern_that_is_no_backdoor(monkeypatch):
    """Class shapes can pass the trigger score (here with the threshold lowered so that the digits flips pass); the
    backdoor test, stamping the pattern on clean images of other labels, rejects them."""
    import unlearnkit.methods.trigger_repair as tr

    monkeypatch.setattr(tr, "CONSISTENT", 0.05)
    data = load_dataset("digits", data_options={"poison": "label-flip", "poison_rate": "0.2"})
    recipe = TrainConfig(epochs=3)
    model = train_model(data, "mlp", recipe, progress=False).model
    result = unlearn(model, select(data.train, "poisoned:1"), "trigger-repair", train_config=recipe, progress=False)
    assert any("a backdoor moves at least 50%" in n for n in result.notes), result.notes
    assert "trigger_pixels" not in result.info
