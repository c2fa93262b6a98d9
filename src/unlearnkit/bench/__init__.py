"""Benchmarks: method comparisons (``compare``); grids, result store and reports come later."""

from unlearnkit.bench.compare import MEMORISING_DEFAULTS, Comparison, apply_compare_defaults, compare

__all__ = ["MEMORISING_DEFAULTS", "Comparison", "apply_compare_defaults", "compare"]
