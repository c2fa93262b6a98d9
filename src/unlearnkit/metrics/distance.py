"""Distance between two models' weights: ``weight_distance`` and its per-tensor breakdown.

How far did unlearning move the weights, and how far is the result from the retrained model? Pure
numpy, no torch import: a state dict of tensors is read through the tensors' own ``detach()`` /
``cpu()`` / ``double()`` / ``numpy()`` methods, so ``model.state_dict()``, a model itself (anything
with a ``state_dict()`` method) and a plain dict of numpy arrays all work. Every floating-point
entry counts, buffers included (batch-norm running statistics change predictions as much as
weights do); integer and boolean entries, such as batch norm's ``num_batches_tracked`` step
counter, are not weights and are skipped. Sums are accumulated in float64.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from unlearnkit.errors import DataError


def _state(obj: object, name: str) -> Mapping:
    """The name -> array mapping of a model, a state dict, or a dict of arrays."""
    state_dict = getattr(obj, "state_dict", None)
    if callable(state_dict):
        obj = state_dict()
    if not isinstance(obj, Mapping):
        raise DataError(f"weight_distance: {name} must be a model or a state dict (name -> tensor), got "
                        f"{type(obj).__name__}; pass model.state_dict().")
    return obj


def _as_float64(value: object, key: str, name: str) -> np.ndarray | None:
    """The entry as a float64 array, or None when it is not floating point (a counter, a mask)."""
    if hasattr(value, "detach"):  # a torch tensor, read without importing torch
        if not value.is_floating_point():
            return None
        return value.detach().cpu().double().numpy()
    array = np.asarray(value)
    if array.dtype.kind in "biu":
        return None
    if array.dtype.kind != "f":
        raise DataError(f"weight_distance: {name}[{key!r}] has dtype {array.dtype}; pass real-valued tensors.")
    return array.astype(np.float64)


def _aligned(state_a: object, state_b: object) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Check that two states have the same keys and shapes; return their floating entries as float64 pairs."""
    a, b = _state(state_a, "state_a"), _state(state_b, "state_b")
    only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
    if only_a or only_b:
        raise DataError(f"weight_distance: the states have different keys (only in state_a: {only_a[:5]}, only "
                        f"in state_b: {only_b[:5]}); compare two models of the same architecture.")
    pairs = []
    for key in a:
        x, y = _as_float64(a[key], key, "state_a"), _as_float64(b[key], key, "state_b")
        if (x is None) != (y is None):
            raise DataError(f"weight_distance: {key!r} is floating point in one state but not in the other; "
                            "compare two models of the same architecture.")
        if x is None:
            continue
        if x.shape != y.shape:
            raise DataError(f"weight_distance: {key!r} has shape {x.shape} in state_a but {y.shape} in state_b; "
                            "compare two models of the same architecture.")
        if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
            raise DataError(f"weight_distance: {key!r} contains NaN or infinite values; the model diverged.")
        pairs.append((key, x, y))
    if not pairs:
        raise DataError("weight_distance: the states hold no floating-point tensors; pass model.state_dict().")
    return pairs


def weight_distance_per_tensor(state_a: object, state_b: object) -> dict[str, float]:
    """L2 distance ``||a[k] - b[k]||_2`` for every floating-point entry ``k`` of two states.

    Shows *where* unlearning changed a model, e.g. only the classifier after a head reset.

    Args:
        state_a: A model (anything with ``state_dict()``) or a mapping name -> tensor/array.
        state_b: The same, with the same keys and shapes.

    Returns:
        Name -> distance, in the order of ``state_a``; non-floating entries are left out.

    Raises:
        DataError: Different keys, shapes or dtype kinds, non-finite values, or no floating entry.
    """
    return {key: float(np.linalg.norm((x - y).ravel())) for key, x, y in _aligned(state_a, state_b)}


def weight_distance(state_a: object, state_b: object, *, relative: bool = False) -> float:
    """L2 distance between two models' weights, all floating-point tensors flattened into one vector.

    ``||a - b||_2 = sqrt(sum_k ||a[k] - b[k]||^2)``; with ``relative=True`` divided by ``||b||_2``, so
    that models of different sizes compare (0.01 = the weights moved by 1% of their norm). Used for
    the distance of an unlearned model to the retrained one (Golatkar et al., CVPR 2020; Tarun et
    al., 2023), or to the original to see how much a method changed.

    Args:
        state_a: A model (anything with ``state_dict()``) or a mapping name -> tensor/array.
        state_b: The same, with the same keys and shapes; the reference for ``relative``.
        relative: Divide by the norm of ``state_b``.

    Returns:
        The distance, ``>= 0``; 0 for identical weights.

    Raises:
        DataError: Different keys or shapes, non-finite values, no floating entry, or
            ``relative=True`` with all-zero ``state_b``.

    Example:
        >>> import numpy as np
        >>> weight_distance({"w": np.array([3.0, 0.0])}, {"w": np.array([0.0, 4.0])})
        5.0
    """
    squares, reference = 0.0, 0.0
    for _, x, y in _aligned(state_a, state_b):
        diff = (x - y).ravel()
        squares += float(np.dot(diff, diff))
        reference += float(np.dot(y.ravel(), y.ravel()))
    distance = math.sqrt(squares)
    if not relative:
        return distance
    if reference == 0.0:
        raise DataError("weight_distance: state_b is all zeros, so a relative distance is undefined; "
                        "pass relative=False.")
    return distance / math.sqrt(reference)
