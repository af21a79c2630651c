"""Rebooting a host and waiting until it is back: SSH (with its known host key), then a finished boot.

The reboot is scheduled 2 s ahead (``systemd-run --on-active``), so the command that asks for it returns
before sshd stops. A marker in ``/run`` (a tmpfs on every systemd host: a reboot empties it) tells the
host that came back from the one that has not gone down yet. Each try opens a new connection with the
same strict host-key checking as the first: a host that comes back with another key is refused at once
(``HostKeyRejected``), never waited for. The boot is finished when ``systemctl is-system-running``
says ``running`` (or ``degraded``: some unit failed; its name is reported).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from shlex import quote

from nr.errors import NrError
from nr.interrupt import Interrupted
from nr.ssh_trust import HostKeyRejected
from nr.transport import Remote
from tasks.k3s.wait import Clock

MARKER = "/run/nr-patch-boot"
POLL = 2.0
BOOT_STATES = ("running", "degraded")


def reboot_script(token: str) -> str:
    later = "/bin/systemctl reboot"
    return "\n".join(
        [
            f"printf '%s\\n' {quote(token)} > {MARKER}",
            "if command -v systemd-run >/dev/null 2>&1; then",
            f"  systemd-run --quiet --on-active=2 --timer-property=AccuracySec=100ms {later}",
            "else",
            f"  nohup sh -c 'sleep 2; {later}' >/dev/null 2>&1 &",
            "fi",
        ]
    )


def new_token() -> str:
    return os.urandom(8).hex()


# After the marker: the boot state (waits up to 60 s for the boot to finish) and failed units.
PROBE = (
    f"cat {MARKER} 2>/dev/null || true\n"
    'echo "@@state"; timeout 60 systemctl is-system-running --wait 2>/dev/null || true\n'
    "echo \"@@failed\"; systemctl list-units --state=failed --no-legend --plain 2>/dev/null | awk '{print $1}'\n"
)


@dataclass(frozen=True)
class Back:
    seconds: float  # from the reboot to a finished boot
    failed_units: tuple[str, ...]


def wait_back(
    connect: Callable[[], Remote], host: str, token: str, timeout: float, clock: Clock | None = None
) -> Back:
    """Reconnect until ``host`` answers without ``token`` in its marker and has finished booting."""
    clock = clock or Clock()
    start = clock.now()
    last = "it did not answer yet"
    while True:
        clock.sleep(POLL)
        try:
            res = connect().run(PROBE, check=False, timeout=90)
        except HostKeyRejected as exc:
            raise NrError(
                f"{host} came back with another SSH host key; nothing more is done on it: {exc}"
            ) from None
        except Interrupted:
            raise
        except NrError as exc:
            last = str(exc)
        else:
            head, _, rest = res.stdout.partition("@@state\n")
            state, _, failed = rest.partition("@@failed\n")
            if head.strip() == token:
                last = "it has not gone down yet"
            elif state.strip() in BOOT_STATES:
                return Back(clock.now() - start, tuple(failed.split()))
            else:
                last = f"it is still booting (systemctl is-system-running: {state.strip() or '?'})"
        if clock.now() - start > timeout:
            raise NrError(f"{host} is not back {timeout:.0f} s after its reboot: {last}")
