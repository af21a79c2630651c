"""``nr lab`` and ``nr vms``: the commands that make machines for a site (outside the engine core).

``nr lab up`` also takes the options the components declare in their contracts (e.g. a local
binary to push), each of which sets a data key of the lab inventory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NoReturn

import click

from nr.console import lazy_console
from nr.errors import NrError
from nr.registry import registry
from nr.secrets import redact
from nr.text import command, show

EXIT_BAD_INPUT = 2
out = lazy_console(highlight=False, soft_wrap=True)
err = lazy_console(stderr=True, highlight=False, soft_wrap=True)


def _bad_input(messages: list[str]) -> NoReturn:
    for m in messages:
        err.print(f"[red]error:[/] {show(redact(m))}")
    raise SystemExit(EXIT_BAD_INPUT)


def _try(inventory: Path) -> None:
    """The commands to run next on a freshly written inventory (shell-quoted)."""
    first = command("nr", "inventory", "-i", str(inventory))
    site = command("nr", "run", registry().default_play_name, "-i", str(inventory))
    out.print(f"Try:  {show(first)}\n      {show(site)}")


def _param(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def _lab_data(options: dict[str, Any]) -> dict[str, str]:
    """Data keys set by the components' lab options (paths made absolute)."""
    data: dict[str, str] = {}
    for opt in registry().schema.lab_options:
        value = options.get(_param(opt.flag))
        if value is not None:
            data[opt.key] = str(Path(value).resolve()) if opt.is_path else str(value)
    return data


def _with_lab_options(cmd: click.Command) -> click.Command:
    for opt in registry().schema.lab_options:
        kind = click.Path(dir_okay=False, path_type=Path) if opt.is_path else click.STRING
        cmd.params.append(click.Option([opt.flag, _param(opt.flag)], type=kind, default=None, help=opt.help))
    return cmd


LAB_NAME = click.option(
    "--name", default="nr-lab", show_default=True, help="Prefix of containers, network and image."
)
LAB_DIR = click.option(
    "--dir",
    "state_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".nr-lab"),
    show_default=True,
    help="Where the key, known_hosts and inventory are written (git-ignored).",
)


@click.group()
def lab() -> None:
    """The local lab: Docker containers that behave like small VMs (systemd, sshd)."""


@lab.command("up")
@click.option("--hosts", "count", type=click.IntRange(1, 50), default=3, show_default=True)
@LAB_NAME
@click.option(
    "--subnet", default="198.18.0.0/24", show_default=True, help="Lab network (198.18.0.0/15 range)."
)
@LAB_DIR
@click.option(
    "--docker-socket/--no-docker-socket",
    default=None,
    help="Mount this machine's Docker socket into the hosts (new hosts only; remembered).",
)
def lab_up(
    count: int, name: str, subnet: str, state_dir: Path, docker_socket: bool | None, **options: Path | None
) -> None:
    """Start N lab hosts and write an inventory for them (in --dir)."""
    from nr.machines.lab import Lab

    try:
        lab = Lab(
            name=name,
            subnet=subnet,
            state_dir=state_dir,
            log=err,
            data=_lab_data(options),
            docker_socket=docker_socket,
        )
        info = lab.up(count)
    except NrError as exc:
        _bad_input([str(exc)])
    out.print(f"Lab '{show(name)}' is up: {show(', '.join(info.hosts))}")
    out.print(f"Inventory: {show(info.inventory)}")
    _try(info.inventory)


@lab.command("image")
def lab_image() -> None:
    """Build the lab's base image if missing (debootstrap, cached) and print its name.

    It also serves as an offline base for the service images (Debian bookworm, python3, venv).
    """
    from nr.machines.lab import Lab

    try:
        click.echo(Lab(log=err).ensure_image())
    except NrError as exc:
        _bad_input([str(exc)])


@lab.command("down")
@LAB_NAME
@LAB_DIR
def lab_down(name: str, state_dir: Path) -> None:
    """Remove the lab's containers and network (the cached base image is kept)."""
    from nr.machines.lab import Lab

    removed = Lab(name=name, state_dir=state_dir, log=err).down()
    out.print(f"Removed {removed} lab host(s)")


@lab.command("status")
@LAB_NAME
@LAB_DIR
def lab_status(name: str, state_dir: Path) -> None:
    """List the lab's hosts, their addresses and state."""
    from nr.machines.lab import Lab
    from nr.plain import TextTable

    table = TextTable(title=f"Lab {show(name)}")
    for col in ("host", "address", "state"):
        table.add_column(col)
    hosts = Lab(name=name, state_dir=state_dir, log=err).status()
    for h in hosts:
        table.add_row(show(h.name), show(h.address), show(h.state))
    out.print(table if hosts else f"Lab '{show(name)}' has no hosts (nr lab up)")


@click.group()
def vms() -> None:
    """Multipass VMs for a real site (like the seed's mp-up.sh)."""


@vms.command("up")
@click.option("--count", type=click.IntRange(1, 20), default=3, show_default=True)
@click.option("--prefix", default="vm", show_default=True, help="VM names: PREFIX1..PREFIXN.")
@click.option("--cpus", default=2, show_default=True)
@click.option("--memory", default="2G", show_default=True)
@click.option("--disk", default="10G", show_default=True)
@click.option("--image", default="22.04", show_default=True, help="Ubuntu release for multipass launch.")
@click.option(
    "--ssh-key",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("~/.ssh/id_ed25519.pub"),
    show_default=True,
    help="Public key installed on the VMs by cloud-init.",
)
@click.option(
    "--dir",
    "state_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".nr-vms"),
    show_default=True,
    help="Where cloud-init, known_hosts and the inventory are written.",
)
def vms_up(
    count: int, prefix: str, cpus: int, memory: str, disk: str, image: str, ssh_key: Path, state_dir: Path
) -> None:
    """Create (or reuse) Multipass VMs and write an inventory for them."""
    from nr.machines.vms import VmSpec
    from nr.machines.vms import vms_up as up

    try:
        inv = up(VmSpec(count, prefix, cpus, memory, disk, image, ssh_key.expanduser()), state_dir, log=err)
    except NrError as exc:
        _bad_input([str(exc)])
    out.print(f"Inventory: {show(inv)}")
    _try(inv)


@vms.command("down")
@click.option("--prefix", default="vm", show_default=True)
@click.option("--count", type=click.IntRange(1, 20), default=3, show_default=True)
def vms_down(prefix: str, count: int) -> None:
    """Delete and purge the VMs PREFIX1..PREFIXN."""
    from nr.machines.vms import vms_down as down

    try:
        down(prefix, count, log=err)
    except NrError as exc:
        _bad_input([str(exc)])


_with_lab_options(lab_up)
