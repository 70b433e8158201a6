"""Where a field of a YAML document is: field path -> 1-based line (pure, PyYAML's
composer), so config errors name the line as well as the path (device and server
configs alike)."""

from __future__ import annotations

#: a field path as pydantic reports it: mapping keys and list indexes
Loc = tuple[str | int, ...]


def line_map(text: str) -> dict[Loc, int]:
    """Field path -> 1-based YAML line of its value (keys of mappings, indexes of lists);
    empty when the text is not YAML."""
    import yaml

    lines: dict[Loc, int] = {}

    def walk(node: yaml.Node, path: Loc) -> None:
        lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                child = (*path, str(key.value))
                walk(value, child)
                # A scalar on the key's own line reads better than a block below it.
                lines[child] = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, (*path, i))

    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return lines
    if root is not None:
        walk(root, ())
    return lines


def line_of(lines: dict[Loc, int], loc: Loc) -> int | None:
    """The YAML line of ``loc`` or, for a missing field, of its nearest parent."""
    for n in range(len(loc), -1, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return None
