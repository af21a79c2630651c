"""What a command imports at start: only what it uses (issue 12, item 1).

Each case runs a fresh interpreter (imports are process-wide) and lists the heavy libraries that got
imported. Lazy loading must not change behaviour: the commands still print what they printed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("paramiko", "fabric", "invoke", "rich", "grpc", "redis", "nornir", "yaml", "ruamel", "cryptography")


def run_python(code: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``code`` (dedented) in a fresh interpreter started in the repository (``sys.argv[1:]`` = ``args``)."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
        timeout=60,
        env=env,
    )


def imported_after(code: str, *args: str) -> tuple[set[str], subprocess.CompletedProcess[str]]:
    """Run ``code`` in a fresh interpreter (``sys.argv[1:]`` = ``args``); the heavy top-level
    packages it imported, and the process (its stdout is what the code printed before the marker)."""
    body = textwrap.indent(textwrap.dedent(code).strip(), "    ")  # one line or a block
    probe = "\n".join(
        [
            "import sys",
            "try:",
            body,
            "except SystemExit:",
            "    pass",
            "finally:",
            f"    heavy = {HEAVY!r}",
            '    print("\\n@@MODULES@@" + " ".join(sorted({m.split(".")[0] for m in sys.modules} & set(heavy))))',
        ]
    )
    proc = run_python(probe, *args)
    out, _, mods = proc.stdout.rpartition("@@MODULES@@")
    proc.stdout = out
    return set(mods.split()), proc


def test_importing_the_cli_imports_no_heavy_library() -> None:
    mods, proc = imported_after("import nr.cli")
    assert proc.returncode == 0, proc.stderr
    assert mods == set()


def test_help_lists_the_catalog_without_heavy_libraries() -> None:
    mods, proc = imported_after("from nr.cli import main; sys.argv = ['nr', '--help']; main()")
    assert "Plays" in proc.stdout and "site" in proc.stdout and "base" in proc.stdout, proc.stdout
    assert mods == set()


@pytest.mark.parametrize("command", ["run", "check", "drift", "inventory"])
def test_a_command_help_imports_no_heavy_library(command: str) -> None:
    mods, proc = imported_after(f"from nr.cli import main; sys.argv = ['nr', '{command}', '--help']; main()")
    assert "--inventory" in proc.stdout, proc.stdout
    assert mods == set()


def in_cache(folder: Path, code: str) -> str:
    return f"import os; os.environ['XDG_CACHE_HOME'] = {str(folder)!r}; {code}"


def test_inventory_json_reads_the_files_with_nothing_but_yaml_then_from_the_parse_cache(
    tmp_path: Path,
) -> None:
    code = in_cache(
        tmp_path,
        "from nr.cli import main; sys.argv = ['nr', 'inventory', '--json', '-i', 'inventory']; main()",
    )
    mods, proc = imported_after(code)
    doc = json.loads(proc.stdout)
    assert [h["name"] for h in doc["hosts"]] == ["vm1", "vm2", "vm3"]
    assert mods == {"yaml"}
    mods, again = imported_after(code)  # the same files: parsed before, no YAML parser loaded
    assert again.stdout == proc.stdout and mods == set()


def test_inventory_prints_its_table_without_rich_to_a_pipe_and_with_rich_for_colours(tmp_path: Path) -> None:
    code = in_cache(
        tmp_path, "from nr.cli import main; sys.argv = ['nr', 'inventory', '-i', 'inventory']; main()"
    )
    mods, proc = imported_after(code)
    assert "│ vm1 " in proc.stdout and "192.168.64.11:22" in proc.stdout, proc.stdout
    assert mods == {"yaml"}
    colours = "import os; os.environ['FORCE_COLOR'] = '1'; " + code
    mods, proc = imported_after(colours)
    assert "vm1" in proc.stdout and "\x1b[" in proc.stdout, proc.stdout
    assert mods == {"rich"}


def test_a_run_summary_and_a_drift_report_print_to_a_pipe_without_rich() -> None:
    code = """
        from nr.console import lazy_console
        from nr.drift import print_drift
        from nr.report import DriftItem, RunReport
        report = RunReport('base')
        report.drift.append(DriftItem('base', 'vm1', 'file /x', 'present', 'absent', 'nr run base -l vm1'))
        out = lazy_console(highlight=False, soft_wrap=True)
        report.print_summary(out)
        print_drift(report, out)
    """
    mods, proc = imported_after(code)
    assert proc.returncode == 0, proc.stderr
    assert "rich" not in mods
    assert "│ base      │ vm1  │ file /x │ present  │ absent │ nr run base -l vm1 │" in proc.stdout, (
        proc.stdout
    )
    assert "Drift: 1 difference(s)" in proc.stdout


def test_a_bad_inventory_is_still_refused_with_exit_2(tmp_path: Path) -> None:
    (tmp_path / "hosts.yaml").write_text("vm1: {hostname: 10.0.0.1, colour: red}\n")
    code = f"import sys; from nr.cli import main; sys.argv = ['nr', 'inventory', '-i', {str(tmp_path)!r}]; main()"
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=False, timeout=60
    )
    assert proc.returncode == 2
    assert "colour" in proc.stderr and "error:" in proc.stderr


def test_the_help_nr_shows_of_lazy_commands_is_their_own() -> None:
    import click

    from nr.cli import cli
    from nr.cli_group import NrGroup

    ctx = click.Context(cli)
    for name, text in NrGroup.HELP.items():
        cmd = cli.get_command(ctx, name)
        assert cmd is not None
        for limit in (40, 45, 60, 200):
            assert click.Command(name, help=text).get_short_help_str(limit) == cmd.get_short_help_str(
                limit
            ), name


def test_at_exit_the_collector_skips_what_is_left() -> None:
    """The final collection at interpreter exit is skipped for what nr leaves (gc.freeze at exit: about
    85 ms at the end of a whole-site run, bench/README.md); the output is still all there."""
    code = """
    import atexit, gc, sys
    from nr.cli import main
    sys.argv = ['nr', 'inventory', '--json', '-i', 'inventory']
    atexit.register(lambda: print("frozen at exit:", gc.get_freeze_count() > 0))
    main()
    """
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr
    out, _, last = proc.stdout.rstrip("\n").rpartition("\n")
    assert json.loads(out)["hosts"] and last == "frozen at exit: True"


def test_nr_loads_invoke_without_its_test_helper_s_unittest_mock() -> None:
    """Invoke's MockContext needs unittest.mock (and so asyncio): nr defers them until a Mock is made."""
    code = """
        import contextlib
        from nr.cli import main
        sys.argv = ['nr', '--version']
        with contextlib.suppress(SystemExit):
            main()
        import nr.connection
        print('deferred:', 'unittest.mock' in sys.modules, 'asyncio' in sys.modules)
        from invoke import MockContext, Result
        ctx = MockContext(run=Result('hi'))
        import unittest.mock
        print('works:', ctx.run('x').stdout, isinstance(ctx.run, unittest.mock.Mock), callable(unittest.mock.patch))
    """
    _, proc = imported_after(code)
    assert proc.returncode == 0, proc.stderr
    assert "deferred: False False" in proc.stdout, proc.stdout
    assert "works: hi True True" in proc.stdout, proc.stdout


def test_a_real_unittest_mock_loaded_first_is_left_alone() -> None:
    code = """
        import unittest.mock
        from nr import import_hooks
        import_hooks.install()
        import invoke.context
        print('same:', invoke.context.Mock is unittest.mock.Mock)
    """
    _, proc = imported_after(code)
    assert "same: True" in proc.stdout, proc.stderr


def test_the_read_only_probe_loads_no_reservation_model() -> None:
    """nr drift and nr status probe the adapter with a lookup: gRPC and the stubs, not the model the
    round trip builds a reservation with."""
    code = "import services.client.probe; print('model:', sorted(m for m in sys.modules if 'aeroalpes' in m or m == 'services.client.roundtrip'))"
    mods, proc = imported_after(code)
    assert proc.returncode == 0, proc.stderr
    assert "model: []" in proc.stdout, proc.stdout
    assert "grpc" in mods


def test_nornir_loads_without_running_ruamel_yaml_until_it_is_used() -> None:
    """nornir.core.configuration imports ruamel.yaml for Config.from_file, which nr never calls."""
    code = """
        from nr import import_hooks
        import_hooks.install()
        import nornir.core.configuration
        print('ran:', 'ruamel.yaml.main' in sys.modules)
        import ruamel.yaml
        print('works:', ruamel.yaml.YAML(typ='safe').load('a: [1, 2]'), 'ruamel.yaml.main' in sys.modules)
    """
    _, proc = imported_after(code)
    assert proc.returncode == 0, proc.stderr
    assert "ran: False" in proc.stdout and "works: {'a': [1, 2]} True" in proc.stdout, proc.stdout


def test_reading_the_redis_cluster_imports_no_redis_py() -> None:
    """The Redis component talks RESP itself (tasks.redis.resp): redis-py's import cost ~130 ms."""
    code = """
        import tasks.redis.observe, tasks.redis.execute, tasks.redis.session, tasks.redis.backup
        from tasks.redis.observe import classify, redis_connector
        client = redis_connector('secret', timeout=0.5)('127.0.0.1', 1)  # nothing listens on port 1
        try:
            client.execute_command('PING')
        except Exception as exc:
            print('classified:', classify(exc, 'secret')[0])
        print('redis-py:', sorted(m for m in sys.modules if m == 'redis' or m.startswith('redis.')))
    """
    mods, proc = imported_after(code)
    assert proc.returncode == 0, proc.stderr
    assert "classified: unreachable" in proc.stdout, proc.stdout
    assert "redis-py: []" in proc.stdout and "redis" not in mods, proc.stdout


def test_paramiko_and_nornir_load_without_importlib_metadata_and_know_their_versions() -> None:
    """Both look up their own version at import: nr.import_hooks answers from the .dist-info (the
    answer importlib.metadata gives, checked here after the fact), and their other uses of
    importlib.metadata still reach the real module."""
    code = """
        from nr import import_hooks
        import_hooks.install()
        import paramiko, nornir
        print('loaded:', 'importlib.metadata' in sys.modules, 'email.message' in sys.modules)
        got = (paramiko.__version__, nornir.__version__)
        import importlib.metadata as metadata
        print('same:', got == (metadata.version('paramiko'), metadata.version('nornir')), got)
        print('real:', paramiko.metadata.version('click') == metadata.version('click'))
        print('left:', type(sys.modules['importlib.metadata']).__name__, type(metadata).__name__)
    """
    _, proc = imported_after(code)
    assert proc.returncode == 0, proc.stderr
    assert "loaded: False False" in proc.stdout, proc.stdout
    assert "same: True" in proc.stdout and "real: True" in proc.stdout, proc.stdout
    assert "left: module module" in proc.stdout, proc.stdout


@pytest.mark.parametrize(
    ("command", "component"),
    [
        (["run", "base"], "tasks.base.play"),
        (["drift"], "tasks.deploy.images"),
        (["status"], "tasks.deploy.status"),
    ],
)
def test_a_run_drift_or_status_imports_no_importlib_metadata(command: list[str], component: str) -> None:
    """The example inventory's hosts cannot be reached from here: every component still loads and
    runs up to its connections (the hosts' part is not what this is about)."""
    code = f"""
        import os
        os.environ['NR_REDIS_PASSWORD'] = 'p' * 24
        from nr.cli import main
        sys.argv = ['nr', *{command!r}, '-i', 'inventory']
        try:
            main()
        finally:
            print('metadata:', 'importlib.metadata' in sys.modules, 'paramiko' in sys.modules, {component!r} in sys.modules)
    """
    _, proc = imported_after(code)
    assert "metadata: False True True" in proc.stdout, proc.stdout + proc.stderr


def test_invoke_loads_its_vendored_yaml_only_for_a_config_file_and_every_thread_reads_it(
    tmp_path: Path,
) -> None:
    """No ~/.fabric.yaml: no YAML library at all. With one, the first yaml.safe_load loads it, and
    eight connection threads building their Fabric Config at once all read it (the stand-in goes
    through the import lock: LazyLoader made 7 of 8 fail)."""
    code = """
        import os, sys, threading
        from nr import import_hooks
        import_hooks.install()
        from fabric import Config
        Config()
        print('loaded:', 'invoke.vendor.yaml' in sys.modules, 'yaml' in sys.modules)
        with open(os.path.join(os.environ['HOME'], '.fabric.yaml'), 'w') as f:
            f.write('user: alice\\ntimeouts:\\n  connect: 7\\n')
        seen, start = [], threading.Barrier(8)
        def build():
            start.wait()
            try:
                c = Config()
                seen.append((c.user, c.timeouts.connect))
            except Exception as exc:
                seen.append(repr(exc))
        threads = [threading.Thread(target=build) for _ in range(8)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        print('seen:', sorted(map(str, seen)))
    """
    proc = run_python(code, env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert "loaded: False False" in proc.stdout, proc.stdout
    assert "seen: " + str(["('alice', 7)"] * 8) in proc.stdout, proc.stdout


def test_paramiko_s_agent_and_nornir_s_log_handlers_load_what_they_need_only_when_used() -> None:
    code = """
        from nr import import_hooks
        import_hooks.install()
        import logging, paramiko, nornir.core.configuration
        print('loaded:', 'tempfile' in sys.modules, 'pickle' in sys.modules)
        import paramiko.agent
        print('works:', paramiko.agent.tempfile.gettempdir() != '', logging.handlers.RotatingFileHandler.__name__)
        print('real:', type(sys.modules['tempfile']).__name__, 'pickle' in sys.modules)
    """
    _, proc = imported_after(code)
    assert proc.returncode == 0, proc.stderr
    assert "loaded: False False" in proc.stdout, proc.stdout
    assert "works: True RotatingFileHandler" in proc.stdout and "real: module True" in proc.stdout, (
        proc.stdout
    )


def test_a_stand_in_is_also_its_package_s_attribute_so_import_a_dot_b_then_a_dot_b_works() -> None:
    """Another thread may ``import importlib.metadata`` while Paramiko loads (the stand-in is in
    sys.modules then) and use it as ``importlib.metadata.version`` later, after the stand-in left."""
    code = """
        import importlib
        from nr import import_hooks
        stand_in = import_hooks._StandIn('importlib.metadata', {})
        import_hooks._put(stand_in)
        import importlib.metadata
        print('window:', importlib.metadata is stand_in, 'email' in sys.modules)
        del sys.modules['importlib.metadata']  # the load that put it there ended
        v = importlib.metadata.version('click')
        import importlib.metadata
        print('after:', bool(v), importlib.metadata is not stand_in, type(importlib.metadata).__name__)
    """
    _, proc = imported_after(code)
    assert proc.returncode == 0, proc.stderr
    assert "window: True False" in proc.stdout and "after: True True module" in proc.stdout, proc.stdout


def test_grpc_loads_without_asyncio_and_both_its_apis_still_work() -> None:
    """nr's probes and checks use gRPC's blocking API: ``grpc.aio`` and asyncio (which gRPC's
    extension imports for it) load at their first use. A blocking call, then a grpc.aio server and
    client in the same process, each make a real call over loopback."""
    code = """
        from nr import import_hooks
        import_hooks.install()
        import sys
        import services.client.probe
        import grpc
        print('loaded:', 'asyncio' in sys.modules, 'grpc.aio' in sys.modules)
        echo = grpc.method_handlers_generic_handler(
            't.Echo', {'Say': grpc.unary_unary_rpc_method_handler(lambda req, ctx: req + b'!')})
        from concurrent import futures
        server = grpc.server(futures.ThreadPoolExecutor(2), handlers=(echo,))
        port = server.add_insecure_port('127.0.0.1:0')
        server.start()
        with grpc.insecure_channel(f'127.0.0.1:{port}') as channel:
            print('blocking:', channel.unary_unary('/t.Echo/Say')(b'hi', timeout=10))
        server.stop(None)

        async def aio_call():
            server = grpc.aio.server(handlers=(echo,))
            port = server.add_insecure_port('127.0.0.1:0')
            await server.start()
            async with grpc.aio.insecure_channel(f'127.0.0.1:{port}') as channel:
                reply = await channel.unary_unary('/t.Echo/Say')(b'aio', timeout=10)
            await server.stop(None)
            return reply

        import asyncio
        print('aio:', asyncio.run(aio_call()), type(sys.modules['grpc.aio']).__name__)
    """
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr
    assert "loaded: False False" in proc.stdout, proc.stdout
    assert "blocking: b'hi!'" in proc.stdout and "aio: b'aio!' module" in proc.stdout, proc.stdout
