"""Shared fixtures and helpers: the digits data, small trained models and the usual forget splits, built once per
test session, plus the state-dict comparison the method tests use (import helpers with
``from tests.conftest import same_state, state_copy``)."""

from __future__ import annotations

import re
import sys

import pytest
import torch

from unlearnkit.data import load_dataset, select
from unlearnkit.models import build_model
from unlearnkit.train import TrainConfig, fit

# The suite trains many tiny models: one thread avoids oversubscribing the 2-core CI machine, where two
# threads per tiny matmul cost more in synchronisation than they gain.
torch.set_num_threads(1)

# A quick recipe: 10 epochs of the digits MLP reach ~100% train and ~95% test accuracy in ~1 s.
DIGITS_RECIPE = TrainConfig(epochs=10, batch_size=64, lr=0.05)


@pytest.fixture(scope="session")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="session")
def digits_model(digits):
    model = build_model("mlp", digits.spec, seed=0)
    return fit(model, digits.train, DIGITS_RECIPE, progress=False)


@pytest.fixture(scope="session")
def digits_cnn(digits):
    """For methods that need conv layers (``Method.needs_conv``): the cnn on 8x8 digits."""
    model = build_model("cnn", digits.spec, seed=0)
    return fit(model, digits.train, DIGITS_RECIPE, progress=False)


@pytest.fixture(scope="session")
def class_split(digits):
    """Forget every digit 3 of the digits training set: the class-forgetting case (a retrained model scores ~0
    on the forget set)."""
    return select(digits.train, "class:3", seed=0)


@pytest.fixture(scope="session")
def random_split(digits):
    """Forget a seeded random 10% of the digits training set: the random-forgetting case (a retrained model still
    scores about its test accuracy on the forget set)."""
    return select(digits.train, "random:0.1", seed=0)


def state_copy(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of ``model``'s state dict, safe to keep while the model trains on."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    """Whether two state dicts (e.g. from :func:`state_copy`) have the same keys and bit-identical tensors."""
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --- a data source with options (registered only while a test module asks for it) ----------------
SHIFTED_DIGITS = "shifted-digits"


def _load_shifted_digits(test_fraction: float = 0.2, *, shift: int, noise: float, flip: bool, pad: str):
    """digits with every image rolled (pad "wrap") or shifted (pad "zero") ``shift`` pixels right, optionally
    mirrored top to bottom, plus Gaussian noise of std ``noise`` from a fixed seed per split: deterministic."""
    import numpy as np

    from unlearnkit.data import SOURCES

    bundle = SOURCES["digits"].loader(test_fraction=test_fraction)
    for seed, split in enumerate((bundle.train, bundle.test)):
        x = split.x
        if pad == "wrap":
            x = torch.roll(x, shift, dims=-1)
        else:
            x = torch.nn.functional.pad(x[..., : x.shape[-1] - shift], (shift, 0))
        if flip:
            x = x.flip(-2)
        if noise:
            x = x + noise * torch.from_numpy(np.random.default_rng(seed).standard_normal(x.shape)).float()
        split.x = x
    bundle.source = SHIFTED_DIGITS
    return bundle


@pytest.fixture(scope="module")
def shifted_digits_source():
    """Registers ``shifted-digits``, a test source derived from digits with one option of each type, for the
    module that asks for it, and removes it from ``SOURCES`` afterwards. Returns its name."""
    from unlearnkit.data import SOURCES, DataOption, DataSource
    from unlearnkit.data.sources import register_source

    register_source(DataSource(
        SHIFTED_DIGITS, "digits shifted right (a test source)", _load_shifted_digits, embedded=True,
        options=(
            DataOption("shift", int, 0, "pixels to move every image right", low=0, high=7),
            DataOption("noise", float, 0.0, "std of seeded Gaussian noise added to the pixels", low=0.0, high=1.0),
            DataOption("flip", bool, False, "mirror every image top to bottom"),
            DataOption("pad", str, "wrap", "what enters from the left: the pixels that leave (wrap) or zeros",
                       choices=("wrap", "zero")),
        ),
    ))
    try:
        yield SHIFTED_DIGITS
    finally:
        del SOURCES[SHIFTED_DIGITS]


ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def cli_fails(capsys, *args: str, sole: bool = False) -> str:
    """Run the console entry point ``cli.main()`` in-process with ``args``; require exit status 2, no traceback and
    exactly one ``error:`` line on stderr (with ``sole``, nothing else on stderr either); return that line."""
    from unlearnkit import cli

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", ["unlearn", *args])
        with pytest.raises(SystemExit) as exit_info:
            cli.main()
    err = ANSI.sub("", capsys.readouterr().err)
    assert exit_info.value.code == 2, f"unlearn {' '.join(args)} exited {exit_info.value.code}; stderr:\n{err}"
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()] if sole else \
        [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), f"expected one error line, got stderr:\n{err}"
    return lines[0]
