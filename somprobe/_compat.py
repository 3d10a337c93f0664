"""Import paths of somprobe 0.1 that keep working for one release, with a DeprecationWarning.

The 0.2 layout puts each pipeline stage in one package (``tagging``, ``measure``, ...);
the old module paths (``somprobe.marks``, ``somprobe.align``, ...) and the names that left
the top-level surface still resolve, each with a warning that names the new home.
:func:`install` (called by ``somprobe/__init__.py``) adds the module aliases to
``sys.meta_path``; nothing is imported until an old path is used.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import os
import sys
import types
import warnings
from collections.abc import Sequence
from typing import Any

#: old module → its new home (a prefix also maps its submodules: somprobe.regions.coco)
MOVED_MODULES: dict[str, str] = {
    "somprobe.marks": "somprobe.tagging",
    "somprobe.marks_draw": "somprobe.tagging.draw",
    "somprobe.rgb": "somprobe.tagging.rgb",
    "somprobe.tagset_io": "somprobe.tagging.io",
    "somprobe.regions": "somprobe.tagging.regions",
    "somprobe.tags": "somprobe.measure.mentions",
    "somprobe.align": "somprobe.measure.align",
    "somprobe.stats": "somprobe.measure.stats",
    "somprobe.plots": "somprobe.measure.plots",
    "somprobe.capture.adapters": "somprobe.models.adapters",
}

#: names of the 0.1 top-level surface that now live only in a stage package
_OLD_SURFACE_WORDS = """CaptureError CaptureResult DataFormatError ImageLayout InputError LayoutError
    ModelLoadError ProbeDataset ProbeError ProbeResult QueryRecord Region Tag
    TagMentionError TaggedImage UnsupportedModelError aggregate_by_head build_prompt
    compare_probes from_coco from_label_image from_masks from_sam from_superpixels
    load_tagset prepare_inputs probe_layers save_tagset"""
OLD_SURFACE: frozenset[str] = frozenset(_OLD_SURFACE_WORDS.split())
#: where a name of :data:`OLD_SURFACE` is looked up, in order
HOMES = (
    "somprobe.errors",
    "somprobe.models",
    "somprobe.tagging",
    "somprobe.capture",
    "somprobe.measure",
    "somprobe.probes",
)


def home_of(name: str) -> str | None:
    """The stage package that now exports ``name`` of the old surface, or None."""
    if name not in OLD_SURFACE:
        return None
    return next(h for h in HOMES if hasattr(importlib.import_module(h), name))


def new_module_name(old: str) -> str | None:
    """The new home of an old module path, or None when ``old`` did not move."""
    for prefix, target in MOVED_MODULES.items():
        if old == prefix or old.startswith(prefix + "."):
            return target + old[len(prefix) :]
    return None


_OWN_FILES = (__file__, os.path.join(os.path.dirname(__file__), "__init__.py"))


def _warn(message: str) -> None:
    """Warn at the first frame outside somprobe's own shims and the import machinery: the
    line of user code that used the old path. (``warnings`` itself skips the import
    machinery's frames when it counts ``stacklevel``, so only our own frames count.)"""
    frame, level = sys._getframe(1), 2  # level: the stacklevel that names ``frame``
    while frame is not None:
        name = frame.f_code.co_filename
        if name in _OWN_FILES:
            level += 1
        elif not ("importlib" in name and "_bootstrap" in name):
            break
        frame = frame.f_back  # type: ignore[assignment]
    warnings.warn(message, DeprecationWarning, stacklevel=level)


class _Alias(types.ModuleType):
    """An old module path: every attribute read goes to the module at the new path."""

    __target__: str

    def __getattr__(self, name: str) -> Any:
        return getattr(importlib.import_module(self.__target__), name)

    def __dir__(self) -> list[str]:
        return dir(importlib.import_module(self.__target__))


class _MovedFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds the old module paths and loads each as an :class:`_Alias` of its new home."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if new_module_name(fullname) is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, self, is_package=True)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        alias = _Alias(spec.name)
        alias.__target__ = new_module_name(spec.name) or ""
        alias.__path__ = []  # so that old submodule paths are looked up (through this finder)
        return alias

    def exec_module(self, module: types.ModuleType) -> None:
        target = module.__target__  # type: ignore[attr-defined]
        importlib.import_module(target)  # an error in the new module surfaces here
        _warn(f"{module.__name__} moved to {target} in somprobe 0.2; import it from there")


def install() -> None:
    """Make the old module paths importable (idempotent)."""
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        sys.meta_path.append(_MovedFinder())


def moved_name(name: str) -> Any:
    """A name of the old top-level surface, from its new home, with a warning."""
    home = home_of(name)
    if home is None:
        raise AttributeError(f"module 'somprobe' has no attribute {name!r}")
    _warn(f"somprobe.{name} moved to {home}.{name} in somprobe 0.2; import it from there")
    return getattr(importlib.import_module(home), name)
