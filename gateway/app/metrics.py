"""/metrics in the Prometheus text exposition format (0.0.4), written by hand: a few gauges,
counters and two latency histograms need no client library."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.app.parts import Parts

def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(d: Parts) -> str:
    m = d.metrics
    out: list[str] = []

    def family(name: str, kind: str, help_: str, samples: list[tuple[dict[str, str], float]]) -> None:
        out.extend([f"# HELP {name} {help_}", f"# TYPE {name} {kind}"])
        for labels, v in samples:
            lab = ",".join(f'{k}="{_esc(x)}"' for k, x in labels.items())
            out.append(f"{name}{{{lab}}} {v}" if lab else f"{name} {v}")

    family("edge_up", "gauge", "1 once the first engine cycle ran", [({}, 1.0 if d.ready else 0.0)])
    family(
        "edge_readings_total", "counter", "Readings applied by the engine",
        [({"signal": s, "quality": q}, n) for (s, q), n in sorted(m.readings.items())],
    )  # fmt: skip
    rejected: Counter[str] = Counter(dict(d.state.rejected))
    if d.face is not None:
        rejected.update({f"face_{k}": v for k, v in d.face.counts.items() if k != "accepted"})
    for mi in d.mqtt_inputs:
        rejected.update({f"mqtt_{k}": v for k, v in mi.rejected.items()})
    family(
        "edge_rejected_total",
        "counter",
        "Inputs refused, by reason",
        [({"reason": r}, n) for r, n in sorted(rejected.items())],
    )
    family("edge_engine_rejected_events_total", "counter", "Events the engine refused", [({}, d.rejected_events)])
    out += m.engine_step.lines("edge_engine_step_seconds", "Time to apply one event and dispatch its actions")
    out += m.output_write.lines("edge_output_write_seconds", "Coil write plus read-back")
    stats = d.records.stats()
    family("edge_outbox_depth", "gauge", "Ledger records not yet delivered", [({}, stats["depth"] or 0)])
    family(
        "edge_outbox_parked",
        "gauge",
        "Ledger records refused (4xx), waiting for an operator",
        [({}, stats["parked"] or 0)],
    )
    family(
        "edge_records_fault",
        "gauge",
        "1 while records cannot be written (disk full, ...)",
        [({}, 1 if stats["fault"] else 0)],
    )
    family(
        "edge_mqtt_connected",
        "gauge",
        "1 while the northbound broker is connected",
        [({}, 1 if d.mqtt.connected else 0)],
    )
    safety, telemetry = d.inbox.depth()
    family(
        "edge_inbox_depth",
        "gauge",
        "Events waiting for the engine",
        [({"lane": "safety"}, safety), ({"lane": "telemetry"}, telemetry)],
    )
    family(
        "edge_inbox_dropped_total",
        "counter",
        "Telemetry events dropped under overload (never safety)",
        [({}, d.inbox.dropped)],
    )
    family(
        "edge_output_energized", "gauge", "Commanded coil state per output",
        [({"output": o}, 1 if v else 0) for o, v in sorted(d.outputs.commanded.items())],
    )  # fmt: skip
    family(
        "edge_task_restarts_total", "counter", "Restarts of a source or sink task after it failed",
        [({"task": t}, n) for t, n in sorted(d.task_restarts.items())],
    )  # fmt: skip
    family(
        "edge_sink_errors_total", "counter", "Exceptions in a sink of decisions or readings (the others went on)",
        [({"sink": n}, d.fanout.faults.get(n, 0)) for n in d.fanout.names],
    )  # fmt: skip
    family(
        "edge_output_fault",
        "gauge",
        "1 while an output read-back fault holds everything safe",
        [({}, 1 if d.state.output_fault else 0)],
    )
    return "\n".join(out) + "\n"
