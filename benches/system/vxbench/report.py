"""Medians, spreads, ratios to the kernel bridge, and the three outputs:
a markdown report, a JSON file and two hand-written SVG charts."""

from __future__ import annotations

import html
import math
import statistics

# key -> (label, unit, scale for display, decimals, "higher"/"lower" is better)
METRICS = {
    "tcp1_gbps": ("TCP 1 stream", "Gbit/s", 1, 2, "higher"),
    "tcp4_gbps": ("TCP 4 streams", "Gbit/s", 1, 2, "higher"),
    "fps": ("frames/s", "Mfps", 1e-6, 3, "higher"),
    "loss": ("loss", "%", 100, 1, "lower"),
    "rtt_p50_us": ("RTT p50", "µs", 1, 0, "lower"),
    "rtt_p99_us": ("RTT p99", "µs", 1, 0, "lower"),
    "rtt1k_p50_us": ("RTT p50 at 1000 msg/s", "µs", 1, 0, "lower"),
    "rtt1k_p99_us": ("RTT p99 at 1000 msg/s", "µs", 1, 0, "lower"),
    "cpu_s_per_gb": ("switch CPU", "s/GB", 1, 2, "lower"),
    "softirq_s_per_gb": ("softirq, all CPUs", "s/GB", 1, 2, "lower"),
    "machine_s_per_gb": ("machine CPU, all CPUs", "s/GB", 1, 2, "lower"),
    "busy_cpus": ("busy CPUs", "CPUs", 1, 2, "lower"),
}

COLORS = {
    "vxswitch": "#d62728",
    "vxswitch-nooffload": "#f4a6a6",
    "vxswitch-busypoll": "#b03030",
    "bridge": "#1f77b4",
    "ovs": "#2ca02c",
    "ovs-tso": "#98df8a",
    "vde": "#9467bd",
    "veth": "#7f7f7f",
    "vxswitch-vxlan": "#ff7f0e",
    "kernel-vxlan": "#17becf",
    "tap-floor": "#7f7f7f",
}


def base(key: str) -> str:
    """`fps_64` -> `fps`."""
    return key.split("_")[0] if key.startswith(("fps_", "loss_")) else key


def summarize(values: list[float]) -> dict | None:
    """Median of the runs and the spread: half the range (max - min) as a % of the median."""
    values = [v for v in values if v is not None]
    if not values:
        return None
    med = statistics.median(values)
    lo, hi = min(values), max(values)
    spread = ((hi - lo) / 2 / abs(med) * 100) if med else 0.0
    return {"median": med, "min": lo, "max": hi, "spread_pct": spread, "n": len(values), "runs": values}


def build(contenders, raw: dict, baseline: str) -> dict:
    """raw[name][key] = [value per run]; returns name -> {key -> summary with ratio_to_bridge}."""
    out = {}
    for c in contenders:
        metrics = {k: summarize(v) for k, v in raw.get(c.name, {}).items()}
        out[c.name] = {"metrics": {k: v for k, v in metrics.items() if v is not None}}
    base_metrics = out.get(baseline, {}).get("metrics", {})
    for name, entry in out.items():
        for key, s in entry["metrics"].items():
            b = base_metrics.get(key)
            s["ratio_to_bridge"] = (s["median"] / b["median"]) if b and b["median"] else None
    return out


# Issue 5's targets, each a ratio of two medians of the same run:
# (what, contender, its metric, reference contender, its metric, bound, "min"/"max").
TARGETS = [
    ("local TCP 1 stream", "vxswitch", "tcp1_gbps", "bridge", "tcp1_gbps", 0.9, "min"),
    ("local TCP 4 streams", "vxswitch", "tcp4_gbps", "bridge", "tcp4_gbps", 0.7, "min"),
    ("64 B frames/s", "vxswitch", "fps_64", "ovs", "fps_64", 1.15, "min"),
    ("RTT p50 (ping-pong)", "vxswitch", "rtt_p50_us", "ovs", "rtt_p50_us", 0.5, "max"),
    ("overlay TCP 1 stream", "vxswitch-vxlan", "tcp1_gbps", "kernel-vxlan", "tcp1_gbps", 0.8, "min"),
    ("overlay 64 B frames/s", "vxswitch-vxlan", "fps_64", "kernel-vxlan", "fps_64", 1.0, "min"),
    ("switch CPU per GB", "vxswitch", "cpu_s_per_gb", "ovs-tso", "cpu_s_per_gb", 1.0, "max"),
]


def targets(summary: dict) -> list[dict]:
    """Each target of TARGETS whose two contenders were measured: both medians, their ratio, met or not."""
    rows = []
    for what, name, key, ref, ref_key, bound, kind in TARGETS:
        if name not in summary or ref not in summary:
            continue
        a = summary[name]["metrics"].get(key)
        b = summary[ref]["metrics"].get(ref_key)
        ratio = (a["median"] / b["median"]) if a and b and b["median"] else None
        met = None if ratio is None else (ratio >= bound if kind == "min" else ratio <= bound)
        rows.append({
            "target": what, "contender": name, "metric": key, "reference": ref, "reference_metric": ref_key,
            "bound": bound, "kind": kind, "value": a["median"] if a else None,
            "reference_value": b["median"] if b else None, "ratio": ratio, "met": met,
        })
    return rows


def fmt_value(key: str, v: float) -> str:
    _label, _unit, scale, dec, _better = METRICS[base(key)]
    x = v * scale
    if base(key) == "fps" and x < 0.1:
        dec = 4
    return f"{x:.{dec}f}"


def cell(key: str, s: dict | None, runs_expected: int, kernel: bool = False) -> str:
    if s is None:
        if kernel and key in ("cpu_s_per_gb",):
            return "n/a (kernel)"
        return "**failed**"
    text = fmt_value(key, s["median"])
    if base(key) == "loss":
        # A spread in % of a median of 0 says nothing: give the worst run instead.
        if s["max"] > s["median"]:
            text += f" (max {fmt_value(key, s['max'])})"
        return text
    if runs_expected > 1 or s["n"] > 1:
        text += f" ±{s['spread_pct']:.0f}%"
    r = s.get("ratio_to_bridge")
    if r is not None and base(key) != "loss":
        text += f" ({r:.2f}×)"
    return text


def markdown(meta: dict, contenders, summary: dict, errors: dict, sizes: list[int], baseline: str) -> str:
    runs = meta["config"]["runs"]
    small = 64 if 64 in sizes else min(sizes)
    lines = []
    w = lines.append
    w(f"Run of {meta['date_utc']} on {meta['machine']}; {meta['mode']} mode, "
      f"{runs} run{'s' if runs > 1 else ''} per figure, {meta['elapsed_s']:.0f} s in all.")
    w(f"Load average at start {meta['loadavg_start']}, at end {meta['loadavg_end']}.")
    w("")
    w(f"Each cell: median ±spread (half the min–max range, % of the median) and, in brackets, "
      f"the ratio to the kernel bridge measured in the same run (for RTT and CPU, lower is better).")
    w("")
    cols = [
        ("tcp1_gbps", "TCP 1 stream Gbit/s"),
        ("tcp4_gbps", "TCP 4 streams Gbit/s"),
        (f"fps_{small}", f"{small} B Mframes/s"),
        (f"loss_{small}", f"{small} B loss %"),
        ("rtt_p50_us", "RTT p50 µs (ping-pong)"),
        ("rtt_p99_us", "RTT p99 µs (ping-pong)"),
        ("cpu_s_per_gb", "switch CPU s/GB"),
    ]
    w("| contender | " + " | ".join(h for _k, h in cols) + " |")
    w("|---|" + "---|" * len(cols))
    for c in contenders:
        m = summary[c.name]["metrics"]
        w(f"| {c.name} | " + " | ".join(cell(k, m.get(k), runs, not c.userspace) for k, _h in cols) + " |")
    w("")
    w("Frames/s forwarded by frame size (Mframes/s; frame sizes count the 4-byte FCS):")
    w("")
    w("| contender | " + " | ".join(f"{s} B" for s in sizes) + " |")
    w("|---|" + "---|" * len(sizes))
    for c in contenders:
        m = summary[c.name]["metrics"]
        w(f"| {c.name} | " + " | ".join(cell(f"fps_{s}", m.get(f"fps_{s}"), runs) for s in sizes) + " |")
    w("")
    w("Loss by frame size (% of the frames the generator sent that did not reach c2; the "
      "generator offers as much as it can; where the path pushes back, as a full TAP queue or a synchronous veth does, the generator is slowed instead of losing frames):")
    w("")
    w("| contender | " + " | ".join(f"{s} B" for s in sizes) + " |")
    w("|---|" + "---|" * len(sizes))
    for c in contenders:
        m = summary[c.name]["metrics"]
        w(f"| {c.name} | " + " | ".join(cell(f"loss_{s}", m.get(f"loss_{s}"), runs) for s in sizes) + " |")
    w("")
    w("Round-trip latency paced at 1000 messages/s (each message finds the path idle, so this "
      "includes waking the switch and the receiver; on a shared VM it swings widely between runs):")
    w("")
    w("| contender | RTT p50 µs | RTT p99 µs |")
    w("|---|---|---|")
    for c in contenders:
        m = summary[c.name]["metrics"]
        w(f"| {c.name} | {cell('rtt1k_p50_us', m.get('rtt1k_p50_us'), runs)} | "
          f"{cell('rtt1k_p99_us', m.get('rtt1k_p99_us'), runs)} |")
    w("")
    w("CPU per GB moved in the TCP tests: the switch process's utime+stime (all its threads, "
      "both daemons for vxswitch-vxlan); machine-wide softirq time and machine-wide busy time "
      "(everything but idle, all CPUs: the switch, both iperf3 ends, the kernel's network "
      "stacks, and anything else the machine did); and how many CPUs were busy on average "
      "while iperf3 ran. When busy CPUs is near the machine's count the TCP figure is bound by "
      "CPU, and throughput is roughly CPUs / machine CPU per GB:")
    w("")
    w("| contender | switch CPU s/GB | softirq s/GB | machine CPU s/GB | busy CPUs |")
    w("|---|---|---|---|---|")
    for c in contenders:
        m = summary[c.name]["metrics"]
        w(f"| {c.name} | {cell('cpu_s_per_gb', m.get('cpu_s_per_gb'), runs, not c.userspace)} | "
          f"{cell('softirq_s_per_gb', m.get('softirq_s_per_gb'), runs)} | "
          f"{cell('machine_s_per_gb', m.get('machine_s_per_gb'), runs)} | "
          f"{cell('busy_cpus', m.get('busy_cpus'), runs)} |")
    rows = targets(summary)
    if rows:
        w("")
        w("Issue 5's targets (ratios of medians from this run):")
        w("")
        w("| target | contender | reference | value / reference | ratio | target | met |")
        w("|---|---|---|---|---|---|---|")
        for t in rows:
            if t["ratio"] is None:
                w(f"| {t['target']} | {t['contender']} | {t['reference']} | – | – | "
                  f"{'≥' if t['kind'] == 'min' else '≤'} {t['bound']:g}× | no figure |")
                continue
            v, rv = fmt_value(t["metric"], t["value"]), fmt_value(t["reference_metric"], t["reference_value"])
            unit = METRICS[base(t["metric"])][1]
            w(f"| {t['target']} | {t['contender']} | {t['reference']} | {v} / {rv} {unit} | {t['ratio']:.3f}× | "
              f"{'≥' if t['kind'] == 'min' else '≤'} {t['bound']:g}× | {'**yes**' if t['met'] else 'no'} |")
    failed = {n: e for n, e in errors.items() if e}
    if failed:
        w("")
        w("Errors:")
        w("")
        for name, errs in failed.items():
            for e in errs:
                first = e.strip().splitlines()[0] if e.strip() else e
                w(f"- {name}: {first}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------
# SVG


def nice_max(v: float) -> tuple[float, float]:
    """An axis maximum >= v and a tick step (1, 2, 2.5 or 5 times a power of ten), about 5 ticks."""
    if v <= 0:
        return 1.0, 0.2
    raw = v / 5
    exp = math.floor(math.log10(raw))
    step = 10.0 ** (exp + 1)
    for m in (1, 2, 2.5, 5, 10):
        if m * 10.0**exp >= raw:
            step = m * 10.0**exp
            break
    return step * math.ceil(v / step - 1e-9), step


def _svg_open(width: int, height: int, title: str) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2}" y="20" text-anchor="middle" font-size="15" font-weight="bold">{html.escape(title)}</text>',
    ]


def _y_axis(out, x0, y0, plot_h, plot_w, top, step, label, fmt="{:g}"):
    n = int(round(top / step))
    for i in range(n + 1):
        v = step * i
        y = y0 - plot_h * v / top
        out.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x0 + plot_w}" y2="{y:.1f}" stroke="#e0e0e0"/>')
        out.append(f'<text x="{x0 - 6}" y="{y + 4:.1f}" text-anchor="end">{fmt.format(round(v, 6))}</text>')
    out.append(f'<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y0 - plot_h}" stroke="black"/>')
    out.append(f'<line x1="{x0}" y1="{y0}" x2="{x0 + plot_w}" y2="{y0}" stroke="black"/>')
    out.append(
        f'<text x="16" y="{y0 - plot_h / 2}" text-anchor="middle" transform="rotate(-90 16 {y0 - plot_h / 2})">'
        f"{html.escape(label)}</text>"
    )


def svg_throughput(contenders, summary: dict, subtitle: str) -> str:
    """Grouped bars: TCP 1 stream and 4 streams per contender, whiskers = min..max of the runs."""
    series = [("tcp1_gbps", "1 stream", 1.0), ("tcp4_gbps", "4 streams", 0.55)]
    names = [c.name for c in contenders]
    # Wide enough that the longest name fits under its group (~7 px a character).
    group_w = max(90, 7 * max([len(n) for n in names] + [1]) + 8)
    plot_w = max(740, group_w * len(names))
    width, height = plot_w + 80, 400
    x0, y0, plot_h = 60, 340, 280
    vals = [
        summary[n]["metrics"].get(k, {}).get("max", 0) for n in names for k, _l, _o in series
    ]
    top, step = nice_max(max(vals + [0.001]))
    out = _svg_open(width, height, "TCP throughput by contender (iperf3)")
    out.append(f'<text x="{width / 2}" y="38" text-anchor="middle" fill="#555">{html.escape(subtitle)}</text>')
    _y_axis(out, x0, y0, plot_h, plot_w, top, step, "Gbit/s")
    group = plot_w / max(1, len(names))
    bar = group * 0.32
    for i, name in enumerate(names):
        gx = x0 + group * i + group * 0.18
        color = COLORS.get(name, "#444")
        for j, (key, _label, opacity) in enumerate(series):
            s = summary[name]["metrics"].get(key)
            bx = gx + j * bar
            if not s:
                out.append(f'<text x="{bx + bar / 2:.1f}" y="{y0 - 4}" text-anchor="middle" fill="red">×</text>')
                continue
            h = plot_h * s["median"] / top
            out.append(
                f'<rect x="{bx:.1f}" y="{y0 - h:.1f}" width="{bar - 2:.1f}" height="{h:.1f}" fill="{color}" '
                f'fill-opacity="{opacity}" stroke="{color}"><title>{html.escape(name)} {key}: '
                f'{s["median"]:.2f} Gbit/s</title></rect>'
            )
            if s["n"] > 1:
                cx = bx + (bar - 2) / 2
                ylo, yhi = y0 - plot_h * s["min"] / top, y0 - plot_h * s["max"] / top
                out.append(f'<line x1="{cx:.1f}" y1="{ylo:.1f}" x2="{cx:.1f}" y2="{yhi:.1f}" stroke="black"/>')
                for yy in (ylo, yhi):
                    out.append(f'<line x1="{cx - 4:.1f}" y1="{yy:.1f}" x2="{cx + 4:.1f}" y2="{yy:.1f}" stroke="black"/>')
            label_y = min(y0 - h, y0 - plot_h * s["max"] / top) - 4  # above the whisker
            out.append(
                f'<text x="{bx + (bar - 2) / 2:.1f}" y="{label_y:.1f}" text-anchor="middle" font-size="10">'
                f'{s["median"]:.2f}</text>'
            )
        out.append(f'<text x="{x0 + group * (i + 0.5):.1f}" y="{y0 + 18}" text-anchor="middle">{html.escape(name)}</text>')
    # legend
    lx = x0 + 10
    for j, (_k, label, opacity) in enumerate(series):
        out.append(f'<rect x="{lx + j * 110}" y="{y0 + 34}" width="14" height="12" fill="#666" fill-opacity="{opacity}" stroke="#666"/>')
        out.append(f'<text x="{lx + j * 110 + 20}" y="{y0 + 45}">{label}</text>')
    out.append(f'<text x="{lx + 240}" y="{y0 + 45}" fill="#555">bars: median; whiskers: min–max of the runs</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def svg_frames(contenders, summary: dict, sizes: list[int], subtitle: str) -> str:
    """Lines: forwarded Mframes/s by frame size, one line per contender."""
    width, height = 820, 420
    x0, y0, plot_w, plot_h = 70, 360, 560, 290
    vals = [
        summary[c.name]["metrics"].get(f"fps_{s}", {}).get("max", 0) * 1e-6 for c in contenders for s in sizes
    ]
    top, step = nice_max(max(vals + [0.001]))
    out = _svg_open(width, height, "Frames/s forwarded by frame size (generator as fast as it can)")
    out.append(f'<text x="{width / 2}" y="38" text-anchor="middle" fill="#555">{html.escape(subtitle)}</text>')
    _y_axis(out, x0, y0, plot_h, plot_w, top, step, "Mframes/s")
    xs = [x0 + plot_w * (i + 0.5) / len(sizes) for i in range(len(sizes))]
    for x, s in zip(xs, sizes):
        out.append(f'<text x="{x:.1f}" y="{y0 + 18}" text-anchor="middle">{s}</text>')
    out.append(f'<text x="{x0 + plot_w / 2}" y="{y0 + 38}" text-anchor="middle">frame size, bytes (with FCS)</text>')
    for k, c in enumerate(contenders):
        color = COLORS.get(c.name, "#444")
        pts = []
        for x, s in zip(xs, sizes):
            m = summary[c.name]["metrics"].get(f"fps_{s}")
            if m:
                pts.append((x, y0 - plot_h * m["median"] * 1e-6 / top, m))
        dash = ' stroke-dasharray="6 3"' if c.kind == "overlay" else ""
        if len(pts) > 1:
            d = " ".join(f"{x:.1f},{y:.1f}" for x, y, _m in pts)
            out.append(f'<polyline points="{d}" fill="none" stroke="{color}" stroke-width="2"{dash}/>')
        for x, y, m in pts:
            out.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{color}"><title>{html.escape(c.name)}: '
                f'{m["median"] * 1e-6:.3f} Mframes/s</title></circle>'
            )
        ly = 70 + k * 22
        out.append(f'<line x1="{x0 + plot_w + 20}" y1="{ly}" x2="{x0 + plot_w + 44}" y2="{ly}" stroke="{color}" stroke-width="2"{dash}/>')
        out.append(f'<text x="{x0 + plot_w + 50}" y="{ly + 4}">{html.escape(c.name)}</text>')
    if any(c.kind == "overlay" for c in contenders):
        ly = 70 + len(contenders) * 22 + 10
        out.append(f'<text x="{x0 + plot_w + 20}" y="{ly}" fill="#555">dashed: VXLAN overlay</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
