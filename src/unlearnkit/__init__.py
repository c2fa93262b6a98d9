"""unlearnkit: remove chosen training data from trained PyTorch models, and measure how close the
result is to a model retrained without it.

    >>> from unlearnkit import load_dataset, select, build_model, fit, TrainConfig, unlearn, evaluate

Layout, top to bottom (a module imports only from its own layer or the ones below; tests/test_layers.py
enforces the order and the absence of import cycles):

    cli/            the ``unlearn`` command, one module per command group; no domain logic
    stream/         continual unlearning: deletion-request streams (read, checked per line, resolved to ids) and
                    the engine that applies them (versions, verification, drift fallback, resume), its report
    bench/          compare, bench grids, result store, reports, tuning, NeurIPS scoring, reference ensembles
    federated/      federated training on Flower (ClientApp/ServerApp, simulation engine or in-process), the
                    server's store of client updates, client-removal methods (fl-retrain, federaser,
                    fl-gradient-ascent, fedaccum) and their evaluation; above runs.py, whose checkpoints it writes
    runs.py         checkpoint-level workflows (train and save, reload with data, forget, evaluate): the file
                    side of the API that the CLI and the benches share, so it sits above both entry points
    detect/         poison detectors (spectral signatures, activation clustering, loss ranking) on a trained model
    evaluation.py   ``evaluate(model, split, test, reference) -> Report`` (multi-task models: per-task accuracies
                    and the Unlearning Impact Score)
    relearn.py      relearn time, a metric that trains; not in metrics/, whose modules never train or import
                    torch, so it sits beside evaluation.py, the one module that uses it
    unlearning.py   ``unlearn(model, split, method)`` and ``remove_attribute(model, data, attribute, method)``
    methods/        one file per method, registered by name (``multitask`` flag: serves multi-task models)
    exact/          SISA, certified removal for linear models, recorded updates (amnesiac)
    metrics/        pure functions on arrays (incl. the multi-task UIS and the attack success rate)
    train.py        ``fit``, ``TrainConfig``, the vectorized ensemble trainer
    models/         architectures by name (incl. the multi-head mtl-mlp / mtl-cnn and their masked multi-task
                    loss), the convex linear models' solver, checkpoints
    data/           ``IndexedDataset``, sources by name (incl. derived biased, multi-task and poisoned data),
                    forget-set selection (task-scoped specs ``SPEC@TASK``, ``poisoned:F``)
    registry.py, errors.py, device.py, files.py, ray_session.py
                    tiny shared modules: the name registry, user-facing errors, device choice, atomic
                    writes, and the one Ray start/stop used by both exact/ (SISA shards) and bench/ (splits)

The entry-point modules are ``unlearning`` and ``evaluation``, not ``unlearn`` and ``evaluate``: the package
exports the functions ``unlearn`` and ``evaluate``, and a submodule of the same name would be shadowed by them.
"""

from unlearnkit.data import DatasetBundle, ForgetSplit, IndexedDataset, load_dataset, select
from unlearnkit.errors import UnlearnError
from unlearnkit.evaluation import Report, evaluate
from unlearnkit.methods import METHODS, AttributeTask, Budget, Method, UnlearnTask, register
from unlearnkit.models import build_model, load_checkpoint, save_checkpoint
from unlearnkit.train import TrainConfig, fit
from unlearnkit.unlearning import UnlearnResult, remove_attribute, unlearn

__version__ = "0.1.0"

__all__ = [
    "METHODS", "AttributeTask", "Budget", "DatasetBundle", "ForgetSplit", "IndexedDataset", "Method", "Report",
    "TrainConfig", "UnlearnError", "UnlearnResult", "UnlearnTask", "build_model", "evaluate", "fit",
    "load_checkpoint", "load_dataset", "register", "remove_attribute", "save_checkpoint", "select", "unlearn",
]
