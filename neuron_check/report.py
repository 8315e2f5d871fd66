"""The check's one table, printed from the report it also writes as ``neuron-check.json``."""

from __future__ import annotations

from typing import Any


def machine_lines(m: dict[str, Any]) -> list[str]:
    lines = [
        f"machine: {m['instance_type']}, {len(m['devices'])} Neuron device(s) "
        f"({', '.join(m['devices']) or 'none'}), {m['neuroncores']} NeuronCores ({m['neuron_ls']})",
        f"software: Python {m['python']}, torch {m['torch']}, torch-neuronx "
        f"{m['torch_neuronx'] or 'missing'}, neuronx-cc {m['neuronx_cc'] or 'unknown'}",
    ]
    if m.get("fake"):
        lines.append(
            f"*** FAKE: torch_neuronx is the test seam {m['fake']}. Every figure below is CPU "
            "TorchScript on this machine, not a NeuronCore. ***"
        )
    return lines


def _compiles(compiles: dict[str, dict[str, Any]]) -> list[str]:
    lines = [f"{'compile':<32} {'result':<34} {'s':>6}  device-graph operators"]
    for placement, c in compiles.items():
        name = f"features on the {placement}" + (" (default)" if placement == "host" else "")
        if c["ok"]:
            result = "ok"
            if c["undocumented"]:
                result += f", undocumented: {len(c['undocumented'])}"
            ops = ", ".join(c["operators"])
            lines.append(f"{name:<32} {result:<34} {c['seconds']:>6.1f}  {ops}")
        else:
            what = c.get("refused") or "no operator named"
            result = f"refused: {what}" if c.get("failure") == "refused" else c["failure"]
            lines.append(f"{name:<32} {result:<34} {'':>6}  -")
    return lines


def _buckets(timing: dict[str, Any], label: str) -> list[str]:
    lines = [
        f"{label}NeuronCore {timing['core']}, {timing['calls']:,} calls a bucket "
        f"(parity tolerance ${timing['tolerance']:g})",
        f"{'batch':>5} {'parity $':>9} {'device p50 us':>14} {'device p99 us':>14} "
        f"{'preamble p50 us':>16} {'call p50 us':>12} {'rows/s (device)':>16}",
    ]
    for b in timing["buckets"]:
        rows_per_s = b["batch_size"] / b["device_p50_us"] * 1e6 if b["device_p50_us"] else 0
        lines.append(
            f"{b['batch_size']:>5} {b['parity_usd']:>9.4f} {b['device_p50_us']:>14.1f} "
            f"{b['device_p99_us']:>14.1f} {b['preamble_p50_us']:>16.1f} "
            f"{b['call_p50_us']:>12.1f} {rows_per_s:>16,.0f}"
        )
    return lines


def _load(server: dict[str, Any], label: str) -> list[str]:
    lines = [
        f"{label}server: {server['workers']} worker(s), one per NeuronCore, ready "
        f"{server['ready_seconds']:.1f} s after start; wrk, {server['load_seconds']} s a point",
        f"{'body':<12} {'conc':>4} {'req/s':>9} {'rows/s':>10} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'errors':>6}",
    ]
    for r in server.get("load", []):
        lines.append(
            f"{r['body']:<12} {r['concurrency']:>4} {r['requests_per_s']:>9,.0f} "
            f"{r['rows_per_s']:>10,.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['errors']:>6}"
        )
    return lines


def render(report: dict[str, Any]) -> str:
    """The whole report as text: what ran, in order, as far as the run got."""
    label = "FAKE " if report.get("machine", {}).get("fake") else ""
    parts: list[list[str]] = []
    if "machine" in report:
        parts.append(machine_lines(report["machine"]))
    if report.get("compile"):
        parts.append(_compiles(report["compile"]))
    if report.get("timing", {}).get("buckets"):
        parts.append(_buckets(report["timing"], label))
    if report.get("server"):
        parts.append(_load(report["server"], label))
    verdict = "PASS" if report["result"] == "pass" else f"FAILED: {report.get('failure')}"
    parts.append([f"neuron-check: {verdict}"])
    return "\n\n".join("\n".join(p) for p in parts)
