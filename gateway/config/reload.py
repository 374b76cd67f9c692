"""What a SIGHUP changes: every changed setting, and whether it applies live or needs a restart.

Derived from the `Reload` markers in gateway/config/models.py, so the list of "needs a restart"
settings is never kept by hand. A list of items with ids (zones, signals, ...) is compared
item by item; adding, removing or renaming items changes the structure, which needs a restart.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from gateway.config import RESTART, Reload


@dataclass(frozen=True, slots=True)
class Change:
    setting: str
    """Dotted path, items by id: `engine.tick_s`, `signals.bay2_lel.thresholds`."""
    reload: Reload


def changes(old: BaseModel, new: BaseModel) -> list[Change]:
    """Every setting that differs between two configurations, with how it reloads."""
    out: list[Change] = []
    _walk(old, new, "", RESTART, out)
    return out


def _marker(metadata: list[object], inherited: Reload) -> Reload:
    return next((m for m in metadata if isinstance(m, Reload)), inherited)


def _walk(old: BaseModel, new: BaseModel, path: str, inherited: Reload, out: list[Change]) -> None:
    for name, info in type(old).model_fields.items():
        a, b = getattr(old, name), getattr(new, name)
        if a == b:
            continue
        where = f"{path}{name}"
        mode = _marker(info.metadata, inherited)
        if isinstance(a, BaseModel) and isinstance(b, BaseModel):
            _walk(a, b, where + ".", mode, out)
        elif isinstance(a, tuple) and isinstance(b, tuple) and _same_items(a, b):
            for x, y in zip(a, b, strict=True):
                if x != y:
                    _walk(x, y, f"{where}.{_key(x)}.", mode, out)
        elif isinstance(a, tuple) and isinstance(b, tuple) and all(isinstance(x, BaseModel) for x in (*a, *b)):
            out.append(Change(f"{where} (items added, removed or renamed)", RESTART))
        else:
            out.append(Change(where, mode))


def _key(item: BaseModel) -> str:
    return str(getattr(item, "id", None) or getattr(item, "beacon", None) or getattr(item, "user", None) or "?")


def _same_items(a: tuple[object, ...], b: tuple[object, ...]) -> bool:
    """Two lists of models with the same ids in the same order (compared item by item)."""
    if len(a) != len(b) or not all(isinstance(x, BaseModel) for x in (*a, *b)):
        return False
    return [_key(x) for x in a] == [_key(y) for y in b]  # type: ignore[arg-type]


__all__ = ["Change", "changes"]
