"""Translate validated config sections into the drivers' own spec types."""

from __future__ import annotations

from drivers.modbus import ByteOrder, DataType, DeviceSpec, PointSpec, StatusSpec, Table, WordOrder
from drivers.mqtt_in import EspresenseCfg, PayloadKind, PayloadMapping, WaveformMapping
from gateway.config import Device, GatewayConfig


def modbus_spec(d: Device, units: dict[str, str]) -> DeviceSpec:
    points = tuple(
        PointSpec(
            signal=p.signal,
            table=Table(p.table),
            address=p.address if p.address is not None else 0,
            dtype=DataType(p.type),
            word_order=WordOrder(p.word_order),
            byte_order=ByteOrder(p.byte_order),
            scale=p.scale,
            offset=p.offset,
            unit=units.get(p.signal, ""),
            current_loop=p.current_loop,
        )
        for p in d.points
    )
    status = None
    if d.status is not None:
        status = StatusSpec(
            address=d.status.address,
            table=Table(d.status.table),
            warm_up_mask=d.status.warm_up_mask,
            fault_mask=d.status.fault_mask,
            over_range_mask=d.status.over_range_mask,
            bump_address=d.status.bump_address,
            calibration_address=d.status.calibration_address,
        )
    return DeviceSpec(
        id=d.id,
        transport="tcp" if d.transport == "modbus_tcp" else "rtu",
        host=d.host,
        port=d.port or 502,
        serial_port=d.serial_port or "",
        baudrate=d.baudrate,
        parity=d.parity,
        stopbits=d.stopbits,
        unit_id=d.unit_id,
        poll_s=d.poll_s,
        timeout_s=d.timeout_s,
        retries=d.retries,
        points=points,
        status=status,
        max_gap=d.max_gap,
    )


def modbus_specs(cfg: GatewayConfig) -> dict[str, DeviceSpec]:
    units = {s.id: s.unit for s in cfg.signals}
    return {d.id: modbus_spec(d, units) for d in cfg.devices if d.transport.startswith("modbus")}


def mqtt_mappings(cfg: GatewayConfig) -> tuple[PayloadMapping, ...]:
    """One payload mapping per point of every MQTT-input device."""
    units = {s.id: s.unit for s in cfg.signals}
    out = []
    for d in cfg.devices:
        if d.transport != "mqtt":
            continue
        for p in d.points:
            if p.topic is None:  # the loader refuses this already
                raise ValueError(f"devices.{d.id}.points.{p.signal}: an MQTT point needs a topic")
            if p.waveform:
                continue  # see waveform_mappings
            out.append(
                PayloadMapping(
                    topic=p.topic,
                    signal=p.signal,
                    unit=units[p.signal],
                    kind=PayloadKind.JSON if p.json_path else PayloadKind.RAW,
                    value_path=p.json_path or "",
                    max_age_s=max(10.0, 3 * d.poll_s),
                )
            )
    return tuple(out)


def waveform_mappings(cfg: GatewayConfig) -> tuple[WaveformMapping, ...]:
    """MQTT vibration points flagged `waveform = true`: frames for gateway/core/vibration.py."""
    return tuple(
        WaveformMapping(topic=p.topic, signal=p.signal)
        for d in cfg.devices
        if d.transport == "mqtt"
        for p in d.points
        if p.waveform and p.topic
    )


def espresense(cfg: GatewayConfig) -> EspresenseCfg | None:
    rooms = {r.room: r.id for r in cfg.receivers if r.kind == "espresense" and r.room}
    if not rooms:
        return None
    # Unknown rooms become receivers of no zone (they can never grant presence); badges pass through.
    return EspresenseCfg(rooms=rooms)
