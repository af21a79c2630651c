"""The service images on each k3s node: what containerd has, and the changes that ship them.

A node gets an image over SFTP and ``k3s ctr images import`` only when it lacks it: containerd does
not list the ref, or nr's marker (``/var/lib/nr/images/<name>.id``) names another image ID. An
imported image is pinned: labelled ``io.cri-containerd.pinned=pinned`` (``k3s ctr images label``),
the label the CRI plugin turns into a pinned image, which the kubelet's image garbage collection
skips ("Image is pinned, skipping garbage collection", kubelet image_gc_manager ``freeSpace``).
``ctr images import`` alone leaves an image unpinned (unlike images k3s imports from its agent
images folder, which it labels itself and unlabels at the next start when their tarball is gone:
k3s pkg/agent/containerd ``labelImages``/``clearLabels``, k3s#8781). Unpinned, the images of a
deployment whose pods are not running (a rollout, a scale-down) may be deleted under disk
pressure, and the next pod start would try to pull ``docker.io/library/aeroalpes`` and fail.
nr's label is not k3s's ``io.cattle.k3s.pinned``, so k3s never clears it.

The images are built on the operator's machine for its architecture: a node of another
architecture is refused with both names (:func:`arch_problem`), before anything is built or sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from shlex import quote

from nr.changes import Change
from nr.facts import FileState, Output
from nr.ops.files import plan_upload
from nr.ops.release import UNAME_ARCH
from tasks.deploy.site import K3S

IMAGE_DIR = "/var/lib/nr/images"
CTR = f"{K3S} ctr"
PIN_LABEL = "io.cri-containerd.pinned"
PINNED = f"{PIN_LABEL}=pinned"
NO_K3S = "k3s is not installed on this node: run nr run k3s first"


@dataclass(frozen=True)
class Image:
    """A service image to ship: its ID and tarball once built and saved here (None: not yet)."""

    name: str  # aeroalpes / aeroalpes-adapter
    ref: str  # name:tag (or registry/name:tag)
    image_id: str | None = None
    tarball: Path | None = None


@dataclass(frozen=True)
class NodeImages:
    """What one node's containerd has, as read in one round trip."""

    uname: str  # `uname -m`
    listed: frozenset[str] = frozenset()  # refs containerd lists (full names)
    pinned: frozenset[str] = frozenset()  # refs labelled pinned
    markers: dict[str, str] = field(default_factory=dict)  # image name -> image ID nr imported
    ctr_error: str = ""  # why `k3s ctr` could not list the images ("" when it could)

    @property
    def arch(self) -> str:
        return UNAME_ARCH.get(self.uname, self.uname)


def facts_commands(names: Iterable[str]) -> dict[str, str]:
    cmds = {"arch": "uname -m", "images": f"{CTR} images ls"}  # one ctr start: refs and their labels
    for name in names:
        cmds[f"id {name}"] = f"cat {IMAGE_DIR}/{name}.id 2>/dev/null || true"
    return cmds


def parse_images(text: str) -> tuple[frozenset[str], frozenset[str]]:
    """``ctr images ls`` -> (every ref, the refs labelled pinned). The table (containerd
    cmd/ctr/commands/images/images.go): a ``REF TYPE DIGEST SIZE PLATFORMS LABELS`` header, then one
    row per image, the ref first and the labels as sorted ``k=v`` pairs joined with commas (``-``: none);
    SIZE holds a space ("24.6 MiB"), so a row is read as its first word and its comma-separated words."""
    listed, pinned = set(), set()
    for line in text.splitlines():
        words = line.split()
        if not words or words[0] == "REF":
            continue
        listed.add(words[0])
        if PINNED in {pair for word in words[1:] for pair in word.split(",")}:
            pinned.add(words[0])
    return frozenset(listed), frozenset(pinned)


def observe(outputs: dict[str, Output], names: Iterable[str]) -> NodeImages:
    """Parse the facts (stdout only; ctr's stderr is the reason when it fails)."""
    images = outputs["images"]
    listed, pinned = parse_images(images.text) if images.ok else (frozenset(), frozenset())
    return NodeImages(
        uname=outputs["arch"].text.strip(),
        listed=listed,
        pinned=pinned,
        markers={n: outputs[f"id {n}"].text.strip() for n in names},
        ctr_error="" if images.ok else f"k3s ctr: {images.explain(300)}",
    )


def normalize(ref: str) -> str:
    """containerd's full name for an image ref (what ``ctr images ls -q`` lists)."""
    first, _, rest = ref.partition("/")
    if not rest:
        return f"docker.io/library/{ref}"
    if "." in first or ":" in first or first == "localhost":
        return ref  # a registry host
    return f"docker.io/{ref}"


def arch_problem(host: str, node: NodeImages, build_arch: str) -> str | None:
    """Why this node cannot run images built here (None: it can)."""
    if node.arch == build_arch:
        return None
    return (
        f"node {host} is {node.arch} (uname -m: {node.uname or '?'}), but the service images are built on "
        f"this machine for {build_arch}: build them on a {node.arch} machine, or push {node.arch} images to a "
        "registry and set data.image_registry"
    )


def _import_change(img: Image, node: NodeImages, fix: str) -> Change:
    dest = f"{IMAGE_DIR}/{img.name}.tar"
    full = normalize(img.ref)
    # the tarball is only hashed when the node lacks the image: hashing big files on every run would cost
    # more than it saves. A dry run may have no tarball yet: nothing to upload then
    upload = (
        plan_upload(img.tarball, dest, FileState(dest, False), mode=0o600, stamp=False)
        if img.tarball
        else None
    )
    lines = [f'[ -x {K3S} ] || {{ echo "{NO_K3S}" >&2; exit 1; }}']
    lines += [upload.script] if upload else []
    lines += [
        f"{CTR} images import {quote(dest)} >/dev/null",
        f"{CTR} images label {quote(full)} {PINNED} >/dev/null",
    ]
    if img.image_id:
        lines.append(f"echo {quote(img.image_id)} > {IMAGE_DIR}/{img.name}.id")
    have = node.markers.get(img.name, "")
    size = f"{img.tarball.stat().st_size // 1024} KiB" if img.tarball else "not saved yet"
    ident = (img.image_id or "not built yet")[:19]
    return Change(
        f"image {img.ref}",
        f"imported and pinned ({ident})",
        node.ctr_error or (have[:19] if full in node.listed and have else "absent"),
        "\n".join(lines),
        f"+ import image {img.ref} ({ident}, {size}) and pin it\n",
        fix,
        upload=upload.upload if upload else None,
    )


def _pin_change(img: Image, fix: str) -> Change:
    full = normalize(img.ref)
    return Change(
        f"image {img.ref} pinned",
        PINNED,
        "not pinned (kubelet's image garbage collection may delete it)",
        f"{CTR} images label {quote(full)} {PINNED} >/dev/null",
        f"~ pin image {img.ref} ({PINNED})\n",
        fix,
    )


def plan_images(images: Sequence[Image], node: NodeImages, fix: str = "") -> list[Change]:
    """The images this node lacks (pushed, imported, pinned) or has unpinned (pinned)."""
    changes = []
    for img in images:
        full = normalize(img.ref)
        have = node.markers.get(img.name, "")
        current = full in node.listed and (img.image_id is None or have == img.image_id)
        if not current:
            changes.append(_import_change(img, node, fix))
        elif full not in node.pinned:
            changes.append(_pin_change(img, fix))
    return changes
