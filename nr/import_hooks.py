"""Start-up: what a third-party import pulls in and ``nr`` never uses is loaded only when used.

Fabric is built on Invoke, and Paramiko imports Invoke too when it is installed (for ``Match exec``
in ssh_config). ``invoke/context.py`` starts with ``from unittest.mock import Mock``, for its
``MockContext``, a test helper; ``unittest.mock`` imports ``asyncio``. Together they are about a
fifth of what opening nr's first SSH connection costs in imports, for a class no run uses.

:func:`install` (called once by ``nr``'s entry point) puts a finder on ``sys.meta_path`` that only
acts on the modules of :data:`STAND_INS` and :data:`LAZY`. While ``invoke.context`` runs,
``unittest.mock`` is a stand-in whose ``Mock`` imports the real module when called (so
``MockContext`` still works, with real Mocks), and whose other names load the real module at once.
Afterwards the stand-in is gone from ``sys.modules`` (a later ``import unittest.mock`` gets the real
one); as the package's attribute it stays, forwarding, until the real module replaces it. If
``unittest.mock`` is already loaded, nothing is changed. The same holds for every stand-in below.

Paramiko's and Nornir's ``__init__`` look up their own version with ``importlib.metadata.version``
at import; that module and what it loads (``email``, ``zipfile``, ``importlib.resources``) cost
25-45 ms, and nothing else on the way of a run loads it. While they load, ``importlib.metadata`` is
a stand-in whose ``version`` reads the ``Version:`` header of the distribution's ``METADATA``
(:mod:`nr.dist_info`, the folder ``importlib.metadata`` would find) and falls back to the real one;
any other name loads the real module.

Invoke's ``invoke.util`` imports its vendored PyYAML (which loads the installed PyYAML's C
extension, and with it the whole ``yaml`` package: 20-45 ms) for config files
(``~/.fabric.yaml``, ``/etc/fabric.yaml``) that most machines do not have: it gets a stand-in with
no names of its own, so the real module loads at the first ``yaml.safe_load``. Unlike
``LazyLoader``, the stand-in is thread-safe: every thread that reaches it imports through
``importlib.import_module``, whose module lock lets one thread run the module and the others wait
for it (with a ``~/.fabric.yaml``, every connection thread parses it at once).

Paramiko's ``paramiko.agent`` imports ``tempfile`` (with ``shutil``, ``bz2``, ``lzma``: 4-8 ms) to
make a folder when it forwards an agent, which nr never asks for: a stand-in too.

gRPC's ``grpc/__init__`` imports ``grpc.aio``, and its Cython extension ``grpc._cython.cygrpc`` imports
``asyncio`` (with ``ssl`` and the event loop: 40-60 ms together, a third of loading gRPC and the
stubs) for gRPC's asyncio API. ``nr drift``, ``nr status`` and the checks call the blocking API: both
are stand-ins with no names of their own, so their first use loads them. The extension keeps the
stand-in as its ``asyncio`` global, forwarding to the real module once loaded (a stand-in is in
place while an extension module is created too, where one with single-phase init runs its body).

Nornir's ``nornir.core.configuration`` imports ``ruamel.yaml`` (~15 ms) for ``Config.from_file``
(nr builds its Config in code) and ``logging.handlers`` (with ``pickle`` and ``queue``: 3-6 ms) for
the log file nr turns off. The finder gives them to ``importlib.util.LazyLoader``: each runs at its
first attribute access, so a caller that uses it gets the real thing, and a run that never does never
pays for it (a stand-in would not do: ``import ruamel.yaml`` reaches it as an attribute of the
``ruamel`` package). Only for modules one thread at most uses: Python 3.11's LazyLoader is not
thread-safe.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.machinery
import importlib.util
import sys
import types
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, cast

from nr import dist_info

if TYPE_CHECKING:
    from importlib.abc import Loader

LAZY = frozenset({"ruamel.yaml", "logging.handlers"})  # run at first use (importlib.util.LazyLoader)
MOCK = "unittest.mock"
METADATA = "importlib.metadata"


def _real(name: str) -> types.ModuleType:
    """The real module ``name``, in place of a stand-in if one is still in ``sys.modules``."""
    if isinstance(sys.modules.get(name), _StandIn):
        sys.modules.pop(name, None)  # (another thread may have just done it)
    return importlib.import_module(name)


def _mock_on_call(*args: Any, **kwargs: Any) -> Any:
    return _real(MOCK).Mock(*args, **kwargs)


def _version(distribution_name: str) -> str:
    """``importlib.metadata.version``, read from the ``.dist-info`` when it is a plain folder."""
    found = dist_info.version(distribution_name)
    return found if found is not None else str(_real(METADATA).version(distribution_name))


class _StandIn(types.ModuleType):
    """A module while one third-party module loads: the names in ``own`` are nr's, anything else is
    the real module's (loaded at that first use)."""

    def __init__(self, name: str, own: dict[str, Any]) -> None:
        super().__init__(name)
        self.__dict__.update(own)

    def __getattr__(self, name: str) -> Any:
        if name == "__path__":  # the import system asks (a package?): it is not one
            raise AttributeError(name)
        return getattr(_real(self.__name__), name)


def _put(stand_in: _StandIn) -> None:
    """``stand_in`` in ``sys.modules``, and as its package's attribute when the package has none, so
    that another thread's ``import importlib.metadata`` then ``importlib.metadata.version`` works
    too. The attribute stays after the load: it forwards, until the real module's import replaces it."""
    sys.modules[stand_in.__name__] = stand_in
    package, _, child = stand_in.__name__.rpartition(".")
    parent = sys.modules.get(package) if package else None
    if parent is not None and not hasattr(parent, child):
        setattr(parent, child, stand_in)


# module being loaded -> (module it imports, what nr answers in its place while it loads)
STAND_INS: dict[str, tuple[str, dict[str, Any]]] = {
    "invoke.context": (MOCK, {"Mock": _mock_on_call}),
    "paramiko": (METADATA, {"version": _version}),
    "nornir": (METADATA, {"version": _version}),
    "invoke.util": ("invoke.vendor.yaml", {}),
    "paramiko.agent": ("tempfile", {}),  # for agent forwarding's temporary socket folder only
    "grpc": ("grpc.aio", {}),  # gRPC's asyncio API: nr's probes and checks use the blocking one
    "grpc._cython.cygrpc": ("asyncio", {}),  # for the asyncio API too
}


class _Loader:
    """The real loader of a module in :data:`STAND_INS`, with the stand-in in place while it runs
    (duck-typed, as the import system takes loaders: ``importlib.abc`` alone costs more to import
    than it saves)."""

    def __init__(self, real: Loader, deferred: str, own: dict[str, Any]) -> None:
        self.real = real
        self.deferred = deferred
        self.own = own

    def __getattr__(self, name: str) -> Any:  # get_source, get_filename, ...: the real loader's
        return getattr(self.real, name)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        with self._standing_in():  # an extension module with single-phase init runs here
            return self.real.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        with self._standing_in():
            self.real.exec_module(module)

    @contextlib.contextmanager
    def _standing_in(self) -> Iterator[None]:
        stand_in = None if self.deferred in sys.modules else _StandIn(self.deferred, self.own)
        if stand_in is not None:
            _put(stand_in)
        try:
            yield
        finally:
            if stand_in is not None and sys.modules.get(self.deferred) is stand_in:
                del sys.modules[self.deferred]


class _Finder:
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in STAND_INS and fullname not in LAZY:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is None or spec.loader is None:
            return spec
        if fullname in LAZY:
            spec.loader = importlib.util.LazyLoader(spec.loader)
        else:
            spec.loader = cast("Loader", _Loader(spec.loader, *STAND_INS[fullname]))
        return spec


def install() -> None:
    """The stand-ins of :data:`STAND_INS` and the modules in :data:`LAZY`, from now on (once; harmless
    for what is loaded already)."""
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
