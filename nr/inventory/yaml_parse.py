"""Parsing one inventory YAML file with the checks :mod:`nr.inventory.loader` promises: duplicate keys
and alias bombs are refused, every error names the file and line. Imported only when a file is parsed
(PyYAML's import is most of the cost; :mod:`nr.inventory.parse_cache` usually spares it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from nr.errors import InventoryError
from nr.text import clip

# Nodes of a document with every alias expanded: a "billion laughs" document is a few hundred bytes
# whose aliases expand to hundreds of millions of nodes (seconds and gigabytes in every later walk).
MAX_NODES = 100_000


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses duplicate keys instead of silently keeping the last one."""


def _construct_mapping(
    loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False
) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # "<<: *defaults": merged keys may be overridden (construct_mapping merges)
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key '{clip(key)}' (first at line {seen[key] + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark.line
    return dict(loader.construct_mapping(node, deep=deep))


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


class _TooLarge(Exception):
    def __init__(self, message: str, node: yaml.Node) -> None:
        super().__init__(message)
        self.node = node


def expanded_size(root: yaml.Node, limit: int = MAX_NODES) -> int:
    """How many nodes ``root`` has with every alias expanded (an alias shares its anchor's node
    object); raises :class:`_TooLarge` past ``limit`` or on a recursive alias."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise _TooLarge("a recursive alias (a node that contains itself)", node)
        active.add(key)
        total = 1
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        for child in children:
            total += size(child)
            if total > limit:
                raise _TooLarge(
                    f"expands to more than {limit} values through YAML aliases (an alias bomb?); "
                    "write the values out or use fewer aliases",
                    node,
                )
        active.discard(key)
        sizes[key] = total
        return total

    return size(root)


def _where(node: yaml.Node) -> str:
    mark = node.start_mark
    return f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""


def _load(path: Path, text: str) -> Any:
    loader = _UniqueKeyLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        try:
            expanded_size(node)
        except _TooLarge as exc:
            raise InventoryError([f"{path}: {_where(exc.node)}{exc}"]) from None
        return loader.construct_document(node)
    finally:
        loader.dispose()


def parse(path: Path, text: str) -> Any:
    """The document in ``text`` (read from ``path``); errors are InventoryErrors naming the file."""
    try:
        return _load(path, text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise InventoryError([f"{path}: {where}{clip(exc.problem or exc.context, 200)}"]) from None
    except yaml.YAMLError as exc:
        raise InventoryError([f"{path}: not valid YAML: {clip(str(exc), 200)}"]) from None
    except RecursionError:
        raise InventoryError([f"{path}: nested too deeply"]) from None
