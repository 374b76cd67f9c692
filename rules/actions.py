"""Typed actions the engine asks the shell to carry out. Frozen, no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rules.interlock import ChecklistChanged, Ignition, PermitNotice
from rules.values import Severity


@dataclass(frozen=True, slots=True)
class SetOutput:
    """Write a coil and read it back."""

    output: str
    value: bool
    reason: str


@dataclass(frozen=True, slots=True)
class AlarmUpdate:
    """The state of one signal's alarms and fault changed (published retained per zone/signal)."""

    zone: str
    signal: str
    severity: Severity
    """Worst active condition of the signal (NORMAL when clear)."""
    state: Mapping[str, Any]
    """Snapshot of the signal's alarm state, JSON-ready."""


@dataclass(frozen=True, slots=True)
class HazardRecord:
    """A hazard for the central ledger (through the durable outbox)."""

    zone: str
    category: str
    """gas | fire | electrical | mechanical | confined_space | management"""
    level: str
    """general | major"""
    title: str
    evidence: Mapping[str, Any] = field(default_factory=dict)
    recurring: bool = False
    """Set by the hazard rule when the same zone + category recurs N times within M days."""


@dataclass(frozen=True, slots=True)
class Note:
    """A decision worth a structured log line and an audit record (logged on change only)."""

    event: str
    fields: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EvacuationUpdate:
    """A confined space's evacuation state or its people changed (published retained per zone)."""

    zone: str
    active: bool
    people: tuple[str, ...]
    """Who is still inside (person ids; "badge:<id>" for an unknown badge)."""
    reason: str = ""


@dataclass(frozen=True, slots=True)
class PeopleUpdate:
    """Who is inside a confined space, or its people conditions, changed."""

    zone: str
    inside: tuple[str, ...]
    conditions: Mapping[str, str] = field(default_factory=dict)
    """Active people conditions (attendant_absent, over_occupancy, unauthorized_entrant) -> reason."""


Action = (
    SetOutput
    | AlarmUpdate
    | HazardRecord
    | Note
    | EvacuationUpdate
    | PeopleUpdate
    | Ignition
    | PermitNotice
    | ChecklistChanged
)
