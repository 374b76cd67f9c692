"""The gateway's configuration model: one TOML file, validated by frozen, strict pydantic models.

Field checks happen here; checks across sections (ids, references, address overlaps,
profiles, files) happen in gateway/config/loader.py, which collects *every* problem so that
`check-config` can show them all at once, each with its dotted path and a hint.
"""

from __future__ import annotations

import dataclasses
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from rules.condition import InsulationClass, MachineCfg
from rules.config import STALE_AFTER_MAX_S, EngineCfg, OutputCfg, OutputKind, Quantity, ZoneCfg, ZoneKind
from rules.interlock import HotWorkCfg
from rules.presence import PresenceCfg
from rules.profiles import DEFAULT_PROFILE, Profile
from rules.vibration import BaselineCfg, Foundation, Group, IsoCfg

# Every default that the rules also know is taken from the rules' own dataclasses, and every
# choice the rules have an enum (or a Literal) for is that type: one source of truth, no copies.
_ENGINE = EngineCfg()
_HOT_WORK = HotWorkCfg()
_PRESENCE = PresenceCfg(receivers={})
_ISO = IsoCfg()
_BASELINE = BaselineCfg()


def _default(cls: Any, name: str) -> Any:
    """The default of one field of a rules dataclass that cannot be built without arguments."""
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    if f.default is dataclasses.MISSING:
        raise TypeError(f"{cls.__name__}.{name} has no default")
    return f.default


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Reload(StrEnum):
    """How a SIGHUP applies a change to a setting, declared beside the setting as Annotated metadata
    (`Annotated[Engine, LIVE]`); a field without one takes its section's, a section without one is
    RESTART. gateway/config/reload.py derives every reload's report from these."""

    LIVE = "live"
    """Applied at once: the rules' configuration is rebuilt and the engine loop reads it each cycle."""
    RESTART = "restart"
    """Built into a connection, a task or a device at start: applied by a restart only."""


LIVE, RESTART = Reload.LIVE, Reload.RESTART


Id = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")]
Port = Annotated[int, Field(ge=1, le=65535)]


class Site(_Model):
    id: Id
    gateway_id: Id
    name: str = ""
    profile: Profile = DEFAULT_PROFILE
    """Threshold profile for every signal unless the signal names its own (DOMAIN.md)."""


class Engine(_Model):
    tick_s: Annotated[float, Field(gt=0, le=1.0)] = 0.1
    """Period of the Tick that carries time forward (staleness, countdowns); also the watchdog ping."""
    silence_s: Annotated[float, Field(gt=0, le=600)] = _ENGINE.silence_s
    """Silence re-arms after this (DOMAIN.md: 60 s)."""
    hazard_dedup_s: Annotated[float, Field(ge=0, le=86400)] = _ENGINE.hazard_dedup_s
    """The same hazard (zone, category, title) is reported once per this window."""
    hazard_recur_n: Annotated[int, Field(ge=2, le=1000)] = _ENGINE.hazard_recur_n
    hazard_recur_days: Annotated[float, Field(gt=0, le=365)] = _ENGINE.hazard_recur_days
    """The same zone + category N times within these days escalates to "major" and "recurring"."""
    batch_max: Annotated[int, Field(ge=1, le=10_000)] = 256
    """Telemetry readings (non-gas, non-machine signals) applied in one engine step at most. Safety
    events are served between batches, so this bounds how long one waits behind telemetry
    (~256 x 10 us on one core; docs/performance.md). 1 = one step per reading."""
    telemetry_queue: Annotated[int, Field(ge=100, le=1_000_000), RESTART] = 20_000
    """Telemetry readings waiting for the engine at most; past it the oldest are dropped and counted
    (a dropped reading is followed by a fresher one; staleness is still judged per signal)."""


class Zone(_Model):
    id: Id
    kind: Annotated[ZoneKind, RESTART]
    name: str = _default(ZoneCfg, "name")
    max_occupancy: Annotated[int, Field(ge=0)] = _default(ZoneCfg, "max_occupancy")
    entrance: Id | None = None
    """Confined space: the zone at its entrance where the attendant must stay (default: the zone itself)."""
    entrants: tuple[Id, ...] = ()
    """Confined space: standing roster of people allowed inside, used while no permit is active."""
    attendant: Id | None = None
    """Confined space: standing attendant, used while no permit is active."""


class Watchdog(_Model):
    """The relay module's host watchdog (DOMAIN.md: default 1000 ms, refreshed at <= timeout/3)."""

    heartbeat_register: Annotated[int, Field(ge=0, le=65535)]
    timeout_ms: Annotated[int, Field(ge=100, le=60000)] = 1000
    timeout_register: Annotated[int, Field(ge=0, le=65535)] | None = None
    clear_register: Annotated[int, Field(ge=0, le=65535)] | None = None
    reassert_max: Annotated[int, Field(ge=1, le=20)] = 3
    """How many times a coil found away from its safe value while the gateway wants it safe (a
    third party's write, a relay that will not drop) is written safe again, counted since the last
    output-fault acknowledgement. One more, or a write that does not take, and the gateway stops
    feeding this module's watchdog so that the module drops every output by itself."""


class Point(_Model):
    """Where one signal's value comes from on its device."""

    signal: Id
    # Modbus
    table: Literal["holding", "input", "coil", "discrete"] = "holding"
    address: Annotated[int, Field(ge=0, le=65535)] | None = None
    type: Literal["int16", "uint16", "int32", "uint32", "float32"] = "int16"
    word_order: Literal["big", "little"] = "big"
    byte_order: Literal["big", "little"] = "big"
    scale: Annotated[float, Field(allow_inf_nan=False)] = 1.0
    offset: Annotated[float, Field(allow_inf_nan=False)] = 0.0
    current_loop: (
        tuple[Annotated[float, Field(allow_inf_nan=False)], Annotated[float, Field(allow_inf_nan=False)]] | None
    ) = None
    """Engineering range (at 4 mA, at 20 mA) of a raw 4-20 mA channel; NAMUR NE43 faults apply."""
    # MQTT
    topic: str | None = None
    json_path: str | None = None
    """Dotted path of the value in a JSON payload; absent: the payload is a bare number."""
    waveform: bool = False
    """MQTT vibration point whose topic carries acceleration waveforms ({"sample_rate_hz", "unit",
    "samples"}): the gateway computes the ISO 10816-3 velocity RMS (mm/s) itself."""

    @field_validator("scale")
    @classmethod
    def _nonzero(cls, v: float) -> float:
        if v == 0:
            raise ValueError("scale must not be 0 (every reading would be the offset)")
        return v

    def registers(self) -> int:
        return 2 if self.type in ("int32", "uint32", "float32") else 1


class DeviceStatusRegs(_Model):
    """A gas detector's status word and bump-test / calibration date registers (uint32 unix seconds)."""

    address: Annotated[int, Field(ge=0, le=65535)]
    table: Literal["holding", "input"] = "holding"
    warm_up_mask: Annotated[int, Field(ge=0, le=0xFFFF)] = 0x0001
    fault_mask: Annotated[int, Field(ge=0, le=0xFFFF)] = 0x0002
    over_range_mask: Annotated[int, Field(ge=0, le=0xFFFF)] = 0x0004
    bump_address: Annotated[int, Field(ge=0, le=65535)] | None = None
    calibration_address: Annotated[int, Field(ge=0, le=65535)] | None = None
    bump_interval_h: Annotated[float, Field(gt=0, le=24 * 30)] = 24.0
    """A bump test is due this long after the last (DOMAIN.md: every 24 h)."""
    calibration_interval_days: Annotated[float, Field(gt=0, le=3 * 365)] = 180.0
    """Calibration is due this long after the last (per the detector's manual; 180 days is a common default)."""


class Device(_Model):
    id: Id
    transport: Literal["modbus_tcp", "modbus_rtu", "mqtt"]
    host: str = "127.0.0.1"
    port: Port | None = None
    serial_port: str | None = None
    baudrate: Annotated[int, Field(ge=1200, le=921600)] = 19200
    parity: Literal["N", "E", "O"] = "E"
    """Modbus RTU default framing is 8E1."""
    stopbits: Literal[1, 2] = 1
    unit_id: Annotated[int, Field(ge=0, le=247)] = 1
    poll_s: Annotated[float, Field(gt=0, le=60)] = 1.0
    timeout_s: Annotated[float, Field(gt=0, le=30)] = 0.5
    retries: Annotated[int, Field(ge=0, le=5)] = 1
    max_gap: Annotated[int, Field(ge=0, le=100)] = 4
    """Largest hole (registers) one block read may span to merge neighbouring points."""
    points: tuple[Point, ...] = ()
    status: DeviceStatusRegs | None = None
    watchdog: Watchdog | None = None

    def bus(self) -> str:
        return self.serial_port or "" if self.transport == "modbus_rtu" else f"{self.host}:{self.port}"


class Signal(_Model):
    id: Id
    quantity: Annotated[Quantity, RESTART]
    unit: Annotated[str, RESTART]
    zone: Annotated[Id, RESTART]
    profile: Profile | None = None
    thresholds: dict[str, float] = Field(default_factory=dict)
    """Per-signal overrides by level name (e.g. {alarm1 = 8.0}) and `hot_work_max`."""
    stale_after_s: Annotated[float, Field(gt=0, le=300)] | None = None
    """Default: 3 x the device's poll period, at most 5 s (DOMAIN.md)."""


class Output(_Model):
    id: Id
    device: Id
    coil: Annotated[int, Field(ge=0, le=65535)]
    kind: OutputKind
    zone: Id
    """The zone the output serves (a trouble output: where its lamp hangs; it reports the whole gateway)."""
    safe: bool = _default(OutputCfg, "safe")
    """Coil value written at start, on shutdown and on any fault."""
    active_energized: bool = _default(OutputCfg, "active_energized")
    feedback_input: Annotated[int, Field(ge=0, le=65535)] | None = None
    """Discrete input wired to a force-guided contact; read back instead of the coil."""


class Machine(_Model):
    """A condition-monitored machine: vibration (ISO 10816-3) + winding temperature (insulation class)."""

    id: Id
    zone: Id
    name: str = ""
    vibration_signal: Id
    """A `vibration` signal in mm/s (an RMS point, or a waveform point analysed here)."""
    temperature_signal: Id
    """A `temperature` signal in degC: the winding RTD / 4-20 mA transmitter."""
    group: Group = _ISO.group
    """ISO 10816-3 group: 1 = large machines (> 300 kW), 2 = medium (15-300 kW)."""
    foundation: Foundation = _ISO.foundation
    insulation: InsulationClass = _default(MachineCfg, "insulation")
    """Winding insulation class: trip at the class (130/155/180 degC), alarm at the class below."""
    rate_of_rise_k_per_min: Annotated[float, Field(gt=0, le=100)] = _default(MachineCfg, "rate_of_rise_k_per_min")
    stop_output: Id | None = None
    """Output id of kind machine_run: de-energized while a trip or sensor fault is latched."""
    temperature_alarm_c: float | None = _default(MachineCfg, "temperature_alarm_c")
    temperature_trip_c: float | None = _default(MachineCfg, "temperature_trip_c")
    baseline_learn_count: Annotated[int, Field(ge=1, le=100_000)] = _BASELINE.learn_count
    """GOOD RMS values (zone A/B) whose median becomes the baseline (change alert at +25 %)."""
    fault_stops_machine: bool = _default(MachineCfg, "fault_stops_machine")
    """A BAD/stale/implausible input stops the machine (the worst case); False: alert only."""


class Person(_Model):
    id: Id
    name: str = ""


class Badge(_Model):
    """A BLE badge worn by a person."""

    beacon: Annotated[str, Field(pattern=r"^(ibeacon:[0-9a-f-]{36}:\d+:\d+|eddystone:[0-9a-f]{20}:[0-9a-f]{12})$")]
    """Canonical beacon id: "ibeacon:<uuid>:<major>:<minor>" or "eddystone:<namespace>:<instance>" (lower-case hex)."""
    person: Id


class Receiver(_Model):
    """Where BLE sightings are heard: this box's adapter, or an ESPresense room node over MQTT."""

    id: Id
    zone: Id
    kind: Literal["bluez", "espresense"] = "bluez"
    adapter: str = "hci0"
    room: str | None = None
    """ESPresense room name (the last topic level of espresense/devices/{id}/{room})."""


class Presence(_Model):
    """Zone logic for badges (DOMAIN.md "BLE presence")."""

    alpha: Annotated[float, Field(gt=0, le=1)] = _PRESENCE.alpha
    switch_db: Annotated[float, Field(ge=0, le=40)] = _PRESENCE.switch_db
    switch_hold_s: Annotated[float, Field(ge=0, le=60)] = _PRESENCE.switch_hold_s
    absent_after_s: Annotated[float, Field(gt=0, le=300)] = _PRESENCE.absent_after_s


class FaceTerminal(_Model):
    """An allow-listed face-ID terminal, mapped to the zone it stands in."""

    id: Id
    zone: Id
    alg: Literal["hmac-sha256", "ed25519"] = "hmac-sha256"
    key_file: Path
    """HMAC secret (hex, >= 32 bytes) or the terminal's Ed25519 public key (PEM or raw 32 bytes)."""


class Face(_Model):
    max_skew_s: Annotated[float, Field(gt=0, le=300)] = 30.0
    """|now - event time| limit (DOMAIN.md: 30 s)."""
    http: bool = True
    """Accept POST /face/events on the status server."""
    mqtt_topics: tuple[str, ...] = ("face/+/events",)


class HotWork(_Model):
    """Interlock timings (DOMAIN.md "Permits" and "Face identity")."""

    face_window_s: Annotated[float, Field(gt=0, le=600)] = _HOT_WORK.face_window_s
    """Release needs the operator's face verified at most this long before (DOMAIN.md)."""
    face_presence_s: Annotated[float, Field(gt=0, le=600)] = _HOT_WORK.face_presence_s
    face_hold_s: Annotated[float, Field(gt=0, le=86400)] | None = _HOT_WORK.face_hold_s
    """How long the face that started a release holds during it; unset: the whole release (the
    operator's continuous presence in the zone keeps it bound; any lapse needs a new face)."""
    gas_test_validity_s: Annotated[float, Field(gt=0, le=86400)] = _HOT_WORK.gas_test_validity_s
    break_retest_s: Annotated[float, Field(gt=0, le=86400)] = _HOT_WORK.break_retest_s
    fire_watch_after_s: Annotated[float, Field(gt=0, le=86400)] = _HOT_WORK.fire_watch_after_s
    warn_before_s: tuple[int, ...] = _HOT_WORK.warn_before_s


class Permits(_Model):
    dir: Path | None = None
    """Signed permit files (*.json) loaded at start and on SIGHUP, verified with ledger.public_key_file."""


class StatusUser(_Model):
    user: Id
    role: Literal["viewer", "operator", "admin"]
    password_hash: str
    """scrypt hash from `edge-gateway hash-password`."""


class Tls(_Model):
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None


class Mqtt(_Model):
    url: str = "mqtt://127.0.0.1:1883"
    prefix: Id = "edge"
    client_id: str = ""
    username: str = ""
    password_file: Path | None = None
    tls: Tls | None = None
    keepalive_s: Annotated[int, Field(ge=5, le=600)] = 15
    telemetry_interval_s: Annotated[float, Field(ge=0, le=3600)] = 1.0
    """Each signal's `telemetry/{signal}` at most once per this (its latest value). Every reading still
    goes to the TSDB and alarms go at once; 0 = every reading, coalesced only under back-pressure."""

    @field_validator("url")
    @classmethod
    def _scheme(cls, v: str) -> str:
        if not (v.startswith("mqtt://") or v.startswith("mqtts://")):
            raise ValueError("must start with mqtt:// or mqtts://")
        return v


class Sparkplug(_Model):
    """Sparkplug B 3.0 edge node on the same broker (docs/sparkplug.md)."""

    enabled: bool = False
    group: Id = "plant"
    node: Id | None = None
    """Edge node id; default: the gateway id."""


class Ledger(_Model):
    url: str = ""
    """Empty: no ledger (records stay in the outbox)."""
    public_key_file: Path | None = None
    token_file: Path | None = None
    permit_poll_s: Annotated[float, Field(ge=1, le=3600)] = 30.0
    """How often signed permits are pulled from the ledger (they are cached for offline use)."""


class Tsdb(_Model):
    """Raw readings to an InfluxDB-compatible store (InfluxDB 2.x, VictoriaMetrics): telemetry, not safety data."""

    url: str = ""
    org: str = "plant"
    bucket: str = "edge"
    token_file: Path | None = None
    batch_size: Annotated[int, Field(ge=1, le=100_000)] = 5000
    flush_interval_s: Annotated[float, Field(gt=0, le=60)] = 1.0
    max_buffer: Annotated[int, Field(ge=1, le=10_000_000)] = 200_000
    """Points kept while the store is down; when full the oldest are dropped and counted."""
    timeout_s: Annotated[float, Field(gt=0, le=60)] = 5.0


class Status(_Model):
    bind: str = "127.0.0.1"
    port: Port = 8080
    users: tuple[StatusUser, ...] = ()
    """Who may acknowledge, silence and retry; none: the page is read-only."""
    secure_cookie: bool = False
    """Set when the page is served over TLS (behind a reverse proxy)."""
    session_idle_s: Annotated[float, Field(gt=0, le=86400)] = 900.0
    session_absolute_s: Annotated[float, Field(gt=0, le=7 * 86400)] = 28800.0


class State(_Model):
    dir: Path = Path("/var/lib/edge-gateway")


class Audit(_Model):
    anchor_interval_s: Annotated[float, Field(ge=10, le=86400)] = 300.0
    """How often the audit chain's head (seq, hash, UTC) is published as an anchor (MQTT audit/head,
    retained), besides at start and at stop. A tail cut after the last anchor cannot be proven; a
    shorter interval narrows that window (project choice: 5 min, one retained message each)."""


class GatewayConfig(_Model):
    site: Annotated[Site, RESTART]
    engine: Annotated[Engine, LIVE] = Engine()
    zones: Annotated[tuple[Zone, ...], LIVE]
    devices: Annotated[tuple[Device, ...], RESTART] = ()
    signals: Annotated[tuple[Signal, ...], LIVE] = ()
    outputs: Annotated[tuple[Output, ...], RESTART] = ()
    machines: Annotated[tuple[Machine, ...], RESTART] = ()
    people: Annotated[tuple[Person, ...], LIVE] = ()
    badges: Annotated[tuple[Badge, ...], LIVE] = ()
    receivers: Annotated[tuple[Receiver, ...], RESTART] = ()
    presence: Annotated[Presence, LIVE] = Presence()
    face_terminals: Annotated[tuple[FaceTerminal, ...], RESTART] = ()
    face: Annotated[Face, RESTART] = Face()
    hot_work: Annotated[HotWork, LIVE] = HotWork()
    permits: Annotated[Permits, LIVE] = Permits()
    mqtt: Annotated[Mqtt, RESTART] = Mqtt()
    sparkplug: Annotated[Sparkplug, RESTART] = Sparkplug()
    ledger: Annotated[Ledger, RESTART] = Ledger()
    tsdb: Annotated[Tsdb, RESTART] = Tsdb()
    status: Annotated[Status, RESTART] = Status()
    state: Annotated[State, RESTART] = State()
    audit: Annotated[Audit, RESTART] = Audit()

    def device(self, did: str) -> Device:
        return next(d for d in self.devices if d.id == did)

    def source_of(self, sid: str) -> tuple[Device, Point] | None:
        for d in self.devices:
            for p in d.points:
                if p.signal == sid:
                    return d, p
        return None

    def stale_after(self, sig: Signal) -> float:
        if sig.stale_after_s is not None:
            return sig.stale_after_s
        src = self.source_of(sig.id)
        return min(3 * src[0].poll_s, STALE_AFTER_MAX_S) if src else STALE_AFTER_MAX_S


class Problem(BaseModel):
    path: str
    message: str
    hint: str = ""

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" + (f" (hint: {self.hint})" if self.hint else "")


class ConfigError(Exception):
    """The configuration is invalid; `problems` lists every error found."""

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: {len(problems)} problem(s)\n" + "\n".join(f"  {p}" for p in problems))
