"""Write a configuration dict back as TOML (tests and the bench generate configs with it).

Enough TOML for the gateway's config shape: top-level tables of scalars and inline
values, and arrays of tables. tomllib reads what this writes (tested by round trip).
"""

from __future__ import annotations

import json
from typing import Any


def _val(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_val(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_val(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"no TOML form for {type(v).__name__}")


def dumps(raw: dict[str, Any]) -> str:
    head: list[str] = []
    out: list[str] = []
    for key, v in raw.items():
        if isinstance(v, list) and v and isinstance(v[0], dict):
            for item in v:
                out.append(f"[[{key}]]")
                out += [f"{k} = {_val(x)}" for k, x in item.items()]
                out.append("")
        elif isinstance(v, dict):
            out.append(f"[{key}]")
            out += [f"{k} = {_val(x)}" for k, x in v.items()]
            out.append("")
        else:
            head.append(f"{key} = {_val(v)}")
    return "\n".join(head + out)
