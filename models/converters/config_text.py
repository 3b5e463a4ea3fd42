"""mmengine config text (what mmaction2 stores in a checkpoint's `meta['cfg']`) read as plain data, without
running it: assignments of literals, `dict(...)` calls and earlier names; anything else reads as None.

A text that is not Python, or that has no `model=dict(...)`, is a `UserError` naming where it came from.
"""
from __future__ import annotations

import ast
from typing import Any, Dict

from errors import UserError


def _value(node: ast.AST, names: Dict[str, Any]) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_value(item, names) for item in node.elts]
    if isinstance(node, ast.Dict):
        return {_value(k, names): _value(v, names) for k, v in zip(node.keys, node.values) if k is not None}
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict":
        return {item.arg: _value(item.value, names) for item in node.keywords if item.arg}
    if isinstance(node, ast.Name):
        return names.get(node.id)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = _value(node.operand, names)
        return -inner if isinstance(inner, (int, float)) else None
    return None


def read_config_text(text: str, where: str) -> Dict[str, Any]:
    """The top-level assignments of a config text as plain data; needs a `model` dict."""
    try:
        tree = ast.parse(text)
    except SyntaxError as exc:
        raise UserError(f"{where} is not a readable mmaction2 config (line {exc.lineno}: {exc.msg})") from exc
    names: Dict[str, Any] = {}
    for statement in tree.body:
        if isinstance(statement, ast.Assign) and len(statement.targets) == 1 and isinstance(statement.targets[0], ast.Name):
            names[statement.targets[0].id] = _value(statement.value, names)
    if not isinstance(names.get("model"), dict):
        raise UserError(f"{where} is not an mmaction2 model config (no model=dict(...))")
    return names
