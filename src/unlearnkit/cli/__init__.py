"""The ``unlearn`` command line: a thin layer over the Python API, one module per command group.

    unlearn demo                                   # digits: train, forget 10%, every method vs retrain
    unlearn train --dataset fashion-mnist --model cnn --epochs 3 --out runs/fm/original
    unlearn forget --checkpoint runs/fm/original --forget class:7 --method gradient-ascent --out runs/fm/ga
    unlearn evaluate --checkpoint runs/fm/ga --forget class:7 --reference runs/fm/retrain --json
    unlearn compare --dataset digits --forget random:0.1 --methods all --json
    unlearn debias --checkpoint runs/cd/original --attribute color --method dfr --out runs/cd/dfr
    unlearn compare --dataset colored-digits --attribute color --methods all --json
    unlearn requests make --dataset digits --subjects 100 --count 20 --out runs/requests.jsonl
    unlearn stream --checkpoint runs/d/original --requests runs/requests.jsonl --policy batch:5 --out runs/d/stream
    unlearn fl train --dataset digits --clients 5 --backdoor-client 2 --out runs/fl/original

``models`` holds the commands on single checkpoints, ``bench`` those that compare methods against retraining,
``stream`` those on deletion-request streams, ``poison`` the poison detector, ``federated`` the ``fl`` group,
``common`` the option types and output helpers they share; this module assembles them into one typer app.
Errors print one line on stderr (the problem and the fix) and exit with status 2; ``--debug`` shows the
traceback instead.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.markup import escape

from unlearnkit.cli import bench as _bench
from unlearnkit.cli import federated as _federated
from unlearnkit.cli import models as _models
from unlearnkit.cli import poison as _poison
from unlearnkit.cli import stream as _stream
from unlearnkit.cli.common import STATE, err_console
from unlearnkit.errors import UnlearnError

app = typer.Typer(
    name="unlearn",
    help="Remove chosen training data from trained PyTorch models and measure how close the result is "
    "to retraining without it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False) -> None:
    STATE["debug"] = debug


# the order of `unlearn --help`
for _command in (_models.datasets, _models.methods, _models.train, _models.forget, _models.debias, _models.evaluate,
                 _bench.compare, _bench.demo, _bench.neurips, _bench.bench, _bench.tune, _bench.report,
                 _stream.stream, _poison.detect):
    app.command()(_command)
app.add_typer(_stream.requests_app, name="requests")
app.add_typer(_federated.fl_app, name="fl")


def main() -> None:
    """Console entry point: one-line errors, non-zero exit, traceback only with --debug."""
    try:
        app()
    except UnlearnError as exc:
        if STATE["debug"]:
            raise
        err_console.print(f"[bold red]error:[/bold red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted; nothing was saved for the step in progress")
        sys.exit(130)


__all__ = ["app", "main"]
