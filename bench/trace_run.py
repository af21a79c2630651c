"""Run `nr` in this process with every remote command timed (for bench/site's breakdown).

    python bench/trace_run.py NR-ARGS...   (from a checkout's directory)

Prints the usual output, then on stderr one line ``@@TRACE@@ {json}``: when the process started,
when the first SSH connection began to open, and each remote command (host, start, end). It wraps
the transport only: nothing of nr changes.
"""

from __future__ import annotations

import json
import sys
import threading
import time

T0 = time.perf_counter()
EVENTS: list[dict[str, object]] = []
LOCK = threading.Lock()


def _wrap() -> None:
    import nr.connection as conn

    original_exec = conn.SshRemote._exec
    original_open = conn.FabricConnection.open

    def _exec(self, command, script, timeout, *, prefix=""):  # type: ignore[no-untyped-def]
        t = time.perf_counter() - T0
        try:
            return original_exec(self, command, script, timeout, prefix=prefix)
        finally:
            with LOCK:
                EVENTS.append({"host": self.name, "start": t, "end": time.perf_counter() - T0})

    def _open(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        with LOCK:
            EVENTS.append({"open": time.perf_counter() - T0})
        return original_open(self, *args, **kwargs)

    conn.SshRemote._exec = _exec  # type: ignore[method-assign]
    conn.FabricConnection.open = _open  # type: ignore[method-assign]


class _AfterImport:
    """Wraps nr.connection when the run first imports it (not before: that would move its import)."""

    def find_spec(self, fullname: str, path: object, target: object = None) -> object:
        if fullname != "nr.connection":
            return None
        import importlib.machinery

        spec = importlib.machinery.PathFinder.find_spec(fullname, path)  # type: ignore[arg-type]
        if spec is None or spec.loader is None:
            return None
        run_module = spec.loader.exec_module

        def exec_module(module: object) -> None:
            run_module(module)  # type: ignore[arg-type]
            sys.modules["nr.connection"] = module  # type: ignore[assignment]
            _wrap()

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def main() -> None:
    sys.meta_path.insert(0, _AfterImport())  # type: ignore[arg-type]
    from nr.launch import main as nr_main

    sys.argv = ["nr", *sys.argv[1:]]
    code: object = 0
    try:
        nr_main()
    except SystemExit as exc:
        code = exc.code
    finally:
        opens = [e["open"] for e in EVENTS if "open" in e]
        commands = [e for e in EVENTS if "host" in e]
        doc = {
            "total": time.perf_counter() - T0,
            "first_open": min(opens, default=None),
            "commands": commands,
        }
        print("@@TRACE@@ " + json.dumps(doc), file=sys.stderr)
    sys.exit(code)  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
