"""Run every ``>>>`` example in the package's docstrings, one test per docstring, as part of ``make test``.

Modules are found by walking ``unlearnkit``; ``unlearnkit.cli.__main__`` is left out because importing it runs
the CLI. A module that cannot be imported because an optional dependency (ray, optuna, pandas, pyarrow) is
missing has its examples skipped, not failed. A last test counts the ``>>>`` lines in the source files and
checks that the runner found every one, so an example the finder cannot reach (a nested function, a docstring
of an object imported from elsewhere) or one marked ``+SKIP`` fails instead of silently never running.

Run: OMP_NUM_THREADS=1 .venv/bin/python -m pytest tests/test_doctests.py -q
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import unlearnkit

PACKAGE_DIR = Path(unlearnkit.__file__).resolve().parent
# Importing it runs ``main()``: the ``python -m unlearnkit.cli`` entry point.
NOT_IMPORTED = {"unlearnkit.cli.__main__"}
OPTIONAL_DEPENDENCIES = {"ray", "optuna", "pandas", "pyarrow"}
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _module_names() -> list[str]:
    names = [unlearnkit.__name__]
    names += [info.name for info in pkgutil.walk_packages(unlearnkit.__path__, prefix="unlearnkit.")]
    return sorted(name for name in names if name not in NOT_IMPORTED)


def _collect() -> tuple[list, list[str]]:
    """One pytest param per docstring with examples, and the names of modules skipped for a missing extra."""
    finder = doctest.DocTestFinder(exclude_empty=True)
    params, skipped = [], []
    for name in _module_names():
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if (exc.name or "").split(".")[0] not in OPTIONAL_DEPENDENCIES:
                raise
            skipped.append(name)
            params.append(pytest.param(None, id=name, marks=pytest.mark.skip(reason=f"needs {exc.name}")))
            continue
        params += [pytest.param(test, id=test.name) for test in finder.find(module, name) if test.examples]
    return params, skipped


DOCTESTS, SKIPPED_MODULES = _collect()


@pytest.mark.parametrize("test", DOCTESTS)
def test_docstring_examples_run(test: doctest.DocTest):
    report: list[str] = []
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    result = runner.run(test, out=report.append, clear_globs=True)
    assert result.failed == 0, "".join(report)
    assert result.attempted == len(test.examples), (
        f"{test.name}: {len(test.examples) - result.attempted} example(s) marked +SKIP never run; make them "
        "runnable (small data, a temporary folder) or show the code as a literal block (::) instead")


def test_every_example_in_the_sources_is_collected():
    in_sources = 0
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        module = ".".join(("unlearnkit", *path.relative_to(PACKAGE_DIR).with_suffix("").parts))
        module = module.removesuffix(".__init__")
        if module in NOT_IMPORTED or module in SKIPPED_MODULES:
            continue
        in_sources += len(re.findall(r"^\s*>>>", path.read_text(encoding="utf-8"), flags=re.MULTILINE))
    collected = sum(len(p.values[0].examples) for p in DOCTESTS if p.values[0] is not None)
    assert in_sources > 0
    assert collected == in_sources, (
        f"{in_sources} '>>>' lines in src/unlearnkit but {collected} examples collected: some docstring is out of "
        "the doctest finder's reach (a nested function, or an object whose __module__ is another module)")
