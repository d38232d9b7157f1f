"""The package's own surface: the entry points re-exported in pipeline order, a light import."""

from __future__ import annotations

import importlib
import subprocess
import sys

import vitalmatch


def test_every_entry_point_resolves_to_its_stage_module():
    for name, module in vitalmatch._EXPORTS.items():
        value = getattr(vitalmatch, name)
        assert value is getattr(importlib.import_module(module), name), name
        assert value.__module__.startswith(module), (name, value.__module__)
    assert sorted(vitalmatch.__all__) == sorted(["__version__", *vitalmatch._EXPORTS]) == dir(vitalmatch)


def test_import_is_light_and_unknown_names_fail():
    code = "import sys, vitalmatch; print(sorted(m for m in ('torch', 'vita', 'h5py') if m in sys.modules))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr
    try:
        vitalmatch.no_such_stage  # noqa: B018
    except AttributeError as e:
        assert "no_such_stage" in str(e)
    else:
        raise AssertionError("an unknown attribute resolved")


def test_py_typed_is_shipped():
    from importlib.resources import files

    assert files("vitalmatch").joinpath("py.typed").is_file()
