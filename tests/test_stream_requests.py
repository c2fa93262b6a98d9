"""Deletion-request streams: JSONL lines read and checked one by one (a bad line never stops the others), resolved to
sample ids against the training data, generated for experiments, and the `unlearn requests` commands."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tests.conftest import cli_fails
from unlearnkit.cli import app
from unlearnkit.data import load_dataset
from unlearnkit.errors import ConfigError, DataError
from unlearnkit.stream import make_requests, parse_requests, read_requests, resolve_requests, write_requests

runner = CliRunner()


@pytest.fixture(scope="module")
def owned():
    return load_dataset("digits", subjects=100)


@pytest.mark.parametrize("line, message", [
    ('{"request_id": "r1", "subjects": [1]', "not valid JSON"),
    ('[1, 2]', "must be a JSON object"),
    ('{"subjects": [1]}', "missing request_id"),
    ('{"request_id": "", "ids": [1]}', "missing request_id"),
    ('{"request_id": "r1"}', 'exactly one of "subjects" or "ids"'),
    ('{"request_id": "r1", "ids": [1], "subjects": [2]}', 'exactly one of "subjects" or "ids"'),
    ('{"request_id": "r1", "ids": []}', "non-empty list"),
    ('{"request_id": "r1", "ids": [1, "2"]}', "integers only"),
    ('{"request_id": "r1", "ids": [true]}', "integers only"),
    ('{"request_id": "r1", "ids": [1], "why": "gdpr"}', "unknown key(s) ['why']"),
    ('{"request_id": "r1", "ids": [1], "received_at": 5}', "received_at must be a string"),
])
def test_each_bad_line_is_reported_and_the_others_go_on(line, message):
    lines = ['{"request_id": "ok-1", "ids": [3]}', line, "", "# a comment", '{"request_id": "ok-2", "subjects": [4]}']
    requests, problems = parse_requests(lines)
    assert [r.request_id for r in requests] == ["ok-1", "ok-2"]
    assert len(problems) == 1 and problems[0].line == 2 and message in problems[0].message


def test_a_repeated_request_id_is_refused_on_the_later_line():
    requests, problems = parse_requests(['{"request_id": "a", "ids": [1]}', '{"request_id": "b", "ids": [2]}',
                                         '{"request_id": "a", "ids": [5]}'])
    assert [r.request_id for r in requests] == ["a", "b"]
    assert problems[0].line == 3 and problems[0].request_id == "a" and "already used on line 1" in problems[0].message


def test_resolve_maps_subjects_and_reports_unknown_and_already_forgotten(owned):
    train = owned.train
    subject = int(train.subjects[0])
    its_ids = sorted(train.ids[train.subjects == subject].tolist())
    first, other = its_ids[0], int(train.ids[train.subjects != subject][0])
    requests, _ = parse_requests([
        json.dumps({"request_id": "s", "subjects": [subject]}),
        json.dumps({"request_id": "again", "ids": [first]}),  # removed by "s" already
        json.dumps({"request_id": "half", "ids": [first, other]}),  # one of two already removed
        json.dumps({"request_id": "nobody", "subjects": [1000]}),
        json.dumps({"request_id": "test-id", "ids": [int(owned.test.ids[0])]}),
        json.dumps({"request_id": "history", "ids": [int(train.ids[-1])]}),
    ])
    resolved, problems = resolve_requests(requests, train, removed=[int(train.ids[-1])])
    assert [r.request_id for r in resolved] == ["s", "half"]
    assert list(resolved[0].sample_ids) == its_ids
    assert list(resolved[1].sample_ids) == [other]
    assert "1 of its 2 samples were already forgotten" in resolved[1].notes[0]
    by_id = {p.request_id: p.message for p in problems}
    assert "already forgotten" in by_id["again"] and "already forgotten" in by_id["history"]
    assert "unknown subject(s) [1000]" in by_id["nobody"]
    assert "unknown id(s)" in by_id["test-id"]


def test_subject_requests_need_subjects():
    requests, _ = parse_requests(['{"request_id": "s", "subjects": [1]}'])
    resolved, problems = resolve_requests(requests, load_dataset("digits").train)
    assert not resolved and "has no subjects" in problems[0].message


def test_make_requests_is_seeded_distinct_and_round_trips(owned, tmp_path):
    stream = make_requests(owned.train, 20, seed=3)
    assert stream == make_requests(owned.train, 20, seed=3) and stream != make_requests(owned.train, 20, seed=4)
    assert len({r.subjects for r in stream}) == 20
    assert [r.received_at for r in stream] == sorted(r.received_at for r in stream)
    path = write_requests(tmp_path / "r.jsonl", stream)
    back, problems = read_requests(path)
    assert not problems and [r.to_json() for r in back] == [r.to_json() for r in stream]
    with pytest.raises(ConfigError, match=r"--count must lie in \[1, 100\]"):
        make_requests(owned.train, 101)
    with pytest.raises(DataError, match="no subjects"):
        make_requests(load_dataset("digits").train, 3)


def test_read_requests_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        read_requests(tmp_path / "none.jsonl")


def test_cli_make_and_check(tmp_path, capsys):
    requests, model = tmp_path / "r.jsonl", tmp_path / "m"
    made = runner.invoke(app, ["requests", "make", "--dataset", "digits", "--subjects", "100", "--count", "5",
                               "--out", str(requests), "--json"])
    assert made.exit_code == 0, made.output
    assert json.loads(made.stdout)["count"] == 5 and len(requests.read_text().splitlines()) == 5
    again = runner.invoke(app, ["requests", "make", "--dataset", "digits", "--subjects", "100", "--out",
                                str(requests)])
    assert again.exit_code != 0  # an existing file is kept without --force
    assert runner.invoke(app, ["train", "--dataset", "digits", "--subjects", "100", "--epochs", "1", "--out",
                               str(model)]).exit_code == 0
    good = runner.invoke(app, ["requests", "check", "--checkpoint", str(model), "--requests", str(requests), "--json"])
    assert good.exit_code == 0 and json.loads(good.stdout)["usable"] == 5
    with requests.open("a") as f:
        f.write('{"request_id": "broken"\n{"request_id": "req-0001", "ids": [1]}\n')
    bad = runner.invoke(app, ["requests", "check", "--checkpoint", str(model), "--requests", str(requests), "--json"])
    report = json.loads(bad.stdout)
    assert bad.exit_code == 1 and report["usable"] == 5 and [p["line"] for p in report["problems"]] == [6, 7]
    line = cli_fails(capsys, "requests", "check", "--checkpoint", str(model), "--requests",
                     str(tmp_path / "none.jsonl"))
    assert "does not exist" in line
