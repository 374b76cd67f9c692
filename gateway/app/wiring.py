"""How the daemon builds its northbound and MQTT-input parts from the configuration (kept out of
the daemon so that it only wires and supervises)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from drivers.mqtt_in import MqttInput, TlsOptions
from gateway import __version__
from gateway.config.loader import resolve_path
from gateway.config.models import GatewayConfig
from gateway.config.specs import espresense, mqtt_mappings
from gateway.northbound.mqtt_out import broker_password, broker_tls

if TYPE_CHECKING:
    from drivers.mqtt_in.waveform import WaveformMapping
    from gateway.core.clock import Clock
    from gateway.core.inbox import Inbox
    from gateway.core.vibration import VibrationPipeline
    from gateway.northbound.sparkplug import SparkplugNode
    from gateway.northbound.tsdb import TsdbWriter
    from rules.config import EngineCfg


class Wired(Protocol):
    cfg: GatewayConfig
    ecfg: EngineCfg
    base: Path
    clock: Clock
    inbox: Inbox
    vibration: VibrationPipeline
    waveforms: tuple[WaveformMapping, ...]


def mqtt_inputs(d: Wired) -> list[MqttInput]:
    """Two broker connections: gas and machine signals on their own ("mqtt-in-safety"), so a
    telemetry flood queued in the other socket can never hold a gas reading back; telemetry,
    waveforms and ESPresense on "mqtt-in". Either is left out when it has nothing to read."""
    mappings, esp = mqtt_mappings(d.cfg), espresense(d.cfg)
    safety = [mp for mp in mappings if mp.signal in d.ecfg.eager]
    rest = [mp for mp in mappings if mp.signal not in d.ecfg.eager]
    m = d.cfg.mqtt
    tls = None
    if m.tls is not None:

        def f(p: Path | None) -> str | None:
            return None if p is None else str(resolve_path(d.base, p))

        tls = TlsOptions(ca_path=f(m.tls.ca_file), cert_path=f(m.tls.cert_file), key_path=f(m.tls.key_file))
    password = broker_password(m, d.base)
    base_id = f"{m.client_id or 'edge-gateway'}-{d.cfg.site.gateway_id}"
    inputs = []
    if safety:
        inputs.append(MqttInput(
            m.url, client_id=f"{base_id}-in-safety", emit=d.inbox.put, mappings=safety,
            clock=d.clock.monotonic, tls=tls, username=m.username or None, password=password,
            name="mqtt-in-safety", keepalive_s=m.keepalive_s,
        ))  # fmt: skip
    if rest or esp is not None or d.waveforms:
        inputs.append(MqttInput(
            m.url, client_id=f"{base_id}-in", emit=d.inbox.put, mappings=rest, waveforms=d.waveforms,
            on_waveform=d.vibration.on_waveform if d.waveforms else None, espresense=esp,
            clock=d.clock.monotonic, tls=tls, username=m.username or None, password=password,
            name="mqtt-in", keepalive_s=m.keepalive_s, batch_max=d.cfg.engine.batch_max,
        ))  # fmt: skip
    return inputs

def sparkplug_node(d: Wired) -> SparkplugNode:
    """One Sparkplug device per zone: its signals (value, quality), state, evacuation and outputs."""
    from gateway.northbound.sparkplug import DataType, MetricDef, SparkplugNode

    F, S, B = DataType.Float, DataType.String, DataType.Boolean
    devices: dict[str, list[MetricDef]] = {}
    for zid in d.ecfg.zones:
        m = [MetricDef("zone/state", S, "normal"), MetricDef("zone/evacuate", B, False)]
        for sc in d.ecfg.signals_in(zid):
            m += [MetricDef(f"{sc.quantity}/{sc.id}", F), MetricDef(f"{sc.quantity}/{sc.id}/quality", S, "bad")]
        m += [MetricDef(f"outputs/{o.id}", B, o.safe) for o in d.ecfg.outputs.values() if o.zone == zid]
        devices[zid] = m
    sp, mq = d.cfg.sparkplug, d.cfg.mqtt
    return SparkplugNode(
        mq.url,
        sp.group,
        sp.node or d.cfg.site.gateway_id,
        devices,
        lambda: int(d.clock.utc().timestamp() * 1000),
        node_metrics=[MetricDef("Properties/version", DataType.String, __version__)],
        username=mq.username,
        password=broker_password(mq, d.base),
        tls=broker_tls(mq, d.base),
        client_id=f"{d.cfg.site.gateway_id}-sparkplug",
        keepalive_s=mq.keepalive_s,
    )

def tsdb_writer(d: Wired) -> TsdbWriter | None:
    t = d.cfg.tsdb
    if not t.url:
        return None
    from gateway.northbound.tsdb import TsdbWriter

    return TsdbWriter.from_config(
        t,
        site=d.cfg.site.id,
        gateway=d.cfg.site.gateway_id,
        clock=d.clock,
        base=d.base,
        batch_size=t.batch_size,
        flush_interval_s=t.flush_interval_s,
        max_buffer=t.max_buffer,
        timeout_s=t.timeout_s,
    )
