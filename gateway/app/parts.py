"""The daemon's parts that its views read (the /api/state snapshot, /metrics, /healthz), typed
without importing the daemon, so the views and the daemon do not import each other."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from drivers.face import FaceGate
    from drivers.modbus import ModbusSource
    from drivers.mqtt_in import MqttInput
    from gateway.app.sinks import LastGoodSink
    from gateway.config.models import GatewayConfig
    from gateway.core.clock import Clock
    from gateway.core.fanout import FanOut
    from gateway.core.inbox import Inbox
    from gateway.core.inputs import PermitLoader
    from gateway.core.metrics import Metrics
    from gateway.core.outputs import OutputBank
    from gateway.core.trends import TrendStore
    from gateway.core.vibration import VibrationPipeline
    from gateway.ledger.anchors import AnchorPublisher
    from gateway.ledger.permit_sync import PermitSync
    from gateway.ledger.records import Records
    from gateway.northbound.mqtt_out import MqttOut
    from gateway.northbound.sparkplug import SparkplugNode
    from gateway.northbound.tsdb import TsdbWriter
    from gateway.status.view import StatusHub
    from rules.config import EngineCfg
    from rules.engine import EngineState


class Parts(Protocol):
    cfg: GatewayConfig
    ecfg: EngineCfg
    state: EngineState
    clock: Clock
    ready: bool
    started_mono: float
    config_hash: str
    last_reload: dict[str, Any] | None
    outputs: OutputBank
    mqtt: MqttOut
    mqtt_inputs: Sequence[MqttInput]
    tsdb: TsdbWriter | None
    sparkplug: SparkplugNode | None
    permit_sync: PermitSync | None
    permits: PermitLoader
    inbox: Inbox
    face: FaceGate | None
    vibration: VibrationPipeline
    trends: TrendStore
    records: Records
    sources: Sequence[ModbusSource]
    rejected_events: int
    readings_applied: int
    people: dict[str, str]
    task_restarts: Counter[str]
    task_faults: dict[str, str]
    fanout: FanOut
    hub: StatusHub
    metrics: Metrics
    anchors: AnchorPublisher
    state_dir: Path
    last_good: LastGoodSink

    def engine_age_s(self) -> float | None: ...
