"""The Redis ports' firewall: an nftables table of nr's own, loaded by a unit of nr's own.

The cluster bus ports (port+10000) carry unauthenticated cluster messages: only the Redis hosts may reach
them. The client ports need the password, and are open to the Redis hosts, every host of the site (k3s
nodes: flannel masquerades pod traffic to other hosts behind the node's address), the pod network (pods
on the Redis host itself), the machine nr runs on (it talks to every instance) and ``data.redis_clients``.

Design (so that it can lock out neither SSH nor k3s, and survives reboots):

* one table, ``inet nr_redis``, with one input chain whose policy is ``accept``: it drops only packets
  to the Redis ports from other sources; every other port and every other table (Docker's, kube-proxy's,
  flannel's, an operator's own) is left alone. Debian's ``nftables.service`` is not used: its
  ``/etc/nftables.conf`` starts with ``flush ruleset``, which would wipe k3s's and Docker's rules;
* the file starts with ``table inet nr_redis`` + ``delete table inet nr_redis``, so ``nft -f`` replaces
  the table in one atomic transaction (no moment without rules, no error when it did not exist);
* ``nr-redis-firewall.service`` (oneshot, before network-pre.target, wanted by sysinit.target) loads it
  at boot before any Redis instance listens; ``systemctl reload`` re-reads the file atomically.

``nr check`` and ``nr drift`` read the loaded table (``nft -j list table``) and compare its sets and rules
with the planned ones, so a rule or an address removed by hand is reported by name.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from nr.facts import Fact, Output
from tasks.redis.contract import BUS_PORT_OFFSET

TABLE = "nr_redis"
FILE = "/etc/nr/redis-firewall.nft"
UNIT = "nr-redis-firewall.service"
UNIT_FILE = f"/etc/systemd/system/{UNIT}"
NFT = "/usr/sbin/nft"
CHAIN = "filter input -5 accept"  # type, hook, priority (filter - 5), policy
PACKAGE = "nftables"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _net(text: str) -> Network:
    return ipaddress.ip_network(text, strict=False)


def _text(net: Network) -> str:
    return str(net.network_address) if net.num_addresses == 1 else str(net)


def _within(a: Network, b: Network) -> bool:
    low, high = int(a.network_address), int(a.broadcast_address)
    return a.version == b.version and int(b.network_address) <= low and high <= int(b.broadcast_address)


def _collapse(sources: Iterable[str], version: int) -> list[str]:
    """Sorted networks of one IP version without overlaps (nft refuses overlapping interval elements):
    a source inside another is dropped, neighbours are kept apart (as listed, easier to read)."""
    nets = {n for n in (_net(s) for s in sources) if n.version == version}
    out: list[Network] = []
    for n in sorted(nets, key=lambda n: (n.network_address, -n.prefixlen)):
        if not any(_within(n, o) for o in out):
            out.append(n)
    return [_text(n) for n in out]


def _uncovered(elements: Iterable[str], by: Iterable[str]) -> list[str]:
    """The elements not covered by the networks ``by`` (however nft chose to print either)."""
    nets = [_net(b) for b in by]
    return [e for e in elements if not any(_within(_net(e), n) for n in nets)]


def _ports(ports: Sequence[int]) -> str:
    return "{ " + ", ".join(str(p) for p in sorted(ports)) + " }" if len(ports) > 1 else str(ports[0])


@dataclass(frozen=True)
class FirewallSpec:
    """The planned table: the client ports, who may reach the bus ports (peers) and the client ports."""

    ports: tuple[int, ...]
    peers: tuple[str, ...]
    clients: tuple[str, ...]

    @property
    def bus_ports(self) -> tuple[int, ...]:
        return tuple(p + BUS_PORT_OFFSET for p in self.ports)

    def sets(self) -> dict[str, list[str]]:
        everyone = (*self.peers, *self.clients)
        return {
            "peers4": _collapse(self.peers, 4),
            "peers6": _collapse(self.peers, 6),
            "clients4": _collapse(everyone, 4),
            "clients6": _collapse(everyone, 6),
        }

    def rules(self) -> list[str]:
        bus, client = _ports(self.bus_ports), _ports(self.ports)
        return [
            'iif "lo" accept',
            "ct state established,related accept",
            f"tcp dport {bus} ip saddr @peers4 accept",
            f"tcp dport {bus} ip6 saddr @peers6 accept",
            f"tcp dport {bus} drop",
            f"tcp dport {client} ip saddr @clients4 accept",
            f"tcp dport {client} ip6 saddr @clients6 accept",
            f"tcp dport {client} drop",
        ]

    def render(self) -> str:
        lines = [
            "#!/usr/sbin/nft -f",
            "# Managed by nr (redis play). Do not edit by hand: `nr run redis` rewrites it and reloads",
            f"# {UNIT}. Only the Redis ports are filtered; everything else passes this table.",
            f"table inet {TABLE}",
            f"delete table inet {TABLE}",
            f"table inet {TABLE} {{",
        ]
        for name, elements in self.sets().items():
            kind = "ipv4_addr" if name.endswith("4") else "ipv6_addr"
            lines += [f"\tset {name} {{", f"\t\ttype {kind}", "\t\tflags interval"]
            if elements:
                lines.append(f"\t\telements = {{ {', '.join(elements)} }}")
            lines.append("\t}")
        lines += ["\tchain input {", "\t\ttype filter hook input priority filter - 5; policy accept;"]
        lines += [f"\t\t{r}" for r in self.rules()]
        lines += ["\t}", "}"]
        return "\n".join(lines) + "\n"


def unit_text() -> str:
    return (
        "# Managed by nr (redis play): the Redis ports' nftables table, loaded at boot.\n"
        "[Unit]\n"
        f"Description=nr: Redis client and bus ports only from the site (nftables table inet {TABLE})\n"
        "DefaultDependencies=no\n"
        "Wants=network-pre.target\n"
        "Before=network-pre.target shutdown.target\n"
        "Conflicts=shutdown.target\n"
        "\n[Service]\n"
        "Type=oneshot\n"
        "RemainAfterExit=yes\n"
        f"ExecStart={NFT} -f {FILE}\n"
        f"ExecReload={NFT} -f {FILE}\n"
        f"ExecStop={NFT} delete table inet {TABLE}\n"
        "\n[Install]\n"
        "WantedBy=sysinit.target\n"
    )


def load_script() -> str:
    """Check the file, then load it through the unit (start, or reload: one atomic ``nft -f``)."""
    return (
        f"{NFT} -c -f {FILE}\n"
        "systemctl daemon-reload\n"
        f"systemctl enable {UNIT} >/dev/null 2>&1\n"
        f"systemctl reload-or-restart {UNIT}"
    )


LocalAddress = Callable[[str], "str | None"]


def local_address(target: str) -> str | None:
    """The address this machine sends from to reach ``target`` (a UDP connect sends nothing)."""
    family = socket.AF_INET6 if ":" in target else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect((target, 9))
            return str(s.getsockname()[0])
    except OSError:
        return None


def plan_spec(
    ports: Sequence[int],
    peers: Sequence[str],
    clients: Sequence[str],
    site_addresses: Sequence[str],
    find_local: LocalAddress = local_address,
) -> FirewallSpec:
    """The table for a site: ``peers`` the Redis hosts, ``clients`` the configured and pod networks."""
    controller = {a for a in (find_local(p) for p in peers) if a}
    others = [a for a in (*site_addresses, *sorted(controller)) if _is_ip(a)]
    return FirewallSpec(tuple(ports), tuple(peers), (*clients, *others))


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


# -- the loaded table -----------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedTable:
    """``nft -j list table inet nr_redis``, reduced to what is compared: the chain, sets and rules."""

    present: bool
    chain: str = ""
    sets: tuple[tuple[str, tuple[str, ...]], ...] = ()
    rules: tuple[str, ...] = ()
    error: str = ""


def _elements(e: object) -> list[str]:
    """One set element as networks: an address, a prefix, or a range (the prefixes covering it)."""
    if isinstance(e, dict) and "prefix" in e:
        return [_text(_net(f"{e['prefix']['addr']}/{e['prefix']['len']}"))]
    if isinstance(e, dict) and "range" in e:
        low, high = (ipaddress.ip_address(x) for x in e["range"])
        return [_text(n) for n in ipaddress.summarize_address_range(low, high)]
    return [str(e)]


def _expr(e: dict[str, object]) -> str:
    """One JSON rule expression as nft prints it (the shapes nr writes; anything else as JSON)."""
    match = e.get("match")
    if isinstance(match, dict):
        left, right = match.get("left"), match.get("right")
        if isinstance(left, dict) and "meta" in left:
            return f'{left["meta"]["key"]} "{right}"'
        if isinstance(left, dict) and "ct" in left:
            return f"ct {left['ct']['key']} {','.join(right) if isinstance(right, list) else right}"
        if isinstance(left, dict) and "payload" in left:
            field = f"{left['payload']['protocol']} {left['payload']['field']}"
            if isinstance(right, dict) and "set" in right:
                return f"{field} {_ports(right['set'])}"
            return f"{field} {right}"
    if len(e) == 1 and next(iter(e.values())) is None:
        return next(iter(e))  # accept, drop, ...
    return json.dumps(e, sort_keys=True)


def parse_table(out: Output) -> LoadedTable:
    """The loaded table, or why there is none (not loaded, or nft missing: the package is not installed)."""
    if not out.ok:
        return LoadedTable(False, error=(out.err or out.text).strip()[-300:] or f"exit {out.rc}")
    items = json.loads(out.text or "{}").get("nftables", [])
    chain, sets, rules = "", [], []
    for item in items:
        if "chain" in item:
            c = item["chain"]
            chain = f"{c.get('type')} {c.get('hook')} {c.get('prio')} {c.get('policy')}"
        elif "set" in item:
            s = item["set"]
            elements = s.get("elem", [])
            elements = elements if isinstance(elements, list) else [elements]
            sets.append((s["name"], tuple(n for x in elements for n in _elements(x))))
        elif "rule" in item:
            rules.append(" ".join(_expr(x) for x in item["rule"]["expr"]))
    return LoadedTable(True, chain, tuple(sets), tuple(rules))


LOADED = Fact("firewall", f"{NFT} -j list table inet {TABLE}", parse_table)


def differences(spec: FirewallSpec, loaded: LoadedTable) -> list[tuple[str, str, str]]:
    """(what, expected, actual) for every way the loaded table differs from ``spec``; [] when equal."""
    if not loaded.present:
        return [(f"nftables table inet {TABLE}", "loaded", f"not loaded ({loaded.error})")]
    out: list[tuple[str, str, str]] = []
    if loaded.chain != CHAIN:
        out.append((f"nftables chain {TABLE} input", CHAIN, loaded.chain or "missing"))
    have = dict(loaded.sets)
    for name, want in spec.sets().items():
        got = have.get(name, ())
        for e in _uncovered(want, got):
            out.append(
                (f"nftables set {name}", f"contains {e}", "missing" if name in have else "no such set")
            )
        for e in _uncovered(got, want):
            out.append((f"nftables set {name}", f"not {e}", f"contains {e}"))
    rules = list(loaded.rules)
    for rule in spec.rules():
        if rule not in rules:
            out.append(("nftables rule", rule, "missing"))
    for rule in rules:
        if rule not in spec.rules():
            out.append(("nftables rule", "absent", rule))
    if not out and rules != spec.rules():
        out.append(("nftables rules", "in the planned order", " | ".join(rules)))
    return out
