"""Unlearning methods, one file each, registered by name in ``METHODS``.

Importing this package registers every built-in method: the three foundation methods first (the
exact reference and the two classic baselines), then every other module in this folder in name
order. Modules whose name starts with ``_`` and the helper modules below are not methods.
"""

import importlib
import pkgutil

from unlearnkit.methods.base import METHODS, Budget, Method, UnlearnTask, get_method, register

_HELPERS = {"base", "loops", "layers", "losses", "space"}
_FIRST = ("retrain", "finetune", "gradient_ascent")  # the exact reference, then the two classic baselines

for _name in (*_FIRST, *sorted(m.name for m in pkgutil.iter_modules(__path__))):
    if not _name.startswith("_") and _name not in _HELPERS:
        importlib.import_module(f"{__name__}.{_name}")

__all__ = ["METHODS", "Budget", "Method", "UnlearnTask", "get_method", "register"]
