"""Unlearning methods, one file each, registered by name in ``METHODS``.

Importing this package imports every module in this folder: the three foundation methods first (the exact
reference and the two classic baselines), then the rest in name order. A module is a method because its class
is decorated with ``@register``, not because of its file: helper modules (``base``, ``loops``, ``layers``,
``losses``, ``space``) register nothing, so no list of them is kept here.
"""

import importlib
import pkgutil

from unlearnkit.methods.base import (
    METHODS,
    AttributeTask,
    Budget,
    Method,
    UnlearnTask,
    get_method,
    methods_of_kind,
    register,
)

_FIRST = ("retrain", "finetune", "gradient_ascent")  # the exact reference, then the two classic baselines

for _name in (*_FIRST, *sorted(m.name for m in pkgutil.iter_modules(__path__))):
    if not _name.startswith("_"):
        importlib.import_module(f"{__name__}.{_name}")

__all__ = ["METHODS", "AttributeTask", "Budget", "Method", "UnlearnTask", "get_method", "methods_of_kind", "register"]
