"""Format checks for inventory values (``Field.check``): each returns a problem ("must be ...") or None.

Values that reach a shell, a config file or another program's options are refused up front unless
they have the exact format that program expects, so data is never executed or taken for an option.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from typing import Any

from nr.text import clip

Check = Callable[[Any], "str | None"]

_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_DNS_LABEL_ANY_CASE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_IFACE = re.compile(r"^[A-Za-z0-9_.:@-]{1,15}$")
# Kubernetes label keys: optional DNS-subdomain prefix "/" name (63 chars, alphanumeric ends, -_. inside)
_K8S_NAME = r"[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?"
_K8S_VALUE = re.compile(rf"^({_K8S_NAME})?$")
_TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
# An image reference: [registry[:port]/]path[:tag][@sha256:hex] (distribution/reference grammar, simplified)
_IMAGE = re.compile(
    r"^(?:(?P<registry>[A-Za-z0-9.-]+(?::[0-9]+)?)/)?"
    r"(?P<path>[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[a-f0-9]{64}))?$"
)


def is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def is_dns_name(value: str) -> bool:
    """An RFC 1123 host name: dot-separated labels of letters, digits and inner hyphens, <= 253 chars."""
    if not value or len(value) > 253:
        return False
    labels = value.rstrip(".").split(".")
    return all(_DNS_LABEL_ANY_CASE.match(label) for label in labels)


def address(value: Any) -> str | None:
    """An IP address or an RFC 1123 DNS name (no shell characters, no spaces, no options)."""
    if isinstance(value, str) and (is_ip(value) or is_dns_name(value)):
        return None
    return "must be an IP address or an RFC 1123 DNS name (letters, digits, '-' and '.')"


def dns_label(value: Any) -> str | None:
    if isinstance(value, str) and _DNS_LABEL.match(value):
        return None
    return "must be a DNS label: lowercase letters, digits and inner '-', at most 63 characters"


def cidr(value: Any) -> str | None:
    try:
        ipaddress.ip_network(str(value), strict=True)
    except ValueError as exc:
        return f"must be a network in CIDR notation (e.g. 10.42.0.0/16): {exc}"
    return None


def interface(value: Any) -> str | None:
    if isinstance(value, str) and _IFACE.match(value) and not value.startswith("-"):
        return None
    return "must be a network interface name (at most 15 letters, digits, '_', '.', '-', ':' or '@')"


def _label_key_problem(key: str) -> str | None:
    prefix, _, name = key.rpartition("/")
    if prefix and not is_dns_name(prefix):
        return f"label key prefix {clip(repr(prefix))} is not a DNS subdomain"
    if not re.match(rf"^{_K8S_NAME}$", name):
        return f"label key name {clip(repr(name))} must be 1-63 letters, digits, '-', '_' or '.', alphanumeric at both ends"
    return None


def k8s_label(value: Any) -> str | None:
    """``key=value`` with Kubernetes label syntax."""
    if not isinstance(value, str) or "=" not in value:
        return "must be key=value (a Kubernetes label)"
    key, _, val = value.partition("=")
    problem = _label_key_problem(key)
    if problem:
        return problem
    if not _K8S_VALUE.match(val):
        return f"label value {clip(repr(val))} must be at most 63 letters, digits, '-', '_' or '.', alphanumeric at both ends"
    return None


def k8s_taint(value: Any) -> str | None:
    """``key[=value]:Effect`` with Kubernetes taint syntax."""
    if not isinstance(value, str) or ":" not in value:
        return f"must be key[=value]:Effect with Effect one of {', '.join(_TAINT_EFFECTS)}"
    body, _, effect = value.rpartition(":")
    if effect not in _TAINT_EFFECTS:
        return f"taint effect {clip(repr(effect))} must be one of {', '.join(_TAINT_EFFECTS)}"
    key, _, val = body.partition("=")
    return _label_key_problem(key) or (
        None if _K8S_VALUE.match(val) else f"taint value {clip(repr(val))} is not valid"
    )


def image_ref(value: Any) -> str | None:
    """A container image reference or registry (``registry[:port]/path[:tag][@sha256:...]``)."""
    if isinstance(value, str) and len(value) <= 255 and _IMAGE.match(value):
        return None
    return "must be an image reference such as registry.example:5000/team/app:1.0 or name@sha256:<64 hex>"


def port_range(low: int, high: int, what: str) -> Check:
    def check(value: Any) -> str | None:
        if isinstance(value, int) and low <= value <= high:
            return None
        return f"must be {what} ({low}-{high})"

    return check


def each(check: Check) -> Check:
    """Apply ``check`` to every item of a list; the first problem names the item."""

    def check_all(values: Any) -> str | None:
        for v in values if isinstance(values, list) else []:
            problem = check(v)
            if problem:
                return f"{clip(repr(v))}: {problem}"
        return None

    return check_all


def one_of(allowed: Iterable[str]) -> Check:
    choices = tuple(allowed)

    def check(value: Any) -> str | None:
        return None if value in choices else f"must be one of {', '.join(choices)}"

    return check
