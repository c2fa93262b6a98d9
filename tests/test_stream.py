"""The stream engine (`unlearn stream`): versions with lineage, the policies, resume after a kill of a real
subprocess, the drift guard on a planted erosion, the reversal check on a planted reversal, exact fallbacks (retrain,
certified budget, SISA), bad request lines, the report and the one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from tests.conftest import cli_fails
from unlearnkit.cli import app
from unlearnkit.data import load_dataset
from unlearnkit.methods.retrain import Retrain
from unlearnkit.models import load_checkpoint
from unlearnkit.runs import save_model, train_model
from unlearnkit.stream import Request, load_result, make_requests, read_manifest, run_stream, write_requests
from unlearnkit.stream.report import write_stream_report
from unlearnkit.train import TrainConfig, fit

runner = CliRunner()
FAST = {"epochs": "1"}  # finetune's own epochs: enough to change the weights, quick on digits


@pytest.fixture(scope="module")
def original(tmp_path_factory) -> Path:
    """An mlp on digits whose samples belong to 60 subjects, and 8 subject requests for it."""
    folder = tmp_path_factory.mktemp("stream")
    bundle = load_dataset("digits", subjects=60)
    trained = train_model(bundle, "mlp", TrainConfig(epochs=8, batch_size=64, lr=0.1), progress=False)
    save_model(folder / "original", trained.model, trained.meta)
    write_requests(folder / "requests.jsonl", make_requests(bundle.train, 8, seed=0))
    return folder / "original"


def requests_file(original: Path) -> Path:
    return original.with_name("requests.jsonl")


def forgotten(path: Path) -> set[int]:
    return set(load_checkpoint(path).forgotten_ids())


def test_each_and_batch_forget_the_same_samples_with_lineage(original, tmp_path):
    """`each` and `batch:3` end with the same forgotten set; every version's sidecar is its parent's history plus one
    entry naming the parent and the requests; the ids file names exactly the samples the version forgot."""
    each = run_stream(original, requests_file(original), "finetune", "each", out=tmp_path / "each", params=FAST,
                      progress=False)
    batch = run_stream(original, requests_file(original), "finetune", "batch:3", out=tmp_path / "batch",
                       params=FAST, progress=False)
    assert [len(s.request_ids) for s in each.steps] == [1] * 8
    assert [len(s.request_ids) for s in batch.steps] == [3, 3, 2]
    assert forgotten(each.final_checkpoint) == forgotten(batch.final_checkpoint)
    subjects = load_dataset("digits", subjects=60).train
    asked = [json.loads(line)["subjects"][0] for line in requests_file(original).read_text().splitlines()]
    assert forgotten(batch.final_checkpoint) == set(subjects.ids[torch.isin(subjects.subjects,
                                                                            torch.tensor(asked))].tolist())
    parent = str(load_checkpoint(original).path)
    for k, step in enumerate(batch.steps):
        ckpt = load_checkpoint(tmp_path / "batch" / step.checkpoint)
        assert len(ckpt.history) == k + 1
        entry = ckpt.history[-1]
        assert entry["parent"] == parent and entry["stream"]["request_ids"] == step.request_ids
        ids = [int(x) for x in (tmp_path / "batch" / f"{step.checkpoint}.ids").read_text().split()]
        assert ids == entry["forget_ids"] and len(ids) == step.n_forget
        parent = str(ckpt.path)
    assert not any(s.fallback for s in each.steps)


def test_json_fields_and_report(original, tmp_path):
    """`unlearn stream --json` prints the fields the issue names; verification gives gaps and a measured retraining
    cost; `unlearn report` on the folder draws the trajectory."""
    out = tmp_path / "s"
    result = runner.invoke(app, ["stream", "-c", str(original), "--requests", str(requests_file(original)),
                                 "--policy", "batch:4", "--verify-every", "1", "-p", "epochs=1", "--out", str(out),
                                 "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    for key in ("steps", "total_seconds", "retrain_seconds", "fallbacks", "reversals", "final_checkpoint"):
        assert key in doc
    assert doc["retrain_seconds_source"] == "measured" and doc["retrain_seconds"] > 0
    step = doc["steps"][0]
    for key in ("version", "request_ids", "n_forget", "seconds", "forget_accuracy", "retain_accuracy",
                "test_accuracy", "fallback", "verified"):
        assert key in step
    assert set(step["verified"]["gap"]) >= {"forget_accuracy", "test_accuracy", "mia_auc", "average"}
    assert (out / "ref-v0001.json").is_file() and doc["final_checkpoint"] == str(out / "v0002")
    assert (out / "report.md").is_file()  # written by the command
    (out / "report.md").unlink()
    assert runner.invoke(app, ["report", str(out)]).exit_code == 0
    md = (out / "report.md").read_text()
    assert "trajectory.png" in md and md.count("\n| ") == 1 + 1 + 2  # header row, version 0, two versions
    assert (out / "trajectory.png").read_bytes()[:4] == b"\x89PNG"
    assert "data:image/png;base64," in (out / "report.html").read_text()


def test_resume_after_a_kill_applies_no_request_twice_and_loses_none(original, tmp_path):
    """A real `unlearn stream` subprocess killed with SIGKILL inside its file writes (ids file, weights, sidecar,
    manifest: between a temporary file and its rename), three times at different passes, then resumed to the end:
    every request is applied exactly once and every version equals a clean run's bit for bit."""
    clean = run_stream(original, requests_file(original), "finetune", "batch:2", out=tmp_path / "clean",
                       params=FAST, progress=False)
    argv = [sys.executable, "-m", "unlearnkit.cli", "stream", "-c", str(original), "--requests",
            str(requests_file(original)), "--policy", "batch:2", "-p", "epochs=1", "--out", str(tmp_path / "run"),
            "--resume"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    committed = []
    for n in (4, 7, 2):  # the n-th atomic write of the process (counts restart with each process)
        killed = subprocess.run(argv, env={**env, "UNLEARNKIT_CRASH_AT": f"write:{n}"}, capture_output=True,
                                text=True)
        assert killed.returncode == -9, killed.stderr
        committed.append(len(read_manifest(tmp_path / "run")["steps"]) if (tmp_path / "run" / "stream.json").exists()
                         else 0)
    assert any(0 < c < 4 for c in committed), committed  # the kills fell in the middle of the stream
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    resumed = load_result(tmp_path / "run")
    applied = [r for s in resumed.steps for r in s.request_ids]
    assert sorted(applied) == sorted(set(applied)) == [f"req-{k:04d}" for k in range(1, 9)]
    history = load_checkpoint(resumed.final_checkpoint).history
    assert [r for e in history for r in e["stream"]["request_ids"]] == applied
    assert [s.weights_sha256 for s in resumed.steps] == [s.weights_sha256 for s in clean.steps]
    assert not list((tmp_path / "run").glob("*.tmp-*"))
    again = subprocess.run(argv, env=env, capture_output=True, text=True)  # nothing left to do: nothing changes
    assert again.returncode == 0 and len(load_result(tmp_path / "run").steps) == 4


def test_new_requests_appended_to_the_file_are_applied_on_resume(original, tmp_path):
    lines = requests_file(original).read_text().splitlines()
    partial = tmp_path / "requests.jsonl"
    partial.write_text("\n".join(lines[:3]) + "\n")
    run_stream(original, partial, "finetune", "each", out=tmp_path / "s", params=FAST, progress=False)
    partial.write_text("\n".join(lines) + "\n")
    result = run_stream(original, partial, "finetune", "each", out=tmp_path / "s", params=FAST, progress=False,
                        resume=True)
    assert result.applied_now == 5 and len(result.steps) == 8 and not result.problems


def test_drift_guard_catches_a_planted_erosion(original, tmp_path):
    """Gradient ascent at a harsh learning rate erodes the model request after request. With --max-drift 0.05 every
    published version stays within 0.05 of the last exact model, the eroded versions are replaced by retraining
    (recorded as fallbacks with their reason and the discarded model's accuracies)."""
    harsh = {"lr_scale": "2", "epochs": "5", "stop_accuracy": "0", "clip_grad": "100"}
    free = run_stream(original, requests_file(original), "gradient-ascent", "each", out=tmp_path / "free",
                      params=harsh, progress=False)
    base = free.baseline
    assert min(s.test_accuracy for s in free.steps) < base["test_accuracy"] - 0.05  # the erosion is real
    guarded = run_stream(original, requests_file(original), "gradient-ascent", "each", out=tmp_path / "guard",
                         params=harsh, max_drift=0.05, progress=False)
    assert guarded.fallbacks >= 1
    last = dict(base)
    for step in guarded.steps:
        for key in ("retain_accuracy", "test_accuracy"):
            assert step.to_json()[key] >= last[key] - 0.05
        if step.fallback:
            assert step.method == "retrain" and "--max-drift" in step.fallback_reason
            assert step.discarded["test_accuracy"] < last["test_accuracy"] - 0.05 or \
                step.discarded["retain_accuracy"] < last["retain_accuracy"] - 0.05
            last = {"retain_accuracy": step.retain_accuracy, "test_accuracy": step.test_accuracy}
    assert forgotten(guarded.final_checkpoint) == forgotten(free.final_checkpoint)


def test_reversal_check_finds_a_planted_reversal(tmp_path):
    """A weak model (small data, two epochs) whose forgotten samples a retrained model gets wrong often. `retrain`
    applied request by request shows no reversal; the same, re-training on request 1's samples at the last version,
    makes them recognisable again: the final verification reports request 1."""
    bundle = load_dataset("digits", subjects=40, train_size=400)
    trained = train_model(bundle, "mlp", TrainConfig(epochs=2, batch_size=64, lr=0.02), progress=False)
    save_model(tmp_path / "weak", trained.model, trained.meta)
    requests = make_requests(bundle.train, 4, seed=1)
    first = bundle.train.subset(torch.isin(bundle.train.subjects, torch.tensor(requests[0].subjects)))
    last = set(bundle.train.ids[torch.isin(bundle.train.subjects, torch.tensor(requests[-1].subjects))].tolist())

    class Plant(Retrain):
        def run(self, task):
            model = super().run(task)
            if set(task.split.forget.ids.tolist()) == last:  # the last request: relearn the first one's samples
                fit(model, first, TrainConfig(epochs=60, batch_size=16, lr=0.1), progress=False)
            return model

    plain = run_stream(tmp_path / "weak", requests, "retrain", "each", out=tmp_path / "plain", verify_every=4,
                       progress=False)
    assert plain.steps[-1].verified["reversals"] == []  # retraining is the reference itself
    result = run_stream(tmp_path / "weak", requests, Plant(), "each", out=tmp_path / "s", verify_every=4,
                        reversal_tolerance=0.1, progress=False)
    final = result.steps[-1].verified
    found = {r["request_id"]: r for r in final["reversals"]}
    assert requests[0].request_id in found  # (relearning one subject may lift others' samples of the same digits)
    reversal = found[requests[0].request_id]
    assert reversal["accuracy"] == 1.0 and reversal["accuracy"] - reversal["reference_accuracy"] > 0.1
    assert reversal["applied_in"] == 1 and reversal["checked_at"] == 4


def test_bad_request_lines_are_reported_per_line_and_the_others_applied(original, tmp_path):
    good = requests_file(original).read_text().splitlines()[:2]
    lines = [good[0], '{"request_id": "broken", "subjects": [1]', '{"request_id": "ghost", "subjects": [9999]}',
             good[1], good[1].replace("req-0002", "req-0001"), '{"request_id": "again", "ids": [999999]}']
    path = tmp_path / "requests.jsonl"
    path.write_text("\n".join(lines) + "\n")
    result = runner.invoke(app, ["stream", "-c", str(original), "--requests", str(path), "-p", "epochs=1", "--out",
                                 str(tmp_path / "s"), "--json"])
    assert result.exit_code == 1, result.output  # applied what it could, and says some lines were refused
    doc = json.loads(result.stdout)
    assert [s["request_ids"] for s in doc["steps"]] == [["req-0001"], ["req-0002"]]
    problems = {p["line"]: p for p in doc["problems"]}
    assert sorted(problems) == [2, 3, 5, 6]
    assert "not valid JSON" in problems[2]["message"] and "unknown subject" in problems[3]["message"]
    assert "already used on line 1" in problems[5]["message"] and "unknown id" in problems[6]["message"]


def test_certified_budget_spent_is_recorded_as_a_fallback(tmp_path):
    """certified retrains by itself once its summed removal bound passes the budget; the stream records that version
    as a fallback and measures drift from it."""
    bundle = load_dataset("digits", subjects=60)
    trained = train_model(bundle, "logistic", progress=False)
    save_model(tmp_path / "lr", trained.model, trained.meta)
    requests = make_requests(bundle.train, 4, seed=0)
    result = run_stream(tmp_path / "lr", requests, "certified", "each", out=tmp_path / "s",
                        params={"removal_budget": "1e-9"}, progress=False)
    assert all(s.fallback and "budget" in s.fallback_reason for s in result.steps)
    assert result.fallbacks == 4 and result.steps[0].method == "certified"
    roomy = run_stream(tmp_path / "lr", requests, "certified", "each", out=tmp_path / "roomy",
                       params={"removal_budget": "1e9"}, progress=False)
    assert roomy.fallbacks == 0


def test_sisa_stream_is_exact_and_equals_one_deletion_of_everything(tmp_path):
    """On a SISA checkpoint, `sisa` applied request by request ends bit-equal to one SISA deletion of all the
    requests' samples (each shard retrained without them), which is also the stream's verification reference."""
    from unlearnkit.runs import forget_checkpoint, save_unlearned

    bundle = load_dataset("digits", subjects=30)
    trained = train_model(bundle, "mlp", TrainConfig(epochs=2, batch_size=64, lr=0.1), sisa="shards=3,by=subjects",
                          progress=False)
    save_model(tmp_path / "sisa", trained.model, trained.meta)
    requests = make_requests(bundle.train, 3, seed=0)
    result = run_stream(tmp_path / "sisa", requests, "sisa", "each", out=tmp_path / "s", verify_every=3,
                        progress=False)
    # the reference of a SISA stream is SISA without the ids: a stream of exact deletions matches it exactly
    assert result.steps[-1].verified["gap"]["average"] == 0 and result.reversals == []
    ids = sorted(forgotten(result.final_checkpoint))
    once, split, ckpt, _ = forget_checkpoint(tmp_path / "sisa", "ids:" + ",".join(map(str, ids)), "sisa")
    save_unlearned(tmp_path / "once", once, split, ckpt)
    final = load_checkpoint(result.final_checkpoint).model.state_dict()
    assert all(torch.equal(v, once.model.state_dict()[k]) for k, v in final.items())


def test_errors_are_one_line(original, tmp_path, capsys):
    req = str(requests_file(original))
    base = ["stream", "-c", str(original), "--requests", req, "--out", str(tmp_path / "s")]
    assert "unknown policy 'sometimes'" in cli_fails(capsys, *base, "--policy", "sometimes")
    assert "batch:N" in cli_fails(capsys, *base, "--policy", "batch:0")
    assert "--verify-every must be at least 1" in cli_fails(capsys, *base, "--verify-every", "0")
    assert "--max-drift" in cli_fails(capsys, *base, "--max-drift", "1.5")
    assert "unknown method" in cli_fails(capsys, *base, "--method", "nope").lower()
    assert "removes an attribute" in cli_fails(capsys, *base, "--method", "dfr")
    assert "does not exist" in cli_fails(capsys, "stream", "-c", str(original), "--requests",
                                         str(tmp_path / "none.jsonl"), "--out", str(tmp_path / "s"))
    assert "not found" in cli_fails(capsys, "stream", "-c", str(tmp_path / "nothing"), "--requests", req, "--out",
                                    str(tmp_path / "s"))
    run_stream(original, [Request("r1", 1, subjects=(3,))], "finetune", out=tmp_path / "s", params=FAST,
               progress=False)
    assert "pass --resume" in cli_fails(capsys, *base, "-p", "epochs=1")
    assert "was started with policy='each'" in cli_fails(capsys, *base, "-p", "epochs=1", "--policy", "batch:2",
                                                         "--resume")
    (tmp_path / "s" / "v0001.safetensors").write_bytes(b"tampered")
    sidecar = json.loads((tmp_path / "s" / "v0001.json").read_text())
    sidecar["weights"]["sha256"] = "0" * 64
    (tmp_path / "s" / "v0001.json").write_text(json.dumps(sidecar))
    assert "changed since the stream wrote it" in cli_fails(capsys, *base, "-p", "epochs=1", "--resume")


def test_report_of_a_folder_without_a_stream_or_bench_fails_in_one_line(tmp_path, capsys):
    from unlearnkit.errors import ConfigError

    with pytest.raises(ConfigError, match="holds no stream"):
        write_stream_report(tmp_path)


def test_a_request_for_everything_left_is_refused_in_one_line(tmp_path, capsys):
    bundle = load_dataset("digits", subjects=2)
    trained = train_model(bundle, "mlp", TrainConfig(epochs=1), progress=False)
    save_model(tmp_path / "two", trained.model, trained.meta)
    requests = tmp_path / "r.jsonl"
    requests.write_text('{"request_id": "a", "subjects": [0]}\n{"request_id": "b", "subjects": [1]}\n')
    line = cli_fails(capsys, "stream", "-c", str(tmp_path / "two"), "--requests", str(requests), "--policy",
                     "batch:2", "--out", str(tmp_path / "s"))
    assert "would remove every sample that is left" in line
    assert not (tmp_path / "s").exists()  # nothing written
