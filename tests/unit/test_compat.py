"""The 0.1 import paths still work, each with a DeprecationWarning that names the new home
and points at the line that used the old path."""

from __future__ import annotations

import importlib
import sys
import types

import pytest

import somprobe
from somprobe import _compat


def _forget(name: str) -> None:
    for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
        del sys.modules[key]


@pytest.mark.parametrize(("old", "new"), sorted(_compat.MOVED_MODULES.items()))
def test_old_module_paths_resolve_with_a_warning(old: str, new: str) -> None:
    _forget(old)
    with pytest.warns(DeprecationWarning, match=f"{old} moved to {new}"):
        module = importlib.import_module(old)
    target = importlib.import_module(new)
    public = [n for n in dir(target) if not n.startswith("__")]
    assert public and all(getattr(module, n) is getattr(target, n) for n in public)


def test_the_warning_points_at_the_importing_line() -> None:
    _forget("somprobe.marks")
    with pytest.warns(DeprecationWarning) as record:
        from somprobe.marks import Tag, tag_regions  # noqa: F401
    assert record[0].filename == __file__
    from somprobe.tagging import Tag as NewTag

    assert Tag is NewTag


def test_old_submodule_paths_resolve() -> None:
    _forget("somprobe.regions")
    with pytest.warns(DeprecationWarning) as record:
        from somprobe.regions.coco import from_coco
    from somprobe.tagging.regions.coco import from_coco as new

    assert from_coco is new
    moved = sorted(str(w.message).split(" moved")[0] for w in record)
    assert moved == ["somprobe.regions", "somprobe.regions.coco"]


@pytest.mark.parametrize("name", sorted(_compat.OLD_SURFACE))
def test_old_top_level_names_resolve_with_a_warning(name: str) -> None:
    home = _compat.home_of(name)
    assert home is not None and home in _compat.HOMES
    assert name in importlib.import_module(home).__all__  # a public name of its new home
    with pytest.warns(DeprecationWarning, match=f"somprobe.{name} moved to {home}.{name}") as rec:
        value = getattr(somprobe, name)
    assert value is getattr(importlib.import_module(home), name)
    assert rec[0].filename == __file__


def test_unknown_names_and_modules_still_fail() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        somprobe.nothing_here  # noqa: B018
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("somprobe.no_such_module")


def test_capture_is_the_package_and_its_modules_import() -> None:
    import somprobe.capture.recorder

    assert isinstance(somprobe.capture, types.ModuleType)
    assert somprobe.capture.recorder.Recorder is somprobe.Recorder
    assert callable(somprobe.capture.capture)
