"""Start-up: what a third-party import pulls in and ``nr`` never uses is loaded only when used.

Fabric is built on Invoke, and Paramiko imports Invoke too when it is installed (for ``Match exec``
in ssh_config). ``invoke/context.py`` starts with ``from unittest.mock import Mock``, for its
``MockContext``, a test helper; ``unittest.mock`` imports ``asyncio``. Together they are about a
fifth of what opening nr's first SSH connection costs in imports, for a class no run uses.

:func:`install` (called once by ``nr``'s entry point) puts a finder on ``sys.meta_path`` that only
acts on ``invoke.context``: while that module runs, ``unittest.mock`` is a stand-in whose ``Mock``
imports the real module when called (so ``MockContext`` still works, with real Mocks), and whose
other names load the real module at once. Afterwards the stand-in is gone from ``sys.modules``: a
later ``import unittest.mock`` gets the real one. If ``unittest.mock`` is already loaded, nothing is
changed.

Nornir's ``nornir.core.configuration`` imports ``ruamel.yaml`` (~15 ms) for ``Config.from_file``
(nr builds its Config in code). The finder gives it to ``importlib.util.LazyLoader``: it runs at its
first attribute access, so a caller that uses it gets the real thing, and a run that never does never
pays for it. Only for a module one thread at most uses: Python 3.11's LazyLoader is not thread-safe
(Invoke's vendored PyYAML is not deferred for that reason: with a ``~/.fabric.yaml``, every
connection thread parses it at once).
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
import types
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from importlib.abc import Loader

TARGET = "invoke.context"
DEFERRED = "unittest.mock"
LAZY = frozenset({"ruamel.yaml"})  # run at first use (importlib.util.LazyLoader)


def _real_mock() -> types.ModuleType:
    """The real ``unittest.mock``, in place of the stand-in if that is still in ``sys.modules``."""
    if isinstance(sys.modules.get(DEFERRED), _StandIn):
        sys.modules.pop(DEFERRED, None)  # (another thread may have just done it)
    return importlib.import_module(DEFERRED)


def _mock_on_call(*args: Any, **kwargs: Any) -> Any:
    return _real_mock().Mock(*args, **kwargs)


class _StandIn(types.ModuleType):
    """``unittest.mock`` while ``invoke.context`` loads: ``Mock`` deferred, anything else real."""

    def __init__(self) -> None:
        super().__init__(DEFERRED)
        self.Mock = _mock_on_call

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # the import system asks for __path__ (a package?): it is not one
            raise AttributeError(name)
        return getattr(_real_mock(), name)


class _Loader:
    """The real loader of ``invoke.context``, with the stand-in in place while it runs (duck-typed, as
    the import system takes loaders: ``importlib.abc`` alone costs more to import than it saves)."""

    def __init__(self, real: Loader) -> None:
        self.real = real

    def __getattr__(self, name: str) -> Any:  # get_source, get_filename, ...: the real loader's
        return getattr(self.real, name)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return self.real.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        stand_in = None if DEFERRED in sys.modules else _StandIn()
        if stand_in is not None:
            sys.modules[DEFERRED] = stand_in
        try:
            self.real.exec_module(module)
        finally:
            if stand_in is not None and sys.modules.get(DEFERRED) is stand_in:
                del sys.modules[DEFERRED]


class _Finder:
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != TARGET and fullname not in LAZY:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is None or spec.loader is None:
            return spec
        if fullname in LAZY:
            spec.loader = importlib.util.LazyLoader(spec.loader)
        else:
            spec.loader = cast("Loader", _Loader(spec.loader))
        return spec


def install() -> None:
    """Defer ``unittest.mock`` for ``invoke.context``, and the modules in :data:`LAZY`, from now on
    (once; harmless for what is loaded already)."""
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
