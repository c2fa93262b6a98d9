"""What every command module shares: the consoles, the option types, JSON output and small argument helpers.

Errors are not handled here: commands raise :class:`unlearnkit.errors.UnlearnError` and the console entry point
(``unlearnkit.cli.main``) prints its one line and exits with status 2.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from unlearnkit.errors import UnlearnError

STATE = {"debug": False}
out_console = Console(width=120, soft_wrap=False)
err_console = Console(stderr=True)

# --- shared options -------------------------------------------------------------------------------
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
DatasetOpt = Annotated[str, typer.Option("--dataset", "-d", help="Data source (`unlearn datasets`).")]
ModelOpt = Annotated[
    str | None, typer.Option("--model", "-m", help="Architecture: mlp, cnn, resnet18, linear, logistic (default: "
                             "per dataset).")
]
DataDirOpt = Annotated[
    str | None, typer.Option("--data-dir", help="Directory with the data files (tabular: the CSV/Parquet file).")
]
SubjectsOpt = Annotated[
    int | None, typer.Option("--subjects", help="Give samples N deterministic pseudo-subjects (for subjects:...).")
]
TrainSizeOpt = Annotated[
    int | None, typer.Option("--train-size", help="Use a deterministic subset of N training samples (quick runs).")
]
DataOptionOpt = Annotated[
    list[str], typer.Option("--data-option", metavar="KEY=VALUE", help="An option of the data source, KEY=VALUE "
                            "(repeat; `unlearn datasets` lists each source's keys).")
]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto (cuda > mps > cpu), cpu, cuda, cuda:N, mps.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seeds the random forget subset and the method.")]
ForgetOpt = Annotated[
    str,
    typer.Option(
        "--forget", "-f",
        help="What to forget: random:F, class:C[,C], ids:1,2|FILE, subjects:1,2|FILE, attribute:NAME=VALUE.",
    ),
]
MaybeForgetOpt = Annotated[
    str | None,
    typer.Option(
        "--forget", "-f",
        help="What to forget: random:F, class:C[,C], ids:1,2|FILE, subjects:1,2|FILE, attribute:NAME=VALUE.",
    ),
]
AttributeOpt = Annotated[
    str | None,
    typer.Option("--attribute", help="An attribute of the data to remove or measure, e.g. color (`unlearn datasets` "
                 "lists each source's attributes)."),
]
ProgressOpt = Annotated[
    bool | None, typer.Option("--progress/--no-progress", help="Progress bars (default: on a terminal only).")
]
EpochsOpt = Annotated[int | None, typer.Option("--epochs", help="Training epochs (default: per dataset).")]
BatchOpt = Annotated[int | None, typer.Option("--batch-size", help="Mini-batch size (default: per dataset).")]
LrOpt = Annotated[float | None, typer.Option("--lr", help="Learning rate (default: per dataset).")]
OptimOpt = Annotated[str | None, typer.Option("--optimizer", help="sgd, adam, or lbfgs (linear/logistic models).")]
ScheduleOpt = Annotated[str | None, typer.Option("--schedule", help="cosine or constant.")]
WdOpt = Annotated[float | None, typer.Option("--weight-decay", help="L2 weight decay.")]



def emit_json(data) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def save_and_emit(data: dict, save: str | None, as_json: bool, force: bool = False) -> bool:
    """Write ``data`` as JSON to ``save`` (if given) and print it with ``--json``; True if it was printed.

    The file is written whole (temporary name, then rename); an existing file is replaced only with ``force``
    (commands check that with :func:`unlearnkit.files.refuse_overwrite` before their work starts as well).
    """
    if save:
        from unlearnkit.files import write_json_atomic

        write_json_atomic(save, data, force=force)
    if as_json:
        emit_json(data)
    return as_json


def train_recipe(dataset: str, model: str, seed: int, **overrides):
    from unlearnkit.train import default_recipe

    base = default_recipe(dataset, model)
    changes = {k: v for k, v in overrides.items() if v is not None}
    return base.with_(seed=seed, **changes)


def load_bundle(dataset: str, data_dir, subjects, train_size, data_option: list[str] | tuple[str, ...] = (), **tabular):
    from unlearnkit.data import load_dataset

    return load_dataset(dataset, data_dir=data_dir, subjects=subjects, train_size=train_size,
                        data_options=parse_data_options(data_option), **tabular)


def parse_data_options(values: list[str] | tuple[str, ...]) -> dict[str, str]:
    """``["shift=2", "noise=0.1"]`` -> ``{"shift": "2", "noise": "0.1"}``; the source coerces and checks the values."""
    options: dict[str, str] = {}
    for item in values:
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise UnlearnError(f"--data-option {item!r} needs KEY=VALUE, e.g. --data-option shift=2 "
                               "(`unlearn datasets` lists each source's keys)")
        if key in options:
            raise UnlearnError(f"--data-option {key} is given twice ({options[key]!r} and {value.strip()!r}); "
                               "give each key once")
        options[key] = value.strip()
    return options


def resolve_model_name(dataset: str, model: str | None) -> str:
    from unlearnkit.data.sources import get_source

    return model or get_source(dataset).default_model


def parse_params(values: list[str]) -> dict[str, str]:
    params = {}
    for item in values:
        if "=" not in item:
            raise UnlearnError(f"--param {item!r} needs KEY=VALUE, e.g. --param epochs=3")
        key, value = item.split("=", 1)
        params[key.strip()] = value.strip()
    return params


def status(message: str) -> None:
    err_console.print(f"[dim]· {escape(message)}[/dim]")



def warn(message: str) -> None:
    """A warning line on stderr (kept out of --json output)."""
    err_console.print(f"warning: {message}", markup=False, highlight=False, soft_wrap=True)
