"""The cluster token of every k3s host: ``data.k3s_token`` (through ``ctx.secret``), else the token kept in
``<inventory>/secrets/k3s_token`` (0600), else the token the running cluster was made with (read from the
first server's config.yaml), else a new one, stored there. Never while the first server could not be
read: a cluster with its own token may run there.
"""

from __future__ import annotations

from collections.abc import Mapping

from nornir.core.inventory import Host

from nr.errors import NrError
from nr.play import PlayContext
from nr.secrets import Secret, SecretError
from tasks.k3s.local import load_token, new_token, store_token, token_path
from tasks.k3s.render import CONFIG, secrets_in_config
from tasks.k3s.spec import ClusterSpec


def _default_token(ctx: PlayContext, running: Secret | None, readable: bool) -> Secret:
    inv = ctx.inventory_dir
    path = token_path(inv)
    try:
        kept = load_token(inv)
    except SecretError as exc:
        raise NrError(f"k3s token: {exc}") from None
    if kept is not None:
        return kept
    if running is not None:
        if not ctx.dry_run:
            store_token(inv, running)
        verb = "would be stored" if ctx.dry_run else "stored"
        ctx.note(f"the running cluster's token (from {CONFIG}) {verb} in {path} (0600)")
        return running
    if not readable:  # k3s may well run there: a new token now would be kept and later refused
        raise NrError(
            f"k3s token: no token is kept in {path} and the first server could not be read, so it is "
            "unknown whether a cluster (with its own token) runs there: make it reachable, or set data.k3s_token"
        )
    token = new_token()
    if ctx.dry_run:
        ctx.note(f"a cluster token would be generated and stored in {path} (0600)")
    else:
        store_token(inv, token)
        ctx.note(
            f"generated the cluster token and stored it in {path} (0600): back it up, it encrypts the "
            "cluster's datastore (changing it later takes `k3s token rotate` on every node)"
        )
    return token


def resolve_tokens(
    ctx: PlayContext,
    cluster: ClusterSpec,
    hosts: Mapping[str, Host],
    first_config: str | None,
    readable: bool,
) -> dict[str, Secret]:
    """The token of every node; NrError when the first server runs with another token than the wanted one."""
    running = secrets_in_config(first_config)
    running_token = Secret(running[0], "the running cluster") if running else None
    tokens: dict[str, Secret] = {}
    default: Secret | None = None
    for node in cluster.nodes:
        if hosts[node.name].get("k3s_token"):
            tokens[node.name] = ctx.secret(hosts[node.name], "k3s_token")
            continue
        if default is None:
            default = _default_token(ctx, running_token, readable)
        tokens[node.name] = default
    first = cluster.first.name
    if running_token is not None and running_token != tokens[first]:
        raise NrError(
            f"the cluster on {first} was created with another token (it encrypts the datastore): set "
            "data.k3s_token to the cluster's token; to change it, run `k3s token rotate --new-token FILE` on "
            f"{first} and restart every node (k3s docs, cli/token.md); or rebuild the cluster with "
            f"`{ctx.fix_command('k3s-reset')}` and `{ctx.fix_command()}`"
        )
    return tokens
