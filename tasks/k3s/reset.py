"""The ``k3s-reset`` component: uninstall k3s (agents first, then servers), as upstream's scripts do.

What the reset script removes follows install.sh's ``create_killall`` (k3s-killall.sh) and
``create_uninstall`` (k3s-uninstall.sh):

* stop the units; kill every process of the k3s binary or one it unpacked (containerd, the shims)
  and their descendants (the containers);
* unmount what lives under /run/k3s, /var/lib/kubelet and /run/netns/cni-*; delete the CNI network
  namespaces (``ip netns show | grep cni- | xargs ip netns delete``, k3s #2542/#2435) and the CNI
  links; ``rm -rf /var/lib/cni`` (host-local IPAM reservations, flannel's cache); drop the KUBE-,
  CNI- and flannel iptables rules;
* remove the files, and the data directory the way ``clean_mounted_directory`` does: a data
  directory (or a folder in it) that is its own mount point is emptied, never unmounted or removed,
  so a disk mounted there (and its fstab entry) stays usable. /etc/rancher/node (the node password)
  is kept, as upstream keeps it.
"""

from __future__ import annotations

from shlex import quote

from nr.changes import Change
from nr.facts import gather
from nr.outcome import Outcome
from nr.play import HostRun, PlayContext
from tasks.k3s.contract import AGENTS, BINARY, SERVERS
from tasks.k3s.local import token_path
from tasks.k3s.observe import DATA_DIR, UNITS
from tasks.k3s.spec import Role

RESET_PATHS = (
    BINARY,
    Role.SERVER.unit_path,
    Role.AGENT.unit_path,
    Role.SERVER.env_path,
    Role.AGENT.env_path,
    "/etc/rancher/k3s",
    "/var/lib/kubelet",
    "/var/lib/cni",
    "/run/k3s",
    "/run/flannel",
)

# clean_mounted_directory DIR: remove DIR, except that a mount point (DIR or a folder below it) is
# emptied and kept (install.sh create_uninstall; mount points read from /proc/self/mounts, exactly).
CLEAN_MOUNTED = """\
nr_is_mount() { awk -v d="$1" '$2 == d {f=1} END {exit !f}' /proc/self/mounts; }
nr_has_mount() { awk -v d="$1/" 'index($2, d) == 1 {f=1} END {exit !f}' /proc/self/mounts; }
nr_clean_mounted() {
  [ -e "$1" ] || return 0
  if ! nr_is_mount "$1" && ! nr_has_mount "$1"; then rm -rf "$1"; return 0; fi
  for p in "$1"/* "$1"/.[!.]* "$1"/..?*; do
    [ -e "$p" ] || [ -L "$p" ] || continue
    if [ -d "$p" ] && [ ! -L "$p" ] && { nr_is_mount "$p" || nr_has_mount "$p"; }; then nr_clean_mounted "$p"
    else rm -rf "$p"; fi
  done
  nr_is_mount "$1" || rmdir "$1" 2>/dev/null || true
}"""

RESET_SCRIPT = f"""\
for u in k3s-agent k3s; do systemctl disable --now "$u" >/dev/null 2>&1 || true; done
# Like k3s-killall.sh: every process running the k3s binary or one it unpacked (containerd, the
# containerd-shims), and their descendants (the containers).
nr_roots() {{
  for d in /proc/[0-9]*; do
    exe=$(readlink "$d/exe" 2>/dev/null) || continue
    case "$exe" in {BINARY}|{BINARY}" (deleted)"|{DATA_DIR}/data/*) echo "${{d#/proc/}}"; continue;; esac
    set -- $(tr '\\0' ' ' < "$d/cmdline" 2>/dev/null)
    if [ "${{1:-}}" = {BINARY} ] || [ "${{2:-}}" = {BINARY} ]; then echo "${{d#/proc/}}"; fi
  done
}}
pids=" $(nr_roots | tr '\\n' ' ') "
while :; do
  command -v ps >/dev/null 2>&1 || break
  more=$(ps -e -o pid= -o ppid= | while read -r p pp; do
    case "$pids" in *" $pp "*) case "$pids" in *" $p "*) ;; *) printf '%s ' "$p";; esac;; esac
  done)
  [ -n "$more" ] || break
  pids="$pids$more"
done
for p in $pids; do [ "$p" = "$$" ] || kill -9 "$p" 2>/dev/null || true; done
# Mounts of the kubelet, k3s's runtime and CNI netns (none under the data directory: since k3s #10403
# killall leaves it mounted; clean_mounted below empties it). `(/|$)`: never a sibling like /run/k3s-x.
awk '$2 ~ "^(/run/k3s|/var/lib/kubelet|/run/netns/cni-[^/]*)(/|$)" {{print $2}}' /proc/self/mounts \\
  | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
if command -v ip >/dev/null 2>&1; then
  ip netns show 2>/dev/null | awk '/^cni-/ {{print $1}}' | while read -r n; do ip netns delete "$n" 2>/dev/null || true; done
  ip link show 2>/dev/null | awk -F': ' '/master cni0/ {{print $2}}' | cut -d@ -f1 | while read -r i; do ip link delete "$i" 2>/dev/null || true; done
  for i in cni0 flannel.1 flannel-v6.1 flannel-wg flannel-wg-v6 kube-ipvs0; do
    if ip link show "$i" >/dev/null 2>&1; then ip link delete "$i" || true; fi
  done
fi
for t in iptables ip6tables; do
  if command -v "$t-save" >/dev/null 2>&1; then
    "$t-save" | grep -v KUBE- | grep -v CNI- | grep -iv flannel | "$t-restore" || true
  fi
done
rm -rf {" ".join(quote(p) for p in RESET_PATHS)}
{CLEAN_MOUNTED}
nr_clean_mounted {DATA_DIR}
systemctl daemon-reload
systemctl reset-failed k3s k3s-agent >/dev/null 2>&1 || true"""

PRESENT_CMD = (
    f'for p in {" ".join(quote(p) for p in RESET_PATHS)}; do if [ -e "$p" ]; then echo "$p"; fi; done; '
    f'if [ -n "$(ls -A {DATA_DIR} 2>/dev/null)" ]; then echo {DATA_DIR}; fi'  # an emptied mount point is clean
)


def _reset(run: HostRun) -> Outcome[None]:
    facts = gather(run.remote, commands={"present": PRESENT_CMD, UNITS.name: UNITS.command})
    present = facts.out("present").split()
    running = [u for u, s in facts.get(UNITS).items() if s.active in ("active", "activating")]
    if not present and not running:
        return Outcome(summary="k3s not installed")
    change = Change(
        "k3s installation",
        "absent",
        ", ".join(present + [f"{u} running" for u in running]),
        RESET_SCRIPT,
        "".join(f"- remove {p}\n" for p in present) + "".join(f"- stop {u}\n" for u in running),
    )
    return run.apply([change])


class K3sResetComponent:
    name = "k3s-reset"

    def validate(self, ctx: PlayContext) -> list[str]:
        chosen, every = ctx.hosts(SERVERS), ctx.all_hosts(SERVERS)
        if chosen and len(chosen) < len(every):
            names = ", ".join(h.name for h in chosen)
            return [
                f"k3s-reset --limit {names}: resetting some servers of a cluster leaves their Node and etcd "
                f"member behind (one failure from losing quorum). Take them out first with `k3s kubectl delete "
                f"node NAME` on a remaining server, or reset the whole cluster (no --limit)"
            ]
        return []

    def apply(self, ctx: PlayContext) -> None:
        servers = ctx.hosts(SERVERS)
        agents = [h for h in ctx.hosts(AGENTS) if h not in servers]
        if agents:
            ctx.run("agents", _reset, hosts=agents)
        if servers:
            ctx.run("servers", _reset, hosts=servers)
        if not ctx.dry_run and (servers or agents):
            ctx.note(
                f"the cluster token in {token_path(ctx.inventory_dir)} (if any) and your kubeconfig are "
                "kept: a new cluster reuses the token"
            )

    def check(self, ctx: PlayContext) -> None:
        return None

    def drift(self, ctx: PlayContext) -> None:
        return None


reset_component = K3sResetComponent()
