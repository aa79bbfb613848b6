"""Types: ``mypy fastconv`` (and ``examples`` when present) passes with the
configuration in pyproject.toml, and the ``.pyi`` stubs beside the compiled
modules match what those modules define (mypy's stubtest).

Skipped without mypy (it is in the ``test`` extra).
"""
import importlib.machinery
import pathlib
import subprocess
import sys

import pytest

import fastconv

pytest.importorskip("mypy")

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = pathlib.Path(fastconv.__file__).resolve().parent  # the imported (installed) one


def compiled_modules():
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    return sorted({p.name.split(".")[0] for p in PACKAGE.iterdir() if p.name.endswith(suffixes)})


def test_mypy_passes():
    if not (ROOT / "fastconv" / "__init__.py").is_file():
        pytest.skip("needs the source tree")
    targets = ["fastconv"] + [d for d in ("examples",) if (ROOT / d).is_dir()]
    out = subprocess.run([sys.executable, "-m", "mypy", *targets], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_compiled_module_has_a_stub():
    modules = compiled_modules()
    assert modules, f"no compiled modules in {PACKAGE}"
    assert [m for m in modules if not (PACKAGE / f"{m}.pyi").is_file()] == []
    assert (PACKAGE / "py.typed").is_file()


def test_stubs_match_compiled_modules(tmp_path):
    # Cython adds a __test__ dict (its docstring tests) to every module
    allowlist = tmp_path / "allowlist.txt"
    allowlist.write_text("fastconv\\.\\w+\\.__test__\n")
    modules = [f"fastconv.{m}" for m in compiled_modules()]
    out = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "--allowlist", str(allowlist),
         "--ignore-unused-allowlist", *modules],
        cwd=tmp_path, capture_output=True, text=True)  # away from the source tree
    assert out.returncode == 0, out.stdout + out.stderr
