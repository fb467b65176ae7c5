"""What /mcp reads before the SDK does: the body must be UTF-8 JSON of a sane shape.

The SDK's transport parses the body with ``json.loads`` and catches only ``JSONDecodeError``: a body that
is not UTF-8, JSON nested thousands deep (RecursionError) or an integer of thousands of digits
(ValueError) would be its 500, with a traceback in the log. And arguments nested deeper than pydantic
validates become a protocol error with no sentence. So the endpoint parses the body first (it is at most
the server's body limit, already read whole) and answers these itself: a JSON-RPC parse error (400)
saying what is wrong with the body, or, for a tool call whose arguments are nested too deep, a tool
result with ``isError`` and the sentence, as every other refused call."""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 32  # levels of JSON in a message; the tools' arguments need five or six


def depth(value: Any) -> int:
    """How deeply ``value`` nests (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        deepest = max(deepest, level)
        if level <= MAX_DEPTH:  # past the limit the answer is known: stop walking
            stack.extend((child, level + 1) for child in children)
    return deepest


def _error(message: str, code: int = -32700) -> tuple[int, dict[str, Any]]:
    return 400, {"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}}


def refusal(body: bytes) -> tuple[int, dict[str, Any]] | None:
    """The answer to give instead of the SDK's (status, JSON document), or None to hand the body on."""
    try:
        doc = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        return _error("the body is not UTF-8: send one JSON-RPC message as UTF-8 JSON")
    except RecursionError:
        return _error(f"the body is JSON nested too deeply: at most {MAX_DEPTH} levels")
    except ValueError as exc:  # bad JSON, or an integer longer than Python converts
        return _error(f"the body is not valid JSON ({str(exc)[:120]}): send one JSON-RPC message")
    if depth(doc) <= MAX_DEPTH:
        return None
    if isinstance(doc, dict) and doc.get("method") == "tools/call" and isinstance(doc.get("id"), (int, str)):
        text = (f"the arguments are nested more than {MAX_DEPTH} levels deep: give each argument as the tool's "
                "schema describes it (strings, numbers, lists of strings)")
        return 200, {"jsonrpc": "2.0", "id": doc["id"],
                     "result": {"content": [{"type": "text", "text": text}], "isError": True}}
    return _error(f"the message is nested more than {MAX_DEPTH} levels deep", code=-32600)
