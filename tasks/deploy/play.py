"""The ``deploy`` play: ship the AeroAlpes images to the cluster and apply ``k3s/``.

1. images (controller): without ``data.image_registry`` the images are built here with Docker
   (offline, from wheels; :mod:`tasks.deploy.images`) and saved as tarballs in ``~/.cache/nr/images``.
   Their tag is the version plus a digest of their sources (:func:`tasks.deploy.images.source_tag`):
   a changed source is a new tag in the manifests, so the pods roll to it; the same source is
   never rebuilt;
2. images (every k3s node, in parallel): a node that lacks the image (its ``.id`` marker differs from
   the image ID, or containerd does not list the ref) gets the tarball over SFTP and imports it with
   ``k3s ctr images import``; a node that has it is left alone;
3. apply (first server): the manifests are rendered on the controller (base + site overlay +
   the Redis password Secret, which never touches disk here) and sent on stdin; ``kubectl diff``
   decides whether anything changes, ``kubectl apply`` applies, and the rollouts are awaited with a
   bounded timeout. Every cluster command is ``k3s kubectl`` on the first server, over SSH: the
   operator's machine needs no kubectl.

``nr drift`` reports nodes missing an image and every object ``kubectl diff`` finds different.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from nornir.core.inventory import Host
from nornir.core.task import Result, Task

from nr.changes import Change
from nr.connection import quote, remote
from nr.errors import NrError
from nr.facts import Facts, FileState, gather
from nr.legacy import apply_changes
from nr.ops.files import plan_upload
from nr.play import PlayContext
from nr.secrets import REDACTOR, SecretError, SecretRef
from tasks.deploy.images import source_tag
from tasks.deploy.plan import (
    DEFAULT_NODE_PORT,
    DEPLOYMENTS,
    IMAGES,
    NAMESPACE,
    AppSite,
    manifests_yaml,
    render,
    with_config_digest,
)
from tasks.deploy.plan import secret_manifest as build_secret
from tasks.k3s.contract import AGENTS as K3S_AGENTS
from tasks.k3s.contract import SERVERS as K3S_SERVERS
from tasks.redis.contract import GROUP as REDIS

K3S = "/usr/local/bin/k3s"
IMAGE_DIR = "/var/lib/nr/images"
CACHE = Path("~/.cache/nr/images").expanduser()
DEFAULT_BASE_IMAGE = "python:3.11-slim"
ROLLOUT_TIMEOUT = 180


@dataclass(frozen=True)
class LocalImage:
    name: str  # aeroalpes / aeroalpes-adapter
    ref: str  # name:tag
    image_id: str  # sha256:...
    tarball: Path


def project_version() -> str:
    from nr import __version__

    return __version__


def k3s_hosts(ctx: PlayContext) -> list[Host]:
    return [h for h in ctx.all_hosts() if h in ctx.all_hosts(K3S_SERVERS) or h in ctx.all_hosts(K3S_AGENTS)]


def redis_address(host: Host) -> str:
    return str(host.get("node_ip") or host.hostname)


def app_site(ctx: PlayContext) -> AppSite:
    """The app's settings: Redis ports from the redis hosts, the rest from the first k3s server."""
    first = (ctx.all_hosts(K3S_SERVERS) or ctx.all_hosts())[0]
    redis_hosts = ctx.all_hosts(REDIS)
    ports = (redis_hosts[0].get("redis_ports") if redis_hosts else None) or [7000, 7003]
    nodes = tuple((redis_address(h), int(p)) for h in redis_hosts for p in ports)
    registry = first.get("image_registry") or None
    return AppSite(
        # images built here get a tag per source content (a code change rolls the pods); a registry
        # holds what the operator pushed there: the released version
        tag=project_version() if registry else source_tag(),
        redis_nodes=nodes,
        node_port=int(first.get("adapter_node_port") or DEFAULT_NODE_PORT),
        registry=registry,
    )


def redis_password(ctx: PlayContext) -> str:
    ref = ctx.all_hosts(REDIS)[0].get("redis_password")
    if not ref:
        raise NrError("deploy: data.redis_password is not set (the services need it)")
    try:
        value = SecretRef.parse(ref).resolve().reveal()
    except SecretError as exc:
        raise NrError(f"deploy: data.redis_password ({ref}): {exc}") from None
    REDACTOR.add(base64.b64encode(value.encode()).decode())  # the Secret's data field, in kubectl output
    return value


def docker(*args: str, timeout: float = 600) -> str:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise NrError(f"docker {args[0]} failed: {proc.stderr.strip()[-500:]}")
    return proc.stdout


def local_images(site: AppSite, base_image: str, dry_run: bool) -> list[LocalImage] | None:
    """Build (if missing) and save the images on the controller. ``None`` under dry-run when missing."""
    refs = [site.image(n) for n in IMAGES]
    ids = {}
    for ref in refs:
        proc = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", ref], capture_output=True, text=True,
                              check=False)  # fmt: skip
        if proc.returncode == 0:
            ids[ref] = proc.stdout.strip()
    if len(ids) < len(refs):
        if dry_run:
            return None
        from tasks.deploy.images import ImageBuildError, build_images

        try:
            build_images(base_image=base_image, tag=site.tag)
        except ImageBuildError as exc:
            raise NrError(f"deploy: building the images failed: {exc}") from None
        ids = {ref: docker("image", "inspect", "-f", "{{.Id}}", ref).strip() for ref in refs}
    out = []
    CACHE.mkdir(parents=True, exist_ok=True)
    for name, ref in zip(IMAGES, refs, strict=True):
        tarball = CACHE / f"{name}-{site.tag}-{ids[ref].removeprefix('sha256:')[:16]}.tar"
        if not tarball.exists() and not dry_run:  # a dry run (and drift) writes nothing, here either
            tmp = tarball.with_name(f"{tarball.name}.{os.getpid()}.tmp")
            docker("save", "-o", str(tmp), ref)
            tmp.replace(tarball)
            for old in CACHE.glob(f"{name}-*.tar"):  # earlier builds: only the current one is pushed
                if old != tarball and re.fullmatch(rf"{re.escape(name)}-\d[^/]*\.tar", old.name):
                    old.unlink(missing_ok=True)
        out.append(LocalImage(name, ref, ids[ref], tarball))
    return out


def image_facts(images: list[LocalImage]) -> dict[str, str]:
    cmds = {"ctr": f"{K3S} ctr images ls -q 2>/dev/null || echo 'k3s not running'"}
    for img in images:
        cmds[f"id {img.name}"] = f"cat {IMAGE_DIR}/{img.name}.id 2>/dev/null || true"
    return cmds


def _normalize(ref: str) -> str:
    """containerd's full name for an image ref (what `ctr images ls -q` lists)."""
    first, _, rest = ref.partition("/")
    if not rest:
        return f"docker.io/library/{ref}"
    if "." in first or ":" in first or first == "localhost":
        return ref  # a registry host
    return f"docker.io/{ref}"


def plan_images(images: list[LocalImage], facts: Facts) -> list[Change]:
    """Images this node lacks: pushed over SFTP and imported (pure but for hashing the tarballs)."""
    listed = set(facts.out("ctr").split())
    changes = []
    for img in images:
        have_id = facts.out(f"id {img.name}").strip()
        if have_id == img.image_id and _normalize(img.ref) in listed:
            continue
        dest = f"{IMAGE_DIR}/{img.name}.tar"
        # the tarball is only compared when the marker says the image is missing: hashing big files on
        # every run would cost more than it saves. A dry run may have no tarball: nothing to upload then
        saved = img.tarball.exists()
        upload = plan_upload(img.tarball, dest, FileState(dest, False), mode=0o600) if saved else None
        script = (
            f'[ -x {K3S} ] || {{ echo "k3s is not installed on this node: run nr run k3s first" >&2; exit 1; }}\n'
            + (upload.script + "\n" if upload else "")
            + f"{K3S} ctr images import {quote(dest)} >/dev/null\n"
            + f"echo {quote(img.image_id)} > {IMAGE_DIR}/{img.name}.id"
        )
        size = f"{img.tarball.stat().st_size // 1024} KiB" if saved else "not saved yet"
        changes.append(
            Change(
                f"image {img.ref}",
                f"imported ({img.image_id[:19]})",
                f"{have_id[:19] or 'absent'}",
                script,
                f"+ import image {img.ref} ({img.image_id[:19]}, {size})\n",
                upload=upload.upload if upload else None,
            )
        )
    return changes


def _images(task: Task, images: list[LocalImage]) -> Result:
    conn = remote(task)
    facts = gather(conn, commands=image_facts(images))
    return apply_changes(task, plan_images(images, facts), conn=conn, timeout=600)


def manifests(site: AppSite, password: str) -> str:
    return manifests_yaml([*with_config_digest(render(site), password), build_secret(password)])


def _apply_script(doc: str, verb: str) -> str:
    """Write the manifests (with the Secret) to a private temp file, run kubectl, remove the file."""
    return (
        "set -e\n"
        "m=$(mktemp /run/nr-manifests.XXXXXX)\n"
        "trap 'rm -f \"$m\"' EXIT\n"
        f"cat > \"$m\" <<'NR_EOF'\n{doc}NR_EOF\n"
        f"{verb}"
    )


NO_K3S = "NR-NO-K3S"
NO_K3S_GUARD = f"[ -x {K3S} ] || {{ echo {NO_K3S}; exit 0; }}\n"


def _apply(task: Task, site: AppSite, password: str) -> Result:
    conn = remote(task)
    doc = manifests(site, password)
    diff = (
        f'{NO_K3S_GUARD}rc=0; {K3S} kubectl diff -f "$m" || rc=$?; echo "NR-DIFF-RC=$rc"\n'
        f"{K3S} kubectl get deployments -n {NAMESPACE} -o json 2>/dev/null || echo '{{}}'\n"
    )
    probe = conn.run(_apply_script(doc, diff))
    if probe.stdout.strip() == NO_K3S:
        change = Change("the app (namespace aeroalpes)", "deployed", f"k3s is not installed on {task.host.name}",
                        "", f"k3s is not installed on {task.host.name}: nothing can be applied yet\n",
                        fix="nr run k3s && nr run deploy")  # fmt: skip
        if not task.is_dry_run():
            raise NrError(f"k3s is not installed on {task.host.name}: run `nr run k3s` first")
        return Result(host=task.host, changed=True, diff=change.diff, changes=[change])
    text, _, tail = probe.stdout.rpartition("NR-DIFF-RC=")
    rc, _, status_json = tail.partition("\n")
    text, rc = text.strip(), rc.strip()
    if rc not in ("0", "1") or (rc == "1" and not text):
        raise NrError(f"kubectl diff failed (exit {rc}): {probe.stderr.strip()[-800:]}")
    if rc == "0":
        unavailable = _unavailable(parse_deployments(status_json))
        if unavailable and not task.is_dry_run():  # applied earlier, but the rollout never completed
            waits = "\n".join(_rollout_status(d) for d in unavailable)
            try:
                conn.run(waits, timeout=ROLLOUT_TIMEOUT * 3)
            except NrError as exc:
                raise NrError(f"the manifests are applied but {', '.join(unavailable)} never became "
                              f"available: {exc}") from None  # fmt: skip
        return Result(host=task.host, changed=False, changes=[])
    change = Change("manifests (namespace aeroalpes)", "as rendered from k3s/", "differs (kubectl diff)", "",
                    text + "\n", fix="nr run deploy")  # fmt: skip
    if not task.is_dry_run():
        waits = "\n".join(_rollout_status(d) for d in DEPLOYMENTS)
        conn.run(_apply_script(doc, f'{K3S} kubectl apply -f "$m"\n{waits}'), timeout=ROLLOUT_TIMEOUT * 3)
    return Result(host=task.host, changed=True, diff=change.diff, changes=[change])


def _rollout_status(deployment: str) -> str:
    return f"{K3S} kubectl rollout status deployment/{deployment} -n {NAMESPACE} --timeout={ROLLOUT_TIMEOUT}s"


def parse_deployments(out: str) -> dict[str, tuple[int, int]]:
    """``kubectl get deployments -o json`` -> name -> (ready replicas, wanted replicas)."""
    status = {}
    for item in json.loads(out or "{}").get("items", []):
        spec, st = item.get("spec", {}), item.get("status", {})
        status[item["metadata"]["name"]] = (int(st.get("readyReplicas") or 0), int(spec.get("replicas") or 0))
    return status


def _unavailable(status: dict[str, tuple[int, int]]) -> list[str]:
    return [d for d in DEPLOYMENTS if d in status and status[d][0] < status[d][1]]


def deployments_status(task: Task) -> dict[str, tuple[int, int]] | None:
    """name -> (ready replicas, wanted replicas) of the app's Deployments, read on this (first) server;
    None when k3s is not installed there."""
    out = remote(task).run(f"{NO_K3S_GUARD}{K3S} kubectl get deployments -n {NAMESPACE} -o json").stdout
    if out.strip() == NO_K3S:
        return None
    return parse_deployments(out)


class DeployComponent:
    name = "deploy"

    def validate(self, ctx: PlayContext) -> list[str]:
        if not ctx.all_hosts(K3S_SERVERS):
            return []
        problems = []
        if not ctx.all_hosts(REDIS):
            problems.append(
                "deploy: the services keep reservations in Redis: the inventory needs a 'redis' group"
            )
        else:
            try:
                redis_password(ctx)
            except NrError as exc:
                problems.append(str(exc))
            for host in ctx.all_hosts(REDIS):
                try:
                    ipaddress.ip_address(redis_address(host))
                except ValueError:
                    problems.append(
                        f"deploy: redis host {host.name}: address {redis_address(host)!r} is not an IP address; "
                        "the app's NetworkPolicy allows Redis by IP: set data.node_ip"
                    )
        if not app_site(ctx).registry and shutil.which("docker") is None:
            problems.append(
                "deploy: Docker is needed on this machine to build the images (or set data.image_registry to pull "
                "them from a registry)"
            )
        return problems

    def _prepare(self, ctx: PlayContext) -> tuple[AppSite, str, list[LocalImage] | None]:
        site = app_site(ctx)
        password = redis_password(ctx)
        images: list[LocalImage] | None = []
        if not site.registry:
            base = ctx.all_hosts()[0].get("image_base") or DEFAULT_BASE_IMAGE
            images = local_images(site, str(base), ctx.dry_run)
        return site, password, images

    def apply(self, ctx: PlayContext) -> None:
        if not ctx.all_hosts(K3S_SERVERS):
            ctx.note("no host in group 'k3s_servers': nothing to deploy")
            return
        site, password, images = self._prepare(ctx)
        if images is None:
            ctx.note("the images are not built yet: a real run builds them here with Docker and pushes them")
        elif images:
            ctx.run_nornir(
                "images",
                lambda task: _images(task, images),
                hosts=[h for h in k3s_hosts(ctx) if h in ctx.hosts()],
            )
        first = ctx.all_hosts(K3S_SERVERS)[0]
        ctx.run_nornir("apply", lambda task: _apply(task, site, password), hosts=[first])

    def check(self, ctx: PlayContext) -> None:
        return  # the app's checks live in the `checks` component (tasks/checks.py)

    def drift(self, ctx: PlayContext) -> None:
        if not ctx.all_hosts(K3S_SERVERS):
            return
        self.apply(ctx)  # a dry run: images missing on nodes and `kubectl diff` become drift items


component = DeployComponent()
