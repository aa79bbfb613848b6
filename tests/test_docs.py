"""The docstrings: every public function and class has a numpydoc docstring
with an Examples section, and every example in the package runs and prints
what it shows.

The examples are run on the *imported* modules (whatever ``import fastconv``
finds: in CI the installed package, since the source tree beside the tests
holds no compiled extensions), so this works wherever the suite runs. The
same examples through pytest's own collector:
``pytest --doctest-modules --pyargs fastconv``.
"""
import doctest
import importlib
import inspect
import pkgutil
import re

import pytest

import fastconv
from fastconv import _choose, reference

def module_names():
    names = [m.name for m in pkgutil.iter_modules(fastconv.__path__, "fastconv.")]
    return ["fastconv"] + sorted(n for n in names if n != "fastconv.__main__")


def import_or_skip(name):
    """Import a fastconv module; skip when it needs an optional package (an
    extra such as dask) that is not installed, fail on anything else."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        missing = exc.name or getattr(exc.__cause__, "name", None)
        if missing and missing.split(".")[0] != "fastconv":
            pytest.skip(f"{name} needs {missing}, not installed")
        raise


@pytest.mark.parametrize("name", module_names())
def test_docstring_examples_run(name, capsys):
    module = import_or_skip(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    report = capsys.readouterr().out
    assert result.failed == 0, f"{result.failed} failing example(s) in {name}:\n{report}"


def public_objects():
    objs = [(f"fastconv.{n}", getattr(fastconv, n)) for n in fastconv.__all__]
    objs += [(f"fastconv.reference.{n}", getattr(reference, n)) for n in reference.__all__]
    objs.append(("fastconv._choose.Explanation", _choose.Explanation))  # explain()'s result
    for name in ("fastconv.dask", "fastconv.nn"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        objs += [(f"{name}.{n}", getattr(module, n)) for n in module.__all__]
    return objs


def section(doc, title):
    return re.search(rf"^\s*{title}\n\s*-{{{len(title)}}}\s*$", doc, re.M) is not None


@pytest.mark.parametrize("name, obj", public_objects(),
                         ids=lambda v: v if isinstance(v, str) else "")
def test_public_docstrings_are_complete(name, obj):
    doc = inspect.getdoc(obj) or ""
    assert doc, f"{name} has no docstring"
    assert section(doc, "Examples") and ">>>" in doc, f"{name}: no Examples section"
    if inspect.isclass(obj):
        assert section(doc, "Parameters") or section(doc, "Attributes"), name
        return
    if inspect.signature(obj).parameters:
        assert section(doc, "Parameters"), f"{name}: no Parameters section"
    if not name.rsplit(".", 1)[1].startswith("set_"):  # setters return None
        assert section(doc, "Returns"), f"{name}: no Returns section"


def test_a_wrong_example_fails(tmp_path, monkeypatch):
    """The runner above really catches a wrong example."""
    (tmp_path / "fc_wrong_example.py").write_text(
        'def f():\n    """\n    >>> import fastconv, numpy as np\n'
        '    >>> fastconv.max_pool2d(np.arange(4.0).reshape(1, 2, 2), 2)\n'
        '    array([[[4.]]])\n    """\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("fc_wrong_example")
    result = doctest.testmod(module, report=False)
    assert (result.attempted, result.failed) == (2, 1)
