"""Medians, spreads and ratios, and the outputs drawn from a results.json:
the markdown report (a set of named tables, each also printable on its own
for the docs: `run.py --from-json FILE --markdown-table NAME`) and two
hand-written SVG charts.

Everything here reads only the results document (the dict written as
results.json), so a report rendered at the end of a run and one rendered
later from the committed JSON are the same text.
"""

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
    "rtt_p50_us": ("RTT p50 (sockperf ping-pong)", "µs", 1, 0, "lower"),
    "rtt_p99_us": ("RTT p99 (sockperf ping-pong)", "µs", 1, 0, "lower"),
    "rtt1k_p50_us": ("RTT p50 (sockperf, 1000 msg/s)", "µs", 1, 0, "lower"),
    "rtt1k_p99_us": ("RTT p99 (sockperf, 1000 msg/s)", "µs", 1, 0, "lower"),
    "ping_avg_us": ("RTT avg (ping -i 0.001)", "µs", 1, 0, "lower"),
    "ping_p99_us": ("RTT p99 (ping -i 0.001)", "µs", 1, 0, "lower"),
    "ping_lost": ("ping echoes lost", "", 1, 0, "lower"),
    "cpu_s_per_gb": ("switch CPU per GB", "s/GB", 1, 2, "lower"),
    "softirq_s_per_gb": ("softirq per GB, all CPUs", "s/GB", 1, 2, "lower"),
    "machine_s_per_gb": ("machine CPU per GB, all CPUs", "s/GB", 1, 2, "lower"),
    "busy_cpus": ("busy CPUs", "CPUs", 1, 2, "lower"),
    "idle_cpu_pct": ("switch CPU while idle", "% of a CPU", 1, 1, "lower"),
}
# Figures a ratio says nothing about (a count, a share of zero).
NO_RATIO = {"loss", "ping_lost", "idle_cpu_pct"}
# Figures only a userspace switch has (a process whose CPU is measured).
SWITCH_ONLY = {"cpu_s_per_gb", "idle_cpu_pct"}

COLORS = {
    "vxswitch": "#d62728",
    "vxswitch-base": "#ff9896",
    "vxswitch-nooffload": "#f4a6a6",
    "vxswitch-busypoll": "#b03030",
    "vxswitch-busypoll-auto": "#8c1c1c",
    "vxswitch-veth": "#e377c2",
    "vxswitch-ebpf": "#7b4173",
    "vxswitch-ebpf-base": "#a55194",
    "uplink-vxswitch-ring": "#c49c94",
    "bridge": "#1f77b4",
    "ovs": "#2ca02c",
    "ovs-tso": "#98df8a",
    "vde": "#9467bd",
    "veth": "#bcbd22",
    "vxswitch-vxlan": "#ff7f0e",
    "vxswitch-vxlan-base": "#ffbb78",
    "kernel-vxlan": "#17becf",
    "tap-floor": "#7f7f7f",
}

# Where vxswitch stands: the userspace switches it is compared with, and the
# floors (what any switch on the same port type cannot go below).
PEERS = ["ovs", "ovs-tso", "vde"]
FLOORS = ["tap-floor"]
# The contenders the peers table is drawn for, when they were measured.
SUBJECTS = ["vxswitch", "vxswitch-busypoll-auto"]
# A contender measured with --baseline is NAME + BASE_SUFFIX.
BASE_SUFFIX = "-base"


def base(key: str) -> str:
    """`fps_64` -> `fps`."""
    return key.split("_")[0] if key.startswith(("fps_", "loss_")) else key


def label(key: str) -> str:
    name, unit = METRICS[base(key)][0], METRICS[base(key)][1]
    if base(key) in ("fps", "loss"):
        name = f"{key.split('_')[1]} B {name}"
    return f"{name}, {unit}" if unit else name


def better(key: str) -> str:
    return METRICS[base(key)][4]


def summarize(values: list[float]) -> dict:
    """Median of the runs and, from two runs on, the spread: half the range
    (max - min) as a % of the median. One run has no spread (None)."""
    if not values or any(v is None for v in values):
        raise ValueError(f"summarize needs measured values, got {values}")
    med = statistics.median(values)
    lo, hi = min(values), max(values)
    spread = ((hi - lo) / 2 / abs(med) * 100) if len(values) > 1 and med else None
    return {"median": med, "min": lo, "max": hi, "spread_pct": spread, "n": len(values), "runs": values}


def build(names: list[str], raw: dict, baseline: str) -> dict:
    """raw[name][key] = [value per run]; returns name -> {key -> summary with ratio_to_bridge}."""
    out = {name: {k: summarize(v) for k, v in raw.get(name, {}).items() if v} for name in names}
    ref = out.get(baseline, {})
    for metrics in out.values():
        for key, s in metrics.items():
            b = ref.get(key)
            s["ratio_to_bridge"] = (s["median"] / b["median"]) if b and b["median"] else None
    return out


# ---------------------------------------------------------------------------
# A results document, read


class View:
    """A results.json, with what the tables need: the contenders in order,
    their figures, and which figures each was meant to produce."""

    def __init__(self, doc: dict, known_order: list[str] | None = None):
        self.doc = doc
        self.meta = doc["meta"]
        self.runs = self.meta["config"]["runs"]
        self.sizes = self.meta["config"]["sizes"]
        self.small = 64 if 64 in self.sizes else min(self.sizes)
        self.baseline = doc.get("baseline", "bridge")
        self.entries = doc["contenders"]
        order = self.meta.get("contenders_order")
        if not order:
            # Written before the order was recorded (results.json sorts its
            # keys): the harness's own order, a --baseline twin after its original.
            known = []
            for n in known_order or []:
                known += [n, n + BASE_SUFFIX]
            order = sorted(self.entries, key=lambda n: known.index(n) if n in known else len(known))
        self.names = [n for n in order if n in self.entries]
        measured = set()
        for e in self.entries.values():
            measured.update(e["metrics"])
        self._measured = measured

    def has(self, name: str) -> bool:
        return name in self.entries

    def userspace(self, name: str) -> bool:
        return self.entries[name].get("userspace_switch", True)

    def kind(self, name: str) -> str:
        return self.entries[name].get("kind", "l2")

    def metric(self, name: str, key: str) -> dict | None:
        return self.entries.get(name, {}).get("metrics", {}).get(key)

    def expected(self, name: str, key: str) -> bool:
        """Was `name` meant to produce `key` in this run?"""
        e = self.entries[name]
        if "expected" in e:
            return key in e["expected"]
        # Written before "expected" was recorded: every figure some contender
        # produced, the switch's own CPU only for a userspace switch.
        return key in self._measured and (self.userspace(name) or base(key) not in SWITCH_ONLY)

    def measured(self, key: str) -> bool:
        """Was `key` part of this run at all?"""
        return any(self.expected(n, key) for n in self.names)

    def ratio(self, name: str, key: str, ref: str, ref_key: str | None = None) -> float | None:
        a, b = self.metric(name, key), self.metric(ref, ref_key or key)
        return (a["median"] / b["median"]) if a and b and b["median"] else None

    def n_counts(self) -> tuple[int, int]:
        """(cells with fewer runs than planned, cells in all) over every expected figure."""
        short = total = 0
        for n in self.names:
            for key in self.entries[n].get("expected", self.entries[n]["metrics"]):
                total += 1
                s = self.metric(n, key)
                if s is None or s["n"] < self.runs:
                    short += 1
        return short, total


def fmt_value(key: str, v: float) -> str:
    _label, _unit, scale, dec, _better = METRICS[base(key)]
    x = v * scale
    if base(key) == "fps" and x < 0.1:
        dec = 4
    return f"{x:.{dec}f}"


def fmt_n(s: dict) -> str:
    return f"n={s['n']}"


def cell(v: View, name: str, key: str, ratio: bool = True) -> str:
    """One figure: median, ±spread (from 2 runs on), n = the runs behind it,
    and the ratio to the bridge of the same run."""
    s = v.metric(name, key)
    if s is None:
        if base(key) in SWITCH_ONLY and not v.userspace(name):
            return "n/a (kernel)"
        if not v.expected(name, key):
            return "not measured"
        return "**missing** (n=0)"
    text = fmt_value(key, s["median"])
    if base(key) in ("loss", "ping_lost"):
        # A spread in % of a median of 0 says nothing: give the worst run instead.
        if s["max"] > s["median"]:
            text += f" (max {fmt_value(key, s['max'])})"
        if s["min"] < 0:
            text += f" (min {fmt_value(key, s['min'])})"
        return f"{text} {fmt_n(s)}"
    if s.get("spread_pct") is not None:
        text += f" ±{s['spread_pct']:.0f}%"
    text += f" {fmt_n(s)}"
    r = v.ratio(name, key, v.baseline)
    if ratio and r is not None and base(key) not in NO_RATIO:
        text += f" ({r:.2f}×)"
    return text


def overlap(a: dict, b: dict) -> bool:
    """Do the two figures' run ranges (min..max) overlap?"""
    return a["min"] <= b["max"] and b["min"] <= a["max"]


def standing(key: str, a: dict, b: dict) -> str:
    """`better`/`worse` for `a` against `b` by the medians; `overlap` when the runs' ranges overlap."""
    if overlap(a, b):
        return "overlap"
    up = a["median"] > b["median"]
    return "better" if up == (better(key) == "higher") else "worse"


def header(v: View) -> list[str]:
    m = v.meta
    short, total = v.n_counts()
    runs = v.runs
    lines = [f"Run of {m['date_utc']} on {m['machine']}; {m['mode']} mode, {runs} round{'s' if runs > 1 else ''} "
             f"planned, {m['elapsed_s']:.0f} s in all."]
    if short:
        lines.append(f"{short} of {total} figures stand on fewer than {runs} run{'s' if runs > 1 else ''} "
                     "(each cell gives n, the runs behind it).")
    else:
        lines.append(f"Every figure stands on {runs} run{'s' if runs > 1 else ''} (n in each cell).")
    lines.append(f"Load average at start {m['loadavg_start']}, at end {m['loadavg_end']}.")
    if "seed" in m:
        lines.append(f"Contender order: shuffled for every test of every round (seed {m['seed']}; "
                     "results.json: meta.order).")
    else:
        lines.append("Contender order: the same in every round (a run from before the order was shuffled).")
    return [" ".join(lines)]


# ---------------------------------------------------------------------------
# The tables. Each returns markdown lines without a blank line, so that a
# table in the docs is the block of lines under its marker.


def table_summary(v: View) -> list[str]:
    cols = ["tcp1_gbps", "tcp4_gbps", f"fps_{v.small}", f"loss_{v.small}"]
    cols += [k for k in ("ping_avg_us", "ping_p99_us") if v.measured(k)]
    cols += ["rtt_p50_us", "rtt_p99_us", "cpu_s_per_gb"]
    cols = [k for k in cols if v.measured(k)]
    out = ["| contender | " + " | ".join(label(k) for k in cols) + " |", "|---|" + "---|" * len(cols)]
    for n in v.names:
        out.append(f"| {n} | " + " | ".join(cell(v, n, k) for k in cols) + " |")
    return out


def table_by_size(v: View, what: str) -> list[str]:
    out = ["| contender | " + " | ".join(f"{s} B" for s in v.sizes) + " |", "|---|" + "---|" * len(v.sizes)]
    for n in v.names:
        out.append(f"| {n} | " + " | ".join(cell(v, n, f"{what}_{s}") for s in v.sizes) + " |")
    return out


def table_latency(v: View) -> list[str]:
    cols = [k for k in ("ping_avg_us", "ping_p99_us", "ping_lost", "rtt1k_p50_us", "rtt1k_p99_us", "rtt_p50_us",
                        "rtt_p99_us") if v.measured(k)]
    out = ["| contender | " + " | ".join(label(k) for k in cols) + " |", "|---|" + "---|" * len(cols)]
    for n in v.names:
        out.append(f"| {n} | " + " | ".join(cell(v, n, k) for k in cols) + " |")
    return out


def table_cpu(v: View) -> list[str]:
    cols = [k for k in ("cpu_s_per_gb", "softirq_s_per_gb", "machine_s_per_gb", "busy_cpus", "idle_cpu_pct")
            if v.measured(k)]
    out = ["| contender | " + " | ".join(label(k) for k in cols) + " |", "|---|" + "---|" * len(cols)]
    for n in v.names:
        out.append(f"| {n} | " + " | ".join(cell(v, n, k, ratio=k != "cpu_s_per_gb") for k in cols) + " |")
    return out


def peer_figures(v: View) -> list[str]:
    keys = ["tcp1_gbps", "tcp4_gbps", f"fps_{v.small}", "ping_avg_us", "ping_p99_us", "rtt_p50_us", "rtt_p99_us",
            "rtt1k_p50_us", "rtt1k_p99_us", "cpu_s_per_gb", "machine_s_per_gb"]
    return [k for k in keys if v.measured(k)]


def compare_cell(v: View, name: str, key: str, ref: str) -> str:
    a, b = v.metric(name, key), v.metric(ref, key)
    if b is None:
        if base(key) in SWITCH_ONLY and not v.userspace(ref):
            return "n/a (kernel)"
        return "no figure"
    if a is None:
        return "no figure"
    r = a["median"] / b["median"] if b["median"] else None
    if r is None:
        return "–"
    return f"{r:.2f}× {standing(key, a, b)}"


def table_peers(v: View, subject: str | None = None) -> list[str]:
    """Where `subject` (default: each of SUBJECTS measured) stands against every userspace peer and floor
    of the run, and the bridge: the ratio of the medians and better/worse/overlap."""
    subjects = [subject] if subject else [s for s in SUBJECTS if v.has(s)]
    refs = [r for r in PEERS + FLOORS + [v.baseline] if v.has(r)]
    out = ["| contender | figure | better | value | " + " | ".join(f"÷ {r}" for r in refs) + " |",
           "|---|---|---|---|" + "---|" * len(refs)]
    for s in subjects:
        for k in peer_figures(v):
            out.append(f"| {s} | {label(k)} | {better(k)} | {cell(v, s, k, ratio=False)} | "
                       + " | ".join(compare_cell(v, s, k, r) for r in refs) + " |")
    return out


def before_after_pairs(v: View) -> list[tuple[str, str]]:
    return [(n, n + BASE_SUFFIX) for n in v.names if v.has(n + BASE_SUFFIX)]


def table_before_after(v: View) -> list[str]:
    """Each contender measured with --baseline against its twin run by the baseline binary."""
    keys = ["tcp1_gbps", "tcp4_gbps"] + [f"fps_{s}" for s in v.sizes] + [f"loss_{s}" for s in v.sizes]
    keys += ["ping_avg_us", "ping_p99_us", "rtt_p50_us", "rtt_p99_us", "rtt1k_p50_us", "rtt1k_p99_us",
             "cpu_s_per_gb", "machine_s_per_gb", "idle_cpu_pct"]
    keys = [k for k in keys if v.measured(k)]
    out = ["| contender | figure | better | after | before (--baseline) | after ÷ before |",
           "|---|---|---|---|---|---|"]
    for after, before in before_after_pairs(v):
        for k in keys:
            if base(k) in NO_RATIO:
                ratio = "–"
            else:
                ratio = compare_cell(v, after, k, before)
            out.append(f"| {after} | {label(k)} | {better(k)} | {cell(v, after, k, ratio=False)} | "
                       f"{cell(v, before, k, ratio=False)} | {ratio} |")
    return out


# Issue 13's targets, each from one run: (what, contender, metric, reference contender
# or None, bound, kind). Kinds: "min"/"max" bound the ratio of the medians; "noworse"
# is met when the contender is on the better side of the reference or the two runs'
# ranges overlap (no difference this run can show); "below" bounds the value itself.
TARGETS = [
    ("default mode no worse than tap-floor: ping RTT avg", "vxswitch", "ping_avg_us", "tap-floor", 1.0, "noworse"),
    ("default mode no worse than tap-floor: 64 B frames/s", "vxswitch", "fps_64", "tap-floor", 1.0, "noworse"),
    ("`--busy-poll auto` ping RTT avg ≤ 3× the bridge", "vxswitch-busypoll-auto", "ping_avg_us", "bridge", 3.0,
     "max"),
    ("`--busy-poll auto` idle CPU < 2%", "vxswitch-busypoll-auto", "idle_cpu_pct", None, 2.0, "below"),
    ("64 B frames/s ≥ 1.3× VDE", "vxswitch", "fps_64", "vde", 1.3, "min"),
    ("64 B frames/s ≥ 1.2× tap-floor", "vxswitch", "fps_64", "tap-floor", 1.2, "min"),
    ("TCP 4 streams ≥ 0.7× the bridge", "vxswitch", "tcp4_gbps", "bridge", 0.7, "min"),
    ("TCP 1 stream: no regression", "vxswitch", "tcp1_gbps", "vxswitch-base", 1.0, "noworse"),
    ("overlay TCP 1 stream: no regression", "vxswitch-vxlan", "tcp1_gbps", "vxswitch-vxlan-base", 1.0, "noworse"),
    ("overlay TCP 4 streams: no regression", "vxswitch-vxlan", "tcp4_gbps", "vxswitch-vxlan-base", 1.0, "noworse"),
    ("overlay 64 B frames/s: no regression", "vxswitch-vxlan", "fps_64", "vxswitch-vxlan-base", 1.0, "noworse"),
    ("overlay ping RTT avg: no regression", "vxswitch-vxlan", "ping_avg_us", "vxswitch-vxlan-base", 1.0, "noworse"),
    ("overlay switch CPU per GB: no regression", "vxswitch-vxlan", "cpu_s_per_gb", "vxswitch-vxlan-base", 1.0,
     "noworse"),
]

# Item 2's port type (veth ports with the eBPF fast path, issue 17) on the same
# three figures, and the figure no switch can pass: a veth pair without a switch
# ("reference": a ratio shown, no verdict). Listed only in a run that measured
# vxswitch-ebpf (resp. veth): both are options of the harness, not the default set.
PORT_TYPE_TARGETS = [
    ("veth ports + fast path: 64 B frames/s ≥ 1.3× VDE", "vxswitch-ebpf", "fps_64", "vde", 1.3, "min"),
    ("veth ports + fast path: 64 B frames/s ≥ 1.2× tap-floor", "vxswitch-ebpf", "fps_64", "tap-floor", 1.2, "min"),
    ("veth ports + fast path: TCP 4 streams ≥ 0.7× the bridge", "vxswitch-ebpf", "tcp4_gbps", "bridge", 0.7, "min"),
    ("what the generator offers: a veth pair without a switch, 64 B frames/s against tap-floor", "veth", "fps_64",
     "tap-floor", 1.2, "reference"),
]

# What TAP ports can reach at all on a machine whose CPUs the TCP tests keep
# busy: throughput is then CPUs / (machine CPU per GB), so no switch on TAP
# ports passes the bridge's machine CPU per GB over the bare TAP forwarder's.
CEILING_ROWS = [
    ("the CPU ceiling of TAP ports: the bridge's machine CPU per GB over tap-floor's (TCP 4 streams against the "
     "bridge can reach at most this while the CPUs are busy)", "bridge", "machine_s_per_gb", "tap-floor", 0.7,
     "reference"),
]


# Issue 15's targets for the uplink (LAN host <-> container), listed only in a
# run that measured one of its contenders (they are not in the default set).
UPLINK_TARGETS = [
    ("uplink TCP 1 stream ≥ 0.8× macvlan", "uplink-vxswitch", "tcp1_gbps", "uplink-macvlan", 0.8, "min"),
    ("uplink TCP 4 streams ≥ 0.8× macvlan", "uplink-vxswitch", "tcp4_gbps", "uplink-macvlan", 0.8, "min"),
    ("uplink 64 B frames/s ≥ OVS with an AF_PACKET port", "uplink-vxswitch", "fps_64", "uplink-ovs", 1.0, "min"),
    ("uplink 64 B frames: nothing lost (< 0.1%)", "uplink-vxswitch", "loss_64", None, 0.001, "below"),
    # The same targets for the uplink read through receive rings (--uplink-rx ring).
    ("uplink, rings: TCP 1 stream ≥ 0.8× macvlan", "uplink-vxswitch-ring", "tcp1_gbps", "uplink-macvlan", 0.8, "min"),
    ("uplink, rings: TCP 4 streams ≥ 0.8× macvlan", "uplink-vxswitch-ring", "tcp4_gbps", "uplink-macvlan", 0.8, "min"),
    ("uplink, rings: 64 B frames/s ≥ OVS with an AF_PACKET port", "uplink-vxswitch-ring", "fps_64", "uplink-ovs", 1.0,
     "min"),
    ("uplink, rings: 64 B frames: nothing lost (< 0.1%)", "uplink-vxswitch-ring", "loss_64", None, 0.001, "below"),
    # The same targets with the eBPF fast path (a veth port, --fastpath ebpf).
    ("uplink, fast path: TCP 1 stream ≥ 0.8× macvlan", "uplink-vxswitch-ebpf", "tcp1_gbps", "uplink-macvlan", 0.8,
     "min"),
    ("uplink, fast path: TCP 4 streams ≥ 0.8× macvlan", "uplink-vxswitch-ebpf", "tcp4_gbps", "uplink-macvlan", 0.8,
     "min"),
    ("uplink, fast path: 64 B frames/s ≥ OVS with an AF_PACKET port", "uplink-vxswitch-ebpf", "fps_64", "uplink-ovs",
     1.0, "min"),
    ("uplink, fast path: 64 B frames: nothing lost (< 0.1%)", "uplink-vxswitch-ebpf", "loss_64", None, 0.001, "below"),
]
UPLINK_CONTENDERS = {"uplink-vxswitch", "uplink-vxswitch-ring", "uplink-vxswitch-ebpf", "uplink-macvlan",
                     "uplink-bridge", "uplink-ovs"}


def how_to_measure(name: str) -> str:
    if name.endswith(BASE_SUFFIX):
        return f"{name} is measured with --baseline OLD_BINARY"
    return f"add {name} with --only"


def targets(v: View) -> list[dict]:
    """Every target of TARGETS with its figures, ratio and verdict (met: True/False/None for no figure)."""
    rows = []
    uplink = UPLINK_TARGETS if any(v.has(n) for n in UPLINK_CONTENDERS) else []
    # The rings' and the fast path's rows only in a run that measured them (options, not the default).
    uplink = [t for t in uplink if t[1] not in ("uplink-vxswitch-ring", "uplink-vxswitch-ebpf") or v.has(t[1])]
    port_type = [t for t in PORT_TYPE_TARGETS if v.has(t[1])]
    ceiling = [t for t in CEILING_ROWS if v.has(t[1]) and v.has(t[3])]
    for what, name, key, ref, bound, kind in TARGETS + port_type + ceiling + uplink:
        row = {"target": what, "contender": name, "metric": key, "reference": ref, "bound": bound, "kind": kind,
               "value": None, "n": None, "reference_value": None, "reference_n": None, "ratio": None,
               "overlap": None, "met": None, "why": ""}
        rows.append(row)
        a = v.metric(name, key)
        b = v.metric(ref, key) if ref else None
        absent = [c for c in (name, ref) if c and not v.has(c)]
        if absent:
            row["why"] = f"{', '.join(absent)} not in this run ({'; '.join(how_to_measure(c) for c in absent)})"
            continue
        if a is None or (ref and b is None):
            row["why"] = (f"{label(key)}: not measured in this run" if not v.measured(key)
                          else f"{label(key)}: missing in this run (see the missing measurements)")
            continue
        row.update(value=a["median"], n=a["n"])
        if kind == "below":
            row["met"] = a["median"] < bound
            continue
        row.update(reference_value=b["median"], reference_n=b["n"])
        if not b["median"]:
            row["why"] = f"{ref}'s {key} is 0"
            continue
        ratio = a["median"] / b["median"]
        row["ratio"] = ratio
        row["overlap"] = overlap(a, b)
        if kind == "reference":
            continue
        if kind == "min":
            row["met"] = ratio >= bound
        elif kind == "max":
            row["met"] = ratio <= bound
        else:  # noworse
            on_better_side = ratio >= 1.0 if better(key) == "higher" else ratio <= 1.0
            row["met"] = on_better_side or row["overlap"]
    return rows


def table_targets(v: View) -> list[str]:
    """Issue 13's targets, one line each, computed from the run."""
    out = []
    for t in targets(v):
        if t["kind"] == "reference" and t["ratio"] is not None:
            unit = METRICS[base(t["metric"])][1]
            out.append(f"- **reference**: {t['target']}: {t['contender']} {fmt_value(t['metric'], t['value'])} {unit} "
                       f"n={t['n']} against {t['reference']} {fmt_value(t['metric'], t['reference_value'])} {unit} "
                       f"n={t['reference_n']} = {t['ratio']:.2f}× (the target's {t['bound']}× lies "
                       f"{'within' if t['ratio'] >= t['bound'] else 'beyond'} it)")
            continue
        if t["met"] is None:
            out.append(f"- **no figure**: {t['target']}: {t['why']}")
            continue
        verdict = "**met**" if t["met"] else "**not met**"
        unit = METRICS[base(t["metric"])][1]
        value = f"{t['contender']} {fmt_value(t['metric'], t['value'])} {unit} n={t['n']}"
        if t["kind"] == "below":
            out.append(f"- {verdict}: {t['target']}: {value}")
            continue
        ref = f"{t['reference']} {fmt_value(t['metric'], t['reference_value'])} {unit} n={t['reference_n']}"
        detail = ""
        if t["kind"] == "noworse":
            if min(t["n"], t["reference_n"]) < 2:
                detail = "; one run on a side: no range to tell noise by"
            else:
                detail = "; the runs' ranges overlap" if t["overlap"] else "; the runs' ranges do not overlap"
        out.append(f"- {verdict}: {t['target']}: {value} against {ref} = {t['ratio']:.2f}×{detail}")
    return out


def table_missing(v: View) -> list[str]:
    out = []
    for n in v.names:
        for m in v.entries[n].get("missing", []):
            where = f"run {m['run']} " if m.get("run") else ""
            out.append(f"- {n}: {where}{m['test']}: {m['reason'].strip().splitlines()[0] if m['reason'].strip() else '?'}")
        if "missing" not in v.entries[n]:  # written before missing measurements were listed
            out += [f"- {n}: {e.strip().splitlines()[0]}" for e in v.entries[n].get("errors", []) if e.strip()]
    return out


TABLES = {
    "summary": table_summary,
    "frames": lambda v: table_by_size(v, "fps"),
    "loss": lambda v: table_by_size(v, "loss"),
    "latency": table_latency,
    "cpu": table_cpu,
    "peers": table_peers,
    "targets": table_targets,
    "before-after": table_before_after,
    "missing": table_missing,
}


def render_table(v: View, name: str) -> str:
    if name not in TABLES:
        raise KeyError(f"unknown table {name!r}; tables: {', '.join(TABLES)}")
    return "\n".join(TABLES[name](v)) + "\n"


def markdown(v: View) -> str:
    """The whole report: every table with a sentence on what it shows."""
    lines = header(v)
    w = lines.append
    small = v.small
    w("")
    w("Each cell: median, ±spread (half the min–max range, % of the median; from 2 runs on), n = the runs behind "
      "it, and in brackets the ratio to the kernel bridge measured in the same run (for RTT and CPU, lower is "
      "better).")
    w("")
    lines += table_summary(v)
    if any(v.has(s) for s in SUBJECTS):
        refs = [r for r in PEERS + FLOORS if v.has(r)]
        absent = [r for r in PEERS + FLOORS if not v.has(r)]
        w("")
        w(f"Where vxswitch stands: each figure divided by the same figure of every userspace peer and floor in "
          f"this run ({', '.join(refs) or 'none'}) and of the bridge; better/worse by the medians, `overlap` where "
          f"the two contenders' run ranges overlap (this run does not order them)"
          + (f"; not in this run: {', '.join(absent)}." if absent else "."))
        w("")
        lines += table_peers(v)
    w("")
    w("Issue 13's targets" + (" and issue 15's (the uplink)" if any(v.has(n) for n in UPLINK_CONTENDERS) else "")
      + ", computed from this run (a target needs both its contenders measured):")
    w("")
    lines += table_targets(v)
    if before_after_pairs(v):
        w("")
        w(f"Before and after: each contender run by the binary under test ({v.meta['vxswitch'].get('binary', '?')}) "
          f"and by the --baseline binary ({v.meta['vxswitch'].get('baseline', '?')}), alternated in the same run:")
        w("")
        lines += table_before_after(v)
    w("")
    w("Frames/s forwarded by frame size (Mframes/s; frame sizes count the 4-byte FCS):")
    w("")
    lines += table_by_size(v, "fps")
    w("")
    w("Loss by frame size (% of the frames the generator sent that did not reach c2; the generator offers as "
      "much as it can; where the path pushes back, as a full TAP queue or a synchronous veth does, the generator "
      "is slowed instead of losing frames; below 0, c2 received frames the generator did not count):")
    w("")
    lines += table_by_size(v, "loss")
    w("")
    w("Round-trip latency with every message finding the path idle (wake-ups included): ping paced at 1 ms, "
      "and sockperf at 1000 messages/s; the back-to-back sockperf figures again for comparison:")
    w("")
    lines += table_latency(v)
    w("")
    w("CPU per GB moved in the TCP tests: the switch process's utime+stime (all its threads, both daemons for "
      "the overlays), pooled over a round's two TCP tests (a round with one of them missing has no figure); "
      "machine-wide softirq time and machine-wide busy time (everything but idle, all CPUs: the switch, both "
      "iperf3 ends, the kernel's network stacks, and anything else the machine did); how many CPUs were busy "
      "on average while iperf3 ran; and the switch's CPU with no traffic anywhere (% of one CPU). When busy CPUs "
      "is near the machine's count the TCP figure is bound by CPU, and throughput is roughly CPUs / machine CPU "
      "per GB:")
    w("")
    lines += table_cpu(v)
    missing = table_missing(v)
    if missing:
        w("")
        w("Missing measurements (each is a figure with fewer runs, or none):")
        w("")
        lines += missing
    retried = [(n, r) for n in v.names for r in v.entries[n].get("retried", [])]
    if retried:
        w("")
        w("Measurements that failed once and succeeded when retried (the retry's figure is used):")
        w("")
        lines += [f"- {n}: {r}" for n, r in retried]
    text = "\n".join(lines) + "\n"
    note = v.meta.get("note", "").strip()
    return (note + "\n\n" + text) if note else text


def runs_per_point(v: View, keys: list[str]) -> str:
    """"3 runs per bar", or "2-3 runs per bar (n on the bars with fewer)"."""
    ns = [s["n"] for n in v.names for k in keys if (s := v.metric(n, k))]
    if not ns:
        return "no figure"
    lo, hi = min(ns), max(ns)
    if lo == hi == v.runs:
        return f"{hi} run{'s' if hi > 1 else ''} per"
    return f"{lo}–{hi} runs (of {v.runs} planned) per"


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


def subtitle(v: View, keys: list[str], what: str) -> str:
    m = v.meta
    return f"{m['date_utc']}, {m['machine']}, {runs_per_point(v, keys)} {what}"


def svg_throughput(v: View) -> str:
    """Grouped bars: TCP 1 stream and 4 streams per contender, whiskers = min..max of the runs."""
    series = [("tcp1_gbps", "1 stream", 1.0), ("tcp4_gbps", "4 streams", 0.55)]
    names = list(v.names)
    sub = subtitle(v, [k for k, _l, _o in series], "bar")
    # Wide enough that the longest name fits under its group (~7 px a character).
    group_w = max(90, 7 * max([len(n) for n in names] + [1]) + 8)
    plot_w = max(740, group_w * len(names))
    width, height = plot_w + 80, 400
    x0, y0, plot_h = 60, 340, 280
    vals = [s["max"] for n in names for k, _l, _o in series if (s := v.metric(n, k))]
    top, step = nice_max(max(vals + [0.001]))
    out = _svg_open(width, height, "TCP throughput by contender (iperf3)")
    out.append(f'<text x="{width / 2}" y="38" text-anchor="middle" fill="#555">{html.escape(sub)}</text>')
    _y_axis(out, x0, y0, plot_h, plot_w, top, step, "Gbit/s")
    group = plot_w / max(1, len(names))
    bar = group * 0.32
    for i, name in enumerate(names):
        gx = x0 + group * i + group * 0.18
        color = COLORS.get(name, "#444")
        for j, (key, _label, opacity) in enumerate(series):
            s = v.metric(name, key)
            bx = gx + j * bar
            if not s:
                out.append(f'<text x="{bx + bar / 2:.1f}" y="{y0 - 4}" text-anchor="middle" fill="red">×</text>')
                continue
            h = plot_h * s["median"] / top
            out.append(
                f'<rect x="{bx:.1f}" y="{y0 - h:.1f}" width="{bar - 2:.1f}" height="{h:.1f}" fill="{color}" '
                f'fill-opacity="{opacity}" stroke="{color}"><title>{html.escape(name)} {key}: '
                f'{s["median"]:.2f} Gbit/s, n={s["n"]}</title></rect>'
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
            if s["n"] < v.runs:  # fewer runs than planned: say so on the bar
                out.append(
                    f'<text x="{bx + (bar - 2) / 2:.1f}" y="{label_y - 11:.1f}" text-anchor="middle" '
                    f'font-size="9" fill="#b00">n={s["n"]}</text>'
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


def svg_frames(v: View) -> str:
    """Lines: forwarded Mframes/s by frame size, one line per contender."""
    sizes = v.sizes
    sub = subtitle(v, [f"fps_{s}" for s in sizes], "point")
    width, height = 820, 420
    x0, y0, plot_w, plot_h = 70, 360, 560, 290
    vals = [m["max"] * 1e-6 for n in v.names for s in sizes if (m := v.metric(n, f"fps_{s}"))]
    top, step = nice_max(max(vals + [0.001]))
    out = _svg_open(width, height, "Frames/s forwarded by frame size (generator as fast as it can)")
    out.append(f'<text x="{width / 2}" y="38" text-anchor="middle" fill="#555">{html.escape(sub)}</text>')
    _y_axis(out, x0, y0, plot_h, plot_w, top, step, "Mframes/s")
    xs = [x0 + plot_w * (i + 0.5) / len(sizes) for i in range(len(sizes))]
    for x, s in zip(xs, sizes):
        out.append(f'<text x="{x:.1f}" y="{y0 + 18}" text-anchor="middle">{s}</text>')
    out.append(f'<text x="{x0 + plot_w / 2}" y="{y0 + 38}" text-anchor="middle">frame size, bytes (with FCS)</text>')
    for k, name in enumerate(v.names):
        color = COLORS.get(name, "#444")
        pts = []
        for x, s in zip(xs, sizes):
            m = v.metric(name, f"fps_{s}")
            if m:
                pts.append((x, y0 - plot_h * m["median"] * 1e-6 / top, m))
        dash = ' stroke-dasharray="6 3"' if v.kind(name) == "overlay" else ""
        if len(pts) > 1:
            d = " ".join(f"{x:.1f},{y:.1f}" for x, y, _m in pts)
            out.append(f'<polyline points="{d}" fill="none" stroke="{color}" stroke-width="2"{dash}/>')
        for x, y, m in pts:
            out.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{color}"><title>{html.escape(name)}: '
                f'{m["median"] * 1e-6:.3f} Mframes/s, n={m["n"]}</title></circle>'
            )
        ly = 70 + k * 22
        out.append(f'<line x1="{x0 + plot_w + 20}" y1="{ly}" x2="{x0 + plot_w + 44}" y2="{ly}" stroke="{color}" stroke-width="2"{dash}/>')
        out.append(f'<text x="{x0 + plot_w + 50}" y="{ly + 4}">{html.escape(name)}</text>')
    if any(v.kind(n) == "overlay" for n in v.names):
        ly = 70 + len(v.names) * 22 + 10
        out.append(f'<text x="{x0 + plot_w + 20}" y="{ly}" fill="#555">dashed: VXLAN overlay</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
