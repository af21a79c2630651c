"""The lab's base image: Debian bookworm with systemd and sshd, built locally once (no registry needed).

debootstrap builds it where it is available and we are root; elsewhere ``docker build`` from
``debian:bookworm``. The image also serves as an offline base for the service images.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from rich.console import Console

from nr.errors import NrError

IMAGE = "nr-lab-base:bookworm-2"
PACKAGES = [
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "python3",
    "python3-venv",
    "sudo",
    "iproute2",
    "ca-certificates",
]
MIRROR = os.environ.get("NR_LAB_MIRROR", "http://deb.debian.org/debian")


class DockerTimeout(NrError):
    """A docker command that did not finish in time (the machine overloaded, or a host stuck)."""


def docker(
    *args: str, check: bool = True, timeout: float = 300, input: str | None = None, stderr: bool = False
) -> str:
    """Run the docker CLI; raise NrError with its stderr on failure. ``stderr``: return both streams
    interleaved (``docker logs`` prints a container's stderr there)."""
    exe = shutil.which("docker")
    if exe is None:
        raise NrError("docker is not installed (the lab needs a Docker engine)")
    try:
        proc = subprocess.run(
            [exe, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if stderr else subprocess.PIPE,
            text=True,
            timeout=timeout,
            check=False,
            input=input,
        )
    except subprocess.TimeoutExpired:
        what = " ".join([args[0], *[a for a in args[1:] if not a.startswith("-")][:1]])
        raise DockerTimeout(
            f"docker {what} did not finish within {timeout:g} s (is the machine overloaded? "
            "fewer lab hosts start faster)"
        ) from None
    if check and proc.returncode != 0:
        raise NrError(f"docker {args[0]} failed: {(proc.stderr or '').strip() or proc.stdout.strip()}")
    return proc.stdout


def ensure_image(log: Console | None = None) -> str:
    if docker("images", "-q", IMAGE).strip():
        return IMAGE
    if log is not None:
        log.print(f"Building the lab base image {IMAGE} (once; about a minute)…")
    if shutil.which("debootstrap") and os.geteuid() == 0:
        _build_with_debootstrap()
    else:
        _build_with_docker()
    return IMAGE


def _build_with_debootstrap() -> None:
    with tempfile.TemporaryDirectory(prefix="nr-lab-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        proc = subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(PACKAGES)}",
                "bookworm",
                str(rootfs),
                MIRROR,
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=1800,
        )
        if proc.returncode != 0:
            raise NrError(f"debootstrap failed: {proc.stderr.strip()[-800:] or proc.stdout.strip()[-800:]}")
        # apt lists are fetched again by the plays, as on a fresh VM; keep the image small.
        for sub in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for p in (rootfs / sub).glob("*.deb" if "archives" in sub else "*_*"):
                p.unlink()
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        imp = subprocess.run(
            ["docker", "import", "-c", 'CMD ["/sbin/init"]', "-", IMAGE],
            stdin=tar.stdout,
            capture_output=True,
            text=True,
            check=False,
        )
        tar.wait()
        if imp.returncode != 0:
            raise NrError(f"docker import failed: {imp.stderr.strip()}")


def _build_with_docker() -> None:
    dockerfile = (
        "FROM debian:bookworm\n"
        "RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "
        + " ".join(PACKAGES)
        + " && rm -rf /var/lib/apt/lists/*\n"
        'CMD ["/sbin/init"]\n'
    )
    with tempfile.TemporaryDirectory(prefix="nr-lab-build-") as tmp:
        (Path(tmp) / "Dockerfile").write_text(dockerfile)
        docker("build", "-t", IMAGE, tmp, timeout=1800)
