"""Forgetting quality of the NeurIPS 2023 Machine Unlearning challenge, vectorised in torch.

- :func:`logit_scaled_confidence` — per-sample ``log p(y) - log(1 - p(y))`` from logits, in float64.
- :func:`forget_quality` — per-example privacy epsilons estimated from N unlearned and N retrained
  models, and the challenge's forgetting score ``F`` in ``[0, 1]`` (1 = indistinguishable).
- :func:`neurips_score` — the challenge's final score ``F * (RA_u / RA_r) * (TA_u / TA_r)``.

Definition followed: Triantafillou et al., "Are we making progress in unlearning? Findings from the
first NeurIPS unlearning competition" (arXiv 2406.09073, section 3), and its official evaluation code,
``metric.py`` in https://github.com/google-deepmind/unlearning_evaluation (commit ffae0ff). For each
forget example, the N confidences under unlearned models and the N under retrained models are two
samples; every decision rule of two families is an attack telling them apart, and its false-positive
and false-negative rates give ``epsilon = max(log((1 - delta - FPR) / FNR), log((1 - delta - FNR) /
FPR))``; the example's epsilon is the largest over all rules. Epsilons are bucketed into points and
averaged into ``F``. Where the official code and the text leave room, the choices are marked
"Choice:" in comments below; the slow reference in ``tests/test_forget_quality.py`` makes the same.

The computation is exact with respect to the threshold grids (no sampling), runs on whatever device
the input tensors are on, and moves only the final per-example numbers to the CPU.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import ArrayLike

from unlearnkit.errors import ConfigError, DataError

DELTA = 1e-5  # the challenge's delta
EPSILON_CAP = 50.0  # epsilons are clipped to [0, EPSILON_CAP]; peaky examples get the cap
THRESHOLDS_PER_UNIT = 100  # grid density of both rule families, per unit of confidence
BUFFER = 2.0  # how far the double-threshold grids reach beyond the peaky sample
RANGE_RATIO_CAP = 0.01  # smaller range / larger range below this: the example gets EPSILON_CAP
# Confidences beyond this are refused: the single-threshold grid has 100 points per unit of their range,
# and logit-scaled confidences of real models stay far below (|z_y - logsumexp| < ~1e4 even for fp32).
MAX_ABS_CONFIDENCE = 1e6
_LEFT_GRID_SIZE = math.ceil(2 * BUFFER * THRESHOLDS_PER_UNIT)  # 400 left thresholds per right one

# Elements of the (example, row, cell) tensors processed at once: small enough for the CPU cache,
# large enough to keep a GPU busy.
_CPU_CHUNK_ELEMENTS = 1 << 21
_CUDA_CHUNK_ELEMENTS = 1 << 25


@dataclass(frozen=True, eq=False)
class ForgetQuality:
    """The forgetting quality of one unlearning method on one forget set.

    Attributes:
        score: The challenge's forgetting score ``F``: mean points over examples, in ``[0, 1]``.
        epsilons: Per-example epsilon, float64 of shape ``(n_examples,)``, in ``[0, EPSILON_CAP]``.
        points: Per-example points, float64 of shape ``(n_examples,)``: 1 for epsilon in
            ``[0, 0.5)``, halving per 0.5-wide bucket, 0 from ``ceil(log(n_models - 1))`` on.
        n_models: N, the number of unlearned (and of retrained) models the epsilons came from.
        delta: The delta used in the epsilon formula.
    """

    score: float
    epsilons: np.ndarray
    points: np.ndarray
    n_models: int
    delta: float


def _as_tensor(values: ArrayLike | torch.Tensor, name: str, device: torch.device | None = None) -> torch.Tensor:
    """Return ``values`` as a tensor, keeping a tensor's device; arrays go to ``device`` (CPU if None)."""
    if isinstance(values, torch.Tensor):
        return values.detach()
    try:
        array = np.asarray(values)
    except (TypeError, ValueError) as error:
        raise DataError(f"{name} could not be read as an array ({error}); pass a numpy array or a tensor.") from None
    if array.dtype == object:
        raise DataError(f"{name} holds objects (ragged lists?); pass a rectangular numpy array or a tensor.")
    return torch.as_tensor(array, device=device)


def logit_scaled_confidence(logits: ArrayLike | torch.Tensor, targets: ArrayLike | torch.Tensor) -> torch.Tensor:
    """Logit-scaled confidence ``log p(y) - log sum_{j != y} p(j)`` of each sample, in float64.

    Computed as ``z_y - logsumexp(z_j, j != y)`` from the logits ``z``, which needs no softmax and
    stays finite and exact for any finite logits. (The official code takes a float32 softmax and adds
    1e-45 inside each log, which saturates near +-103.6; the two agree to float rounding wherever
    neither probability underflows float32, i.e. for confidences within about +-87.)

    Args:
        logits: Scores of shape ``(..., n_classes)``, n_classes at least 2, e.g.
            ``(n_models, n_examples, n_classes)``; a tensor on any device or an array.
        targets: Integer labels in ``[0, n_classes)`` whose shape broadcasts to ``logits.shape[:-1]``,
            e.g. ``(n_examples,)`` for logits of shape ``(n_models, n_examples, n_classes)``.

    Returns:
        A float64 tensor of shape ``logits.shape[:-1]`` on the logits' device (CPU for arrays).

    Raises:
        DataError: Fewer than 2 classes, NaN/infinite logits, non-integer targets, targets out of
            range, or shapes that do not broadcast.

    Example:
        >>> round(float(logit_scaled_confidence([[2.0, 0.0, 0.0]], [0])[0]), 4)  # log(e^2 / 2)
        1.3069
    """
    z = _as_tensor(logits, "logit_scaled_confidence: logits")
    device = z.device
    t = _as_tensor(targets, "logit_scaled_confidence: targets", device=device)
    if z.ndim == 0 or z.shape[-1] < 2:
        raise DataError(f"logit_scaled_confidence: logits must have shape (..., n_classes) with at least 2 "
                        f"classes, got shape {tuple(z.shape)}; pass the model's raw outputs.")
    if z.is_complex() or z.dtype == torch.bool:
        raise DataError(f"logit_scaled_confidence: logits have dtype {z.dtype}; pass real-valued scores.")
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise DataError(f"logit_scaled_confidence: targets must be integer class labels, got dtype {t.dtype}; "
                        "cast them with .long() or .astype(int).")
    leading = tuple(z.shape[:-1])
    try:
        broadcast = tuple(torch.broadcast_shapes(tuple(t.shape), leading))
    except RuntimeError:
        broadcast = None
    if broadcast != leading:
        raise DataError(f"logit_scaled_confidence: targets of shape {tuple(t.shape)} do not broadcast to the "
                        f"logits' leading shape {leading}; pass one label per example, e.g. shape "
                        f"{leading[-1:]}.")
    t = t.to(device)
    n_classes = z.shape[-1]
    if t.numel() and bool(((t < 0) | (t >= n_classes)).any()):
        bad = int(t[(t < 0) | (t >= n_classes)].flatten()[0])
        raise DataError(f"logit_scaled_confidence: target {bad} is outside [0, {n_classes}); labels must index "
                        "the logits' last axis.")
    z = z.to(torch.float64)
    if not bool(torch.isfinite(z).all()):
        raise DataError("logit_scaled_confidence: logits contain NaN or infinite values; check the model outputs.")
    index = t.to(torch.int64).expand(leading).unsqueeze(-1)
    correct = z.gather(-1, index).squeeze(-1)
    wrong = z.scatter(-1, index, float("-inf"))  # the target's logit removed from the sum
    return correct - torch.logsumexp(wrong, dim=-1)


def _confidences(values: ArrayLike | torch.Tensor, name: str, device: torch.device | None) -> torch.Tensor:
    """Return confidences as a float64 ``(n_models, n_examples)`` tensor after checking them."""
    x = _as_tensor(values, f"forget_quality: {name}", device=device)
    if x.ndim != 2:
        raise DataError(f"forget_quality: {name} must have shape (n_models, n_examples), got "
                        f"{tuple(x.shape)}; one row per model, one column per forget example.")
    if x.shape[0] < 2:
        raise DataError(f"forget_quality: {name} has {x.shape[0]} model(s); at least 2 are needed to compare "
                        "distributions (the challenge used 512).")
    if x.shape[1] < 1:
        raise DataError(f"forget_quality: {name} has no examples (shape {tuple(x.shape)}); pass at least one "
                        "forget example.")
    if x.is_complex() or x.dtype == torch.bool:
        raise DataError(f"forget_quality: {name} has dtype {x.dtype}; pass real-valued confidences.")
    x = x.to(torch.float64)
    if not bool(torch.isfinite(x).all()):
        raise DataError(f"forget_quality: {name} contains NaN or infinite values; compute them with "
                        "logit_scaled_confidence, which is finite for finite logits.")
    if bool((x.abs() > MAX_ABS_CONFIDENCE).any()):
        raise DataError(f"forget_quality: {name} has values beyond +-{MAX_ABS_CONFIDENCE:g}; pass confidences "
                        "(e.g. logit_scaled_confidence), not raw sums or scaled scores.")
    return x


def _median(x: torch.Tensor) -> torch.Tensor:
    """Median over dim 0 as numpy takes it: the mean of the two middle values when their count is even."""
    s = x.sort(dim=0).values
    n = x.shape[0]
    return (s[(n - 1) // 2] + s[n // 2]) / 2.0


def _epsilon_table(n_models: int, delta: float, device: torch.device) -> torch.Tensor:
    """Epsilon of a rule by its counts, flattened for lookups by :func:`_family_max`.

    With tp positives and fp negatives predicted positive, the rule's epsilon is
    ``table[(tp + n) * (2n + 1) + (fp + n)]`` for ``-n <= tp, fp <= n``; negative counts (an
    interval whose left end passed its right end) read as 0, so the lookup needs no clamping.
    Rules with exactly one of FPR, FNR zero are discarded by the challenge, and so are rules where
    both log ratios are undefined; every kept rule is clipped at 0 and an example with no kept rule
    gets 0 (Choice: the official code stops with an assertion there). Hence a discarded rule can be
    stored as 0 without changing any maximum. Perfect separation (FPR = FNR = 0) is ``inf``.
    Built with numpy, so its bits equal a numpy evaluation of the same formula.
    """
    counts = np.maximum(np.arange(-n_models, n_models + 1, dtype=np.float64), 0.0)
    tp = counts[:, None]
    fp = counts[None, :]
    fpr = fp / n_models + 0.0 * tp
    fnr = (n_models - tp) / n_models + 0.0 * fp
    with np.errstate(divide="ignore", invalid="ignore"):
        by_fnr = np.log(1.0 - delta - fpr) - np.log(fnr)
        by_fpr = np.log(1.0 - delta - fnr) - np.log(fpr)
    table = np.fmax(by_fnr, by_fpr)  # fmax ignores an undefined (NaN) term
    table = np.where(np.isnan(table) | ((fpr == 0) != (fnr == 0)), 0.0, np.maximum(table, 0.0))
    table = np.where((fpr == 0) & (fnr == 0), np.inf, table)
    return torch.as_tensor(table.ravel(), device=device)


def _exact_counts(
    values: torch.Tensor, start: torch.Tensor, stop: torch.Tensor, size: torch.Tensor, step: torch.Tensor,
    guess: torch.Tensor,
) -> torch.Tensor:
    """``#{k : t_k <= v}`` on numpy's grid ``t_k = k * step + start``, ``t_{size-1} = stop``, from a guess.

    All arguments are 1-D and aligned. The grid is non-decreasing, so stepping the guess by one
    towards the answer, against the grid points themselves, converges to the exact count.
    """
    def point(k: torch.Tensor) -> torch.Tensor:
        return torch.where((size > 1) & (k == size - 1), stop, k.to(values.dtype) * step + start)

    counts = guess
    while True:
        too_high = (counts > 0) & (point(counts - 1) > values)
        too_low = (counts < size) & (point(counts) <= values)
        if not bool((too_high | too_low).any()):
            return counts
        counts = counts - too_high.to(torch.int64) + too_low.to(torch.int64)


class _Workspace:
    """Flat buffers that every chunk of one call reuses for its large temporaries.

    Fresh memory of this size is returned to the system after each chunk and faulted in again for
    the next, which on CPU costs as much as the arithmetic; reusing the buffers avoids it.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.buffers: dict[str, torch.Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        """A contiguous tensor of ``shape`` backed by the buffer ``name`` (contents undefined)."""
        size = math.prod(shape)
        buffer = self.buffers.get(name)
        if buffer is None or buffer.numel() < size or buffer.dtype != dtype:
            buffer = torch.empty(size, dtype=dtype, device=self.device)
            self.buffers[name] = buffer
        return buffer[:size].view(shape)


def _family_max(
    merged: torch.Tensor,
    cell_code: torch.Tensor,
    row_code: torch.Tensor,
    start: torch.Tensor,
    stop: torch.Tensor,
    size: torch.Tensor,
    table: torch.Tensor,
    workspace: _Workspace,
) -> torch.Tensor:
    """Largest epsilon over a family of interval rules ``l <= value <= r``: one row per ``r``, a grid of ``l``.

    Args:
        merged: Both samples of each example, sorted, ``(e, m)``.
        cell_code: ``p * (2n + 1) + q`` for the p positives and q negatives among the first i merged
            values, for i in ``0..m``, ``(e, m + 1)``.
        row_code: ``p * (2n + 1) + q + n * (2n + 2)`` for the p positives and q negatives ``<= r``
            of each row, ``(e, rows)``.
        start, stop, size: Each row's left grid, ``np.linspace(start, stop, size)``, ``(e, rows)``;
            rows with ``size == 0`` contribute nothing.
        table: The flat table of :func:`_epsilon_table`.
        workspace: Buffers for the ``(e, rows, m)`` temporaries.

    A left threshold in the "cell" ``v_{i-1} < l <= v_i`` leaves exactly the first i merged values
    out, so the rule's counts are ``row_code - cell_code[i]``; the cell is reached when some grid
    point falls in it, i.e. when the number of grid points ``<= v`` rises from ``v_{i-1}`` to
    ``v_i``. That number is read off ``floor((v - start) / step)``; where rounding could have moved
    it across a grid point (fractional part within a tolerance of 0 or 1, far above float64
    rounding) it is checked against the grid points themselves. Such near-ties are not rare: the
    single grid starts and ends on data values, and the last left threshold of the first right one
    is the peaky sample's minimum up to rounding.
    """
    e, m = merged.shape
    rows = start.shape[1]
    sizef = size.to(merged.dtype)
    step = torch.where(size > 1, (stop - start) / (sizef - 1.0), torch.ones_like(start))
    inverse = 1.0 / step
    position = workspace.get("position", (e, rows, m), merged.dtype)
    torch.addcmul((-start * inverse)[..., None], merged[:, None, :], inverse[..., None], out=position)
    floor = torch.floor(position, out=workspace.get("floor", (e, rows, m), merged.dtype))  # count - 1
    # Rounding in position and in the grid points is below ~1e-15 * (size + |values| / step) steps.
    scale = merged.abs().amax(dim=1)[:, None] + start.abs() + stop.abs()
    tolerance = 1e-12 * (sizef + 1.0 + scale * inverse)
    unsure = workspace.get("unsure", (e, rows, m), torch.bool)
    torch.gt(position.sub_(floor).sub_(0.5).abs_(), (0.5 - tolerance)[..., None], out=unsure)
    if bool(unsure.any()):
        index = unsure.nonzero(as_tuple=True)
        row = index[:2]
        guess = torch.clamp(floor[index] + 1.0, min=0.0).minimum(sizef[row]).to(torch.int64)
        exact = _exact_counts(merged[index[0], index[2]], start[row], stop[row], size[row], step[row], guess)
        floor[index] = exact.to(merged.dtype) - 1.0
    last = (sizef - 1.0)[..., None]
    torch.clamp(floor, min=torch.full_like(last, -1.0), max=last, out=floor)
    # Cell i is reached when the count rises from value i - 1 to value i; before the first value it
    # rises from 0 grid points, after the last one to all of them.
    reached = workspace.get("reached", (e, rows, m + 1), torch.bool)
    torch.ge(floor[..., :1], 0.0, out=reached[..., :1])
    torch.gt(floor[..., 1:], floor[..., :-1], out=reached[..., 1:m])
    torch.lt(floor[..., -1:], last, out=reached[..., m:])
    index = torch.sub(row_code[..., None], cell_code[:, None, :], out=workspace.get("index", (e, rows, m + 1),
                                                                                    torch.int64))
    eps = torch.take(table, index, out=workspace.get("eps", (e, rows, m + 1), table.dtype))
    eps = torch.where(reached, eps, torch.zeros((), dtype=eps.dtype, device=eps.device), out=eps)
    return eps.view(e, -1).amax(dim=1)


def _linspace(start: torch.Tensor, stop: torch.Tensor, size: torch.Tensor, width: int) -> torch.Tensor:
    """Rows of ``np.linspace(start, stop, size)`` with numpy's arithmetic, padded to ``width`` columns."""
    k = torch.arange(width, dtype=start.dtype, device=start.device)
    multi = size > 1
    step = torch.where(multi, (stop - start) / (size.to(start.dtype) - 1.0), torch.ones_like(start))
    grid = k * step[:, None] + start[:, None]
    return torch.where(multi[:, None] & (k == (size - 1)[:, None].to(k.dtype)), stop[:, None], grid)


def _epsilons_chunk(pos: torch.Tensor, neg: torch.Tensor, table: torch.Tensor, workspace: _Workspace
                    ) -> torch.Tensor:
    """Epsilons of a chunk of examples, before the cap and clipping; ``pos``/``neg`` are ``(e, n_models)``.

    ``pos`` is the sample with the larger median, predicted positive above a single threshold.
    """
    e, n = pos.shape
    width_code = 2 * n + 1  # counts p, q in [-n, n] are coded as p * width_code + q
    offset = n * width_code + n
    pos_sorted = pos.sort(dim=1).values
    neg_sorted = neg.sort(dim=1).values
    merged, order = torch.cat([pos_sorted, neg_sorted], dim=1).sort(dim=1)
    zero = torch.zeros((e, 1), dtype=torch.int64, device=pos.device)
    prefix_pos = torch.cat([zero, (order < n).to(torch.int64).cumsum(dim=1)], dim=1)  # positives among first i
    prefix_neg = torch.arange(2 * n + 1, device=pos.device)[None, :] - prefix_pos

    # (a) Single threshold: positive if value >= t, t on np.linspace(min, max, ceil(range * 100)).
    # Choice: the grid is float64; the official code builds it with torch.linspace in the default
    # dtype (float32), which differs only for a confidence within float32 rounding of a grid point.
    # "value >= t" is the interval [t, inf): all n positives and n negatives are below its right end.
    low = merged[:, :1]
    high = merged[:, -1:]
    size_single = torch.ceil((high - low) * THRESHOLDS_PER_UNIT).to(torch.int64)
    all_below = torch.full((e, 1), n * width_code + n + offset, dtype=torch.int64, device=pos.device)
    best_single = _family_max(
        merged, prefix_pos * width_code + prefix_neg, all_below, low, high, size_single, table, workspace,
    )

    # (b) Double threshold: positive if l <= value <= r, around the peakier (smaller-range) sample.
    pos_range = pos_sorted[:, -1] - pos_sorted[:, 0]
    neg_range = neg_sorted[:, -1] - neg_sorted[:, 0]
    peaky_is_pos = (pos_range < neg_range)[:, None]  # ties: the negative (smaller-median) sample
    width = torch.minimum(pos_range, neg_range)
    peaky = torch.where(peaky_is_pos, pos_sorted, neg_sorted).contiguous()
    other = torch.where(peaky_is_pos, neg_sorted, pos_sorted).contiguous()
    cell_code = torch.where(peaky_is_pos, prefix_pos * width_code + prefix_neg, prefix_neg * width_code + prefix_pos)
    # Right thresholds: np.linspace(peaky.min + width - 2, peaky.max + 2, ceil(span * 100)); the
    # official code writes the lower end as min + width rather than max, and so does this.
    right_low = (peaky[:, 0] + width) - BUFFER
    right_high = peaky[:, -1] + BUFFER
    size_right = torch.ceil((right_high - right_low) * THRESHOLDS_PER_UNIT).to(torch.int64)
    right = _linspace(right_low, right_high, size_right, int(size_right.max()))  # (e, rows)
    row_code = (torch.searchsorted(peaky, right, right=True) * width_code
                + torch.searchsorted(other, right, right=True) + offset)
    valid = torch.arange(right.shape[1], device=pos.device)[None, :] < size_right[:, None]
    # Left thresholds of each right one r: np.linspace(r - width - 2, r - width + 2, 400).
    centre = right - width[:, None]
    best_double = _family_max(
        merged, cell_code, row_code, centre - BUFFER, centre + BUFFER,
        torch.where(valid, _LEFT_GRID_SIZE, 0), table, workspace,
    )
    return torch.maximum(best_single, best_double)


def _points(epsilons: torch.Tensor, n_models: int) -> torch.Tensor:
    """Challenge points per epsilon: ``2 ** -floor(2 * eps)`` below ``ceil(log(n_models - 1))``, else 0."""
    n_buckets = 2 * math.ceil(math.log(n_models - 1))  # 0.5-wide buckets; none at all when n_models == 2
    bucket = torch.floor(2.0 * epsilons)
    return torch.where(bucket < n_buckets, torch.pow(0.5, bucket), torch.zeros_like(epsilons))


def forget_quality(
    unlearned_confs: ArrayLike | torch.Tensor,
    retrained_confs: ArrayLike | torch.Tensor,
    delta: float = DELTA,
    *,
    chunk_size: int | None = None,
) -> ForgetQuality:
    """The challenge's forgetting quality: per-example epsilons and the score ``F`` built from them.

    For each forget example, the confidences under the N unlearned models and under the N retrained
    models are two samples. The "positive" sample is the one with the larger median (on a tie, the
    unlearned one, as the official ``retrained > unlearned`` test gives). Two families of
    attacks try to tell them apart, each rule giving ``max(log((1 - delta - FPR) / FNR), log((1 -
    delta - FNR) / FPR))`` (clipped at 0):

    - single threshold: positive if ``value >= t``, ``t`` on ``np.linspace(lo, hi, ceil((hi - lo) *
      100))`` over the range of both samples;
    - double threshold: positive if ``l <= value <= r``, around the peakier sample (smaller range;
      on a tie, the smaller-median one): ``r`` on ``np.linspace(min + w - 2, max + 2, ceil(span *
      100))`` over that sample's range ``w`` widened by 2, and for each ``r``, ``l`` on
      ``np.linspace(r - w - 2, r - w + 2, 400)``.

    Rules with exactly one of FPR, FNR zero are discarded, and perfect separation gives ``inf``. The
    example's epsilon is the largest over both families, clipped to ``[0, 50]``; an example whose
    smaller range is below 1% of the larger gets 50 outright (a near-constant sample). Each example
    scores 1 point for epsilon in ``[0, 0.5)``, halving per 0.5-wide bucket, and 0 from
    ``ceil(log(N - 1))`` on (so N = 2 always scores 0); ``F`` is the mean.

    Args:
        unlearned_confs: Confidences of shape ``(n_models, n_examples)`` under the unlearned models,
            e.g. from :func:`logit_scaled_confidence`; a tensor on any device or an array.
        retrained_confs: The same under models retrained without the forget set; same shape.
        delta: The delta of the epsilon formula, in ``[0, 1)``; the challenge's 1e-5 by default.
        chunk_size: Examples processed at once, to bound memory; None picks it from the device
            (about 70 MB of temporaries on CPU, 1 GB on GPU).

    Returns:
        A :class:`ForgetQuality` with the score, per-example epsilons and points (numpy, float64).

    Raises:
        DataError: Shapes that are not 2-D or do not match, fewer than 2 models, no examples,
            NaN/infinite values or beyond ``MAX_ABS_CONFIDENCE``, or tensors on different devices.
        ConfigError: ``delta`` outside ``[0, 1)`` or ``chunk_size`` below 1.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> same = forget_quality(rng.normal(size=(64, 200)), rng.normal(size=(64, 200)))
        >>> 0.0 < same.score < 0.5  # same distribution; the rule search alone gives ~0.2
        True
        >>> forget_quality(rng.normal(size=(64, 50)), rng.normal(10.0, 1.0, size=(64, 50))).score
        0.0
    """
    if isinstance(delta, bool) or not (isinstance(delta, numbers.Real) and 0.0 <= delta < 1.0):
        raise ConfigError(f"forget_quality: delta must be in [0, 1), got {delta!r}; use the challenge's 1e-5.")
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1):
        raise ConfigError(f"forget_quality: chunk_size must be a positive integer or None, got {chunk_size!r}.")
    devices = {x.device for x in (unlearned_confs, retrained_confs) if isinstance(x, torch.Tensor)}
    if len(devices) > 1:
        raise DataError(f"forget_quality: the confidences are on different devices {sorted(map(str, devices))}; "
                        "move both to the same device.")
    device = devices.pop() if devices else torch.device("cpu")
    unlearned = _confidences(unlearned_confs, "unlearned_confs", device)
    retrained = _confidences(retrained_confs, "retrained_confs", device)
    if unlearned.shape[1] != retrained.shape[1]:
        raise DataError(f"forget_quality: {unlearned.shape[1]} examples in unlearned_confs but "
                        f"{retrained.shape[1]} in retrained_confs; both need one column per forget example.")
    if unlearned.shape[0] != retrained.shape[0]:
        raise DataError(f"forget_quality: {unlearned.shape[0]} unlearned models but {retrained.shape[0]} "
                        "retrained ones; the challenge compares equally many, so pass as many of each.")
    n_models, n_examples = unlearned.shape

    retrained_is_pos = _median(retrained) > _median(unlearned)
    pos = torch.where(retrained_is_pos[None, :], retrained, unlearned).T
    neg = torch.where(retrained_is_pos[None, :], unlearned, retrained).T

    table = _epsilon_table(n_models, float(delta), device)
    if chunk_size is None:
        budget = _CUDA_CHUNK_ELEMENTS if device.type == "cuda" else _CPU_CHUNK_ELEMENTS
        per_example = (_LEFT_GRID_SIZE + 2) * (2 * n_models + 2)  # rows x cells of the double family
        chunk_size = max(1, budget // per_example)
    workspace = _Workspace(device)
    epsilons = torch.cat([
        _epsilons_chunk(pos[i:i + chunk_size], neg[i:i + chunk_size], table, workspace)
        for i in range(0, n_examples, chunk_size)
    ])

    pos_range = pos.amax(dim=1) - pos.amin(dim=1)
    neg_range = neg.amax(dim=1) - neg.amin(dim=1)
    # 0 / 0 (both samples constant) is NaN, which is not below the ratio: such an example is scored.
    peaky = torch.minimum(pos_range, neg_range) / torch.maximum(pos_range, neg_range) < RANGE_RATIO_CAP
    epsilons = torch.where(peaky, EPSILON_CAP, epsilons.clamp(0.0, EPSILON_CAP))
    points = _points(epsilons, n_models)
    return ForgetQuality(
        score=float(points.mean()),
        epsilons=epsilons.cpu().numpy(),
        points=points.cpu().numpy(),
        n_models=n_models,
        delta=float(delta),
    )


def _mean_accuracy(values: ArrayLike | torch.Tensor, name: str) -> float:
    """Mean of a scalar or per-model accuracies after checking they are finite and in [0, 1]."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        raise DataError(f"neurips_score: {name} is empty; pass one accuracy per model or their mean.")
    if not np.all(np.isfinite(array)) or np.any(array < 0) or np.any(array > 1):
        raise DataError(f"neurips_score: {name} must be accuracies in [0, 1]; pass fractions, not percentages.")
    return float(array.mean())


def neurips_score(
    forget_quality: ForgetQuality | float,
    retain_acc_unlearned: ArrayLike | torch.Tensor,
    retain_acc_retrained: ArrayLike | torch.Tensor,
    test_acc_unlearned: ArrayLike | torch.Tensor,
    test_acc_retrained: ArrayLike | torch.Tensor,
) -> float:
    """The challenge's final score: ``F * (RA_u / RA_r) * (TA_u / TA_r)``.

    Accuracies are averaged over the N models first: ``RA_u`` is the mean retain accuracy of the
    unlearned models, ``RA_r`` that of the retrained ones, and ``TA`` likewise on the test set.

    Args:
        forget_quality: A :class:`ForgetQuality` or its score ``F`` in ``[0, 1]``.
        retain_acc_unlearned: Retain accuracy of the unlearned models: a fraction or one per model.
        retain_acc_retrained: Retain accuracy of the retrained models; its mean must be above 0.
        test_acc_unlearned: Test accuracy of the unlearned models.
        test_acc_retrained: Test accuracy of the retrained models; its mean must be above 0.

    Returns:
        The score; it can exceed ``F`` when the unlearned models are more accurate than the retrained.

    Raises:
        DataError: Accuracies empty, non-finite or outside ``[0, 1]``, or a retrained mean of 0.
        ConfigError: A forgetting score outside ``[0, 1]``.

    Example:
        >>> neurips_score(0.5, 0.75, 1.0, [0.5, 1.0], 0.75)  # 0.5 * (0.75 / 1) * (0.75 / 0.75)
        0.375
    """
    score = forget_quality.score if isinstance(forget_quality, ForgetQuality) else forget_quality
    if isinstance(score, bool) or not (isinstance(score, numbers.Real) and 0.0 <= score <= 1.0):
        raise ConfigError(f"neurips_score: the forgetting score must be in [0, 1], got {score!r}; pass "
                          "forget_quality(...) or its .score.")
    retain_u = _mean_accuracy(retain_acc_unlearned, "retain_acc_unlearned")
    retain_r = _mean_accuracy(retain_acc_retrained, "retain_acc_retrained")
    test_u = _mean_accuracy(test_acc_unlearned, "test_acc_unlearned")
    test_r = _mean_accuracy(test_acc_retrained, "test_acc_retrained")
    for name, value in (("retain_acc_retrained", retain_r), ("test_acc_retrained", test_r)):
        if value == 0.0:
            raise DataError(f"neurips_score: {name} averages to 0, so the ratio is undefined; check that the "
                            "retrained models were evaluated on the right data.")
    return float(score) * (retain_u / retain_r) * (test_u / test_r)
