"""The API reference lists every public name; docstrings document every parameter.

``docs/api/index.rst`` must name each public object of the package, and the
numpydoc ``Parameters`` section of every public function, class and method
must list exactly the parameters of its signature. Runs without the ``docs``
extra: the numpydoc parser comes from numpydoc when it is installed, else from
the copy scikit-learn ships; numpydoc's own validation adds a cross-check
when it is installed.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import pytest

import skdiffmic

try:
    from numpydoc.docscrape import NumpyDocString
except ImportError:  # the docs extra is not installed
    from sklearn.externals._numpydoc.docscrape import NumpyDocString

API_INDEX = Path(__file__).resolve().parents[1] / "docs" / "api" / "index.rst"
PUBLIC_MODULES = (
    "skdiffmic",
    "skdiffmic.baselines",
    "skdiffmic.cli",
    "skdiffmic.datasets",
    "skdiffmic.export",
    "skdiffmic.metrics",
    "skdiffmic.model_selection",
    "skdiffmic.parallel",
    "skdiffmic.plotting",
    "skdiffmic.presets",
    "skdiffmic.weights",
)


def public_objects() -> dict[str, object]:
    """``{"module.name": object}`` for every name in a public ``__all__``."""
    objects = {}
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            if name != "__version__":
                objects[f"{module_name}.{name}"] = getattr(module, name)
    return objects


def reference_entries(text: str) -> dict[str, str | None]:
    """Objects the API reference documents: ``{"module.name": value or None}``.

    Reads the entries of ``autosummary`` blocks and the targets of ``auto*``
    and ``py:*`` object directives, qualified with the current module
    (``currentmodule`` / ``automodule``). The value is the ``:value:`` option
    of a ``py:data`` directive.
    """
    entries: dict[str, str | None] = {}
    module = None
    in_autosummary = False
    last = None
    for line in text.splitlines():
        directive = re.match(r"^\.\. ([\w:]+):: *(\S*)", line)
        if directive:
            kind, target = directive.groups()
            in_autosummary = kind == "autosummary"
            if kind in ("currentmodule", "automodule"):
                module = target
            elif kind.startswith(("auto", "py:")) and target:
                last = target if "." in target else f"{module}.{target}"
                entries[last] = None
            continue
        value = re.match(r"^\s+:value: (.+)$", line)
        if value and last is not None:
            entries[last] = value.group(1)
            continue
        if in_autosummary:
            item = re.match(r"^\s+~?([\w.]+)\s*$", line)
            if item:
                name = item.group(1)
                entries[name if "." in name else f"{module}.{name}"] = None
            elif line.strip() and not line.startswith(" "):
                in_autosummary = False
    return entries


def test_every_public_module_is_covered():
    found = {
        f"skdiffmic.{m.name}"
        for m in pkgutil.iter_modules(skdiffmic.__path__)
        if not m.name.startswith("_")
    }
    assert found <= set(PUBLIC_MODULES)


def test_api_reference_lists_every_public_name():
    entries = reference_entries(API_INDEX.read_text(encoding="utf-8"))
    missing = sorted(set(public_objects()) - set(entries))
    assert not missing, f"not in {API_INDEX.name}: {missing}"


def test_api_reference_values_of_constants_are_current():
    entries = reference_entries(API_INDEX.read_text(encoding="utf-8"))
    objects = public_objects()
    constants = {name: value for name, value in entries.items() if value is not None}
    assert constants, "the reference should give the constants' values"
    for name, value in constants.items():
        assert ast.literal_eval(value) == objects[name], name


def test_reference_parser_reads_modules_and_entries():
    text = (
        ".. currentmodule:: pkg\n\n.. autosummary::\n   :toctree: generated/\n\n"
        "   Estimator\n   ~pkg.sub.function\n\nProse.\n\n   not_an_entry\n\n"
        ".. automodule:: pkg.data\n\n.. py:data:: NAMES\n   :value: ('a', 'b')\n"
    )
    assert reference_entries(text) == {
        "pkg.Estimator": None,
        "pkg.sub.function": None,
        "pkg.data.NAMES": "('a', 'b')",
    }


# -------------------------------------------------------------- parameters --
def _own_methods(cls) -> dict[str, object]:
    """Public methods that skdiffmic's classes define (not scikit-learn's)."""
    methods = {}
    for klass in reversed(cls.__mro__):
        if not klass.__module__.startswith("skdiffmic"):
            continue
        for name, attribute in vars(klass).items():
            if name.startswith("_"):
                continue
            function = getattr(attribute, "__func__", attribute)
            if inspect.isfunction(function):
                methods[name] = getattr(cls, name)
    return methods


def documented_callables() -> dict[str, object]:
    """Every public function and class, and the public methods of the classes."""
    found = {}
    for name, obj in public_objects().items():
        if inspect.isclass(obj):
            found[name] = obj
            for method, member in _own_methods(obj).items():
                found[f"{name}.{method}"] = member
        elif callable(obj):
            found[name] = obj
    return found


def parameter_problems(obj) -> list[str]:
    """Differences between a signature and the docstring's Parameters section."""
    signature = inspect.signature(obj)
    expected = []
    for parameter in signature.parameters.values():
        if parameter.name in ("self", "cls"):
            continue
        prefix = {
            inspect.Parameter.VAR_POSITIONAL: "*",
            inspect.Parameter.VAR_KEYWORD: "**",
        }.get(parameter.kind, "")
        expected.append(prefix + parameter.name)
    doc = inspect.getdoc(obj) or ""
    documented = []
    for entry in NumpyDocString(doc)["Parameters"]:
        documented += [name.strip() for name in entry.name.split(",")]
    problems = [
        f"{name} is not documented" for name in expected if name not in documented
    ]
    problems += [
        f"{name} is documented but not a parameter"
        for name in documented
        if name not in expected
    ]
    return problems


CALLABLES = documented_callables()


def test_the_public_methods_are_found():
    for method in (
        "fit",
        "predict",
        "predict_proba",
        "sample_proba",
        "explain",
        "save",
        "load",
    ):
        assert f"skdiffmic.DiffMICClassifier.{method}" in CALLABLES
    for method in ("fit", "predict", "predict_proba"):
        assert f"skdiffmic.baselines.TimmClassifier.{method}" in CALLABLES
    # scikit-learn's generated metadata-routing methods are not ours to document
    assert "skdiffmic.DiffMICClassifier.set_score_request" not in CALLABLES


@pytest.mark.parametrize("name", sorted(CALLABLES))
def test_parameters_are_documented(name):
    assert parameter_problems(CALLABLES[name]) == []


@pytest.mark.parametrize("name", sorted(CALLABLES))
def test_numpydoc_validation_of_parameters(name):
    validate = pytest.importorskip("numpydoc.validate").validate
    codes = {"PR01", "PR02", "PR03", "PR10", "GL08"}  # missing, unknown, order, ...
    errors = [(code, message) for code, message in validate(name)["errors"]]
    assert [e for e in errors if e[0] in codes] == []


def test_parameter_check_can_fail():
    def documented_badly(alpha, beta=1, *args, gamma, **kwargs):
        """Summary.

        Parameters
        ----------
        alpha : int
            First.
        delta : int
            Not a parameter.
        *args : tuple
            Extra.
        """

    assert sorted(parameter_problems(documented_badly)) == [
        "**kwargs is not documented",
        "beta is not documented",
        "delta is documented but not a parameter",
        "gamma is not documented",
    ]

    class Estimator:
        """Summary.

        Parameters
        ----------
        a, b : float
            Both.
        """

        def __init__(self, a=1.0, b=2.0, c=3.0):
            pass

    assert parameter_problems(Estimator) == ["c is not documented"]
