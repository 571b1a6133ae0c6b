#!/usr/bin/env python3
"""System benchmark harness of vxswitch: the same two-container topology on
vxswitch, the Linux bridge, Open vSwitch (userspace datapath), VDE and a bare
veth pair, plus a two-host VXLAN overlay on vxswitch and on the kernel; TCP
throughput, frames/s by frame size with loss, round-trip latency (ping and
sockperf) and the switch's CPU per GB and when idle, each the median of
several runs, with ratios to the kernel bridge measured in the same run and
vxswitch's standing against every userspace peer and the TAP floor.

    sudo benches/system/run.py            # full run, about 20 minutes
    sudo benches/system/run.py --quick    # smoke run, under 3 minutes
    sudo benches/system/run.py --only vxswitch,ovs
    benches/system/run.py --from-json benches/system/results/X.json --markdown-table peers
    benches/system/run.py --check-docs    # the docs' generated tables match their JSON

Measuring needs root. Installs nothing: a missing tool is reported with the
apt-get line that installs it (exit 2). See docs/benchmarks-system.md.

Exit status: 0 every contender produced every figure in every round; 1 some
measurement is missing (each is printed: contender, round, test, reason), or
--check-docs found a table that differs; 2 cannot start (not root, tools or
binary missing, bad option); 130 interrupted. Everything created is removed
in every case.
"""

from __future__ import annotations

import sys

sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__

import argparse  # noqa: E402
import atexit  # noqa: E402
import glob  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from collections import defaultdict  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

from vxbench import contenders as C  # noqa: E402
from vxbench import measure as M  # noqa: E402
from vxbench import report as R  # noqa: E402
from vxbench.lab import BenchError, Interrupted, Lab, log, remove_namespaces, run, stale_namespaces  # noqa: E402

FULL = dict(runs=3, tcp_seconds=4.0, tcp_omit=1, frame_seconds=1.5, latency_seconds=2.0,
            sizes="64,256,512,1024,1500", deadline=1500.0, ping_count=1000)
QUICK = dict(runs=1, tcp_seconds=2.0, tcp_omit=0, frame_seconds=1.0, latency_seconds=1.0,
             sizes="64,1500", deadline=220.0, ping_count=500)
LATENCY_PACED_MPS = 1000  # the paced latency test: one message per ms
LATENCY_MSG = 64
PING_INTERVAL = 0.001  # ping -i: one echo per ms, each finds the path idle
IDLE_SETTLE = 0.5  # seconds after the last test of a round before the idle window
DOCS = [os.path.join(REPO, "docs", "benchmarks-system.md"), os.path.join(REPO, "docs", "benchmarks.md")]
GENERATED = re.compile(r"^<!-- generated from (\S+\.json)(?: table=(\S+))? -->$")


def default_binary() -> str:
    if os.environ.get("VXSWITCH_BIN"):
        return os.environ["VXSWITCH_BIN"]
    if os.environ.get("CARGO_TARGET_DIR"):
        return os.path.join(os.environ["CARGO_TARGET_DIR"], "release", "vxswitch")
    return os.path.join(REPO, "target", "release", "vxswitch")


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="benches/system/run.py",
        description="System benchmark: vxswitch vs the kernel bridge, OVS (netdev), VDE, veth, and VXLAN overlays.",
        epilog="Full run: 3 rounds, about 20 minutes. --quick: 1 round, under 3 minutes. Measuring needs root; "
               "--from-json, --markdown-table and --check-docs do not.",
    )
    p.add_argument("--quick", action="store_true", help="smoke run: 1 run each, shorter tests, sizes 64,1500")
    p.add_argument("--only", metavar="LIST",
                   help=f"comma-separated contenders ({','.join(c.name for c in C.ALL)}); "
                        f"'{C.BASELINE}' and 'tap-floor' are always added: the baseline of the ratios and the floor")
    p.add_argument("--vxswitch", metavar="PATH", default=default_binary(),
                   help="the vxswitch binary (default: $VXSWITCH_BIN, else $CARGO_TARGET_DIR/release/vxswitch, "
                        "else target/release/vxswitch in the repo)")
    p.add_argument("--baseline", metavar="PATH",
                   help="a second vxswitch binary (the 'before' of a change): `vxswitch`, `vxswitch-vxlan` and "
                        "`vxswitch-ebpf`, when selected, are also measured with it as vxswitch-base, "
                        "vxswitch-vxlan-base and vxswitch-ebpf-base, "
                        "alternated with every other contender in the same run")
    p.add_argument("--build", action="store_true", help="run `cargo build --release` first")
    p.add_argument("--generator", default="trafgen", choices=sorted(M.GENERATORS), help="frame generator")
    p.add_argument("--runs", type=int, help="runs per figure (default 3; --quick 1)")
    p.add_argument("--sizes", help="frame sizes of the sweep, bytes with FCS (default 64,256,512,1024,1500)")
    p.add_argument("--tcp-seconds", type=float, help="iperf3 -t (default 4; --quick 2)")
    p.add_argument("--frame-seconds", type=float, help="measuring window per frame size (default 1.5; --quick 1)")
    p.add_argument("--latency-seconds", type=float,
                   help="sockperf -t of each latency test, and the idle-CPU window (default 2; --quick 1)")
    p.add_argument("--ping-count", type=int, help="ping -c of the 1 ms-paced ping test (default 1000; --quick 500)")
    p.add_argument("--seed", type=int, help="seed of the contender order's shuffle (default: random; recorded)")
    p.add_argument("--deadline", type=float,
                   help="give up on measurements not started after this many seconds (default 1500; --quick 220)")
    p.add_argument("--out", metavar="DIR", default=os.path.join(REPO, "target", "bench-system"),
                   help="where results.md, results.json and the SVGs go (default target/bench-system)")
    p.add_argument("--note", default="", help="a sentence added to the report (e.g. what else the machine ran)")
    p.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (logs, configs) after the run")
    p.add_argument("--list", action="store_true", help="list the contenders and exit")
    p.add_argument("--from-json", metavar="FILE",
                   help="measure nothing: render results.md and the SVGs again from a results.json into --out "
                        "(with --markdown-table: print one table)")
    p.add_argument("--markdown-table", metavar="NAME", choices=sorted(R.TABLES),
                   help=f"with --from-json: print only this table ({', '.join(R.TABLES)}), as the docs carry it")
    p.add_argument("--check-docs", action="store_true",
                   help="check that every table in docs/benchmarks*.md under a `<!-- generated from "
                        "benches/system/results/X.json table=NAME -->` line is what --markdown-table prints now")
    p.add_argument("--update-docs", action="store_true", help="rewrite those tables from their JSON")
    p.add_argument("--check", action="store_true", help="only check tools and binary, then exit")
    p.add_argument("--clean-stale", action="store_true",
                   help="remove vxb-PID-* namespaces left by a harness that was SIGKILLed, then exit")
    opts = p.parse_args(argv)
    defaults = QUICK if opts.quick else FULL
    opts.mode = "quick" if opts.quick else "full"
    opts.runs = opts.runs or defaults["runs"]
    opts.tcp_seconds = opts.tcp_seconds or defaults["tcp_seconds"]
    opts.tcp_omit = defaults["tcp_omit"]
    opts.frame_seconds = opts.frame_seconds or defaults["frame_seconds"]
    opts.latency_seconds = opts.latency_seconds or defaults["latency_seconds"]
    opts.deadline = opts.deadline or defaults["deadline"]
    opts.ping_count = opts.ping_count or defaults["ping_count"]
    if not 10 <= opts.ping_count <= 100000:
        p.error("--ping-count must be 10 to 100000")
    if opts.markdown_table and not opts.from_json:
        p.error("--markdown-table needs --from-json FILE")
    try:
        opts.sizes = [int(s) for s in (opts.sizes or defaults["sizes"]).split(",") if s.strip()]
    except ValueError:
        p.error("--sizes takes comma-separated integers")
    if not opts.sizes or min(opts.sizes) < 64 or max(opts.sizes) > 1518:
        p.error("frame sizes must be between 64 and 1518")
    if opts.runs < 1 or opts.runs > 20:
        p.error("--runs must be 1 to 20")
    for name in ("tcp_seconds", "frame_seconds", "latency_seconds"):
        if not 0.5 <= getattr(opts, name) <= 60:
            p.error(f"--{name.replace('_', '-')} must be 0.5 to 60")
    names = [c.name for c in C.ALL]
    if opts.only:
        wanted = [n.strip() for n in opts.only.split(",") if n.strip()]
        unknown = [n for n in wanted if n not in C.BY_NAME]
        if unknown:
            p.error(f"unknown contender(s) {', '.join(unknown)}; choose from {', '.join(names)}")
        wanted += [n for n in C.ALWAYS if n not in wanted]
        opts.selected = [c for c in C.ALL if c.name in wanted]
    else:
        opts.selected = [c for c in C.ALL if c.name not in C.OPTIONAL]
    opts.vxswitch = os.path.abspath(opts.vxswitch)
    if opts.baseline:
        opts.baseline = os.path.abspath(opts.baseline)
        if not os.access(opts.baseline, os.X_OK):
            p.error(f"--baseline {opts.baseline} is not an executable")
        with_base = []
        for c in opts.selected:
            with_base.append(c)
            if c.name in C.BASE_OF:
                with_base.append(C.BASE_OF[c.name])
        opts.selected = with_base
    return opts


def missing_packages(opts) -> list[tuple[str, str]]:
    tools = {"ip", "ss", "sysctl", "ping", "iperf3", "sockperf", *M.GENERATORS[opts.generator].tools}
    for c in opts.selected:
        tools.update(c.tools)
    return sorted((t, C.PACKAGES[t]) for t in tools if shutil.which(t) is None)


def estimate_seconds(opts) -> float:
    per = (2 * (opts.tcp_seconds + opts.tcp_omit + 1.0) + 2 * (opts.latency_seconds + 1.2)
           + opts.ping_count * (PING_INTERVAL + 0.0002) + 0.3 + len(opts.sizes) * (opts.frame_seconds + 1.0))
    return 20 + opts.runs * (len(opts.selected) * per + IDLE_SETTLE + opts.latency_seconds)


def version(argv) -> str:
    try:
        p = run(argv, check=False, timeout=10)
    except BenchError:
        return "?"
    text = (p.stdout or p.stderr).strip().splitlines()
    return text[0].strip() if text else "?"


def machine() -> str:
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{os.cpu_count()} vCPU ({model}), Linux {platform.release()}"


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def view(doc: dict) -> R.View:
    return R.View(doc, [c.name for c in C.ALL])


def write_outputs(out: str, doc: dict) -> tuple[str, list[str]]:
    """Writes results.md, results.json and the two SVGs; returns the markdown and the file names."""
    v = view(doc)
    os.makedirs(out, exist_ok=True)
    md = R.markdown(v)
    files = {
        "results.md": md,
        "results.json": json.dumps(doc, indent=2, sort_keys=True) + "\n",
        "throughput.svg": R.svg_throughput(v),
        "frames.svg": R.svg_frames(v),
    }
    for name, text in files.items():
        with open(os.path.join(out, name), "w") as f:
            f.write(text)
    return md, list(files)


def load_json(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def from_json(path: str, out: str, table: str | None) -> int:
    """Renders the outputs again from a results.json (no measurement, no root needed)."""
    doc = load_json(path)
    if table:
        sys.stdout.write(R.render_table(view(doc), table))
        return 0
    md, files = write_outputs(out, doc)
    print(md)
    log(f"wrote {', '.join(files)} to {out}")
    return 0


def generated_blocks(lines: list[str]):
    """(index of the marker line, JSON path, table name, index past the block) for every
    `<!-- generated from X.json table=NAME -->` line: the block is the lines under it up to
    the first blank line."""
    for i, line in enumerate(lines):
        m = GENERATED.match(line.rstrip("\n"))
        if not m:
            continue
        end = i + 1
        while end < len(lines) and lines[end].strip():
            end += 1
        yield i, m.group(1), m.group(2) or "summary", end


def check_docs(update: bool, paths=None) -> int:
    """Every generated table of the docs against what its JSON renders now; with `update`, rewritten."""
    import difflib

    bad = checked = 0
    for path in paths or DOCS:
        with open(path) as f:
            lines = f.readlines()
        rel = os.path.relpath(path, REPO)
        changed = False
        for i, src, table, end in reversed(list(generated_blocks(lines))):
            checked += 1
            src_path = os.path.join(REPO, src)
            try:
                want = R.render_table(view(load_json(src_path)), table).splitlines(keepends=True)
            except (OSError, ValueError, KeyError) as e:
                print(f"{rel}:{i + 1}: cannot render table {table} from {src}: {e}", file=sys.stderr)
                bad += 1
                continue
            have = lines[i + 1:end]
            if have == want:
                continue
            if update:
                lines[i + 1:end] = want
                changed = True
                print(f"{rel}:{i + 1}: table {table} from {src} rewritten")
                continue
            bad += 1
            print(f"{rel}:{i + 1}: table {table} differs from what {src} renders now "
                  f"(benches/system/run.py --from-json {src} --markdown-table {table}):", file=sys.stderr)
            sys.stderr.writelines(difflib.unified_diff(have, want, "in the doc", "rendered", n=0))
        if changed:
            with open(path, "w") as f:
                f.writelines(lines)
    print(f"check-docs: {checked} generated table(s), {bad} differ" + (" (run with --update-docs to rewrite)" if bad else ""))
    return 1 if bad else 0


def expected_keys(c, opts) -> list[str]:
    keys = ["tcp1_gbps", "tcp4_gbps", "rtt_p50_us", "rtt_p99_us", "rtt1k_p50_us", "rtt1k_p99_us",
            "ping_avg_us", "ping_p99_us", "ping_lost", "softirq_s_per_gb", "machine_s_per_gb", "busy_cpus"]
    keys += [f"{k}_{s}" for s in opts.sizes for k in ("fps", "loss")]
    if c.userspace:
        keys += ["cpu_s_per_gb", "idle_cpu_pct"]
    return keys


def pool_tcp(got: dict[str, dict], userspace: bool) -> dict[str, float]:
    """CPU figures of one round from its two TCP tests pooled (`got`: test -> tcp() result).
    Both must be there: a figure from one test alone would not be the same figure."""
    lacking = [t for t in ("tcp1", "tcp4") if t not in got]
    if lacking:
        raise BenchError(f"needs both TCP tests of the round; {' and '.join(lacking)} missing")
    res = [got["tcp1"], got["tcp4"]]
    gb = sum(x["moved_bytes"] for x in res) / 1e9
    out = {
        "softirq_s_per_gb": sum(x["softirq_s"] for x in res) / gb,
        "machine_s_per_gb": sum(x["machine_busy_s"] for x in res) / gb,
        "busy_cpus": sum(x["machine_busy_s"] for x in res) / sum(x["wall_s"] for x in res),
    }
    if userspace:
        if any(x["switch_cpu_s"] is None for x in res):
            raise BenchError("a TCP test has no CPU time of the switch")
        out["cpu_s_per_gb"] = sum(x["switch_cpu_s"] for x in res) / gb
    return out


def bench(lab: Lab, opts, t_start: float) -> int:
    gen = M.make_generator(opts.generator, opts)
    contenders = [cls(lab, i + 1, opts) for i, cls in enumerate(opts.selected)]
    seed = opts.seed if opts.seed is not None else random.SystemRandom().randrange(1 << 31)
    rng = random.Random(seed)
    # Every measurement that did not produce its figure: contender -> [{run, test, reason}].
    missing: dict[str, list[dict]] = {c.name: [] for c in contenders}
    raw: dict[str, dict[str, list]] = {c.name: defaultdict(list) for c in contenders}
    details: dict[str, list] = {c.name: [] for c in contenders}
    retried: dict[str, list[str]] = {c.name: [] for c in contenders}

    def miss(c, run_no, test, reason):
        missing[c.name].append({"run": run_no, "test": test, "reason": reason})

    meta = {
        "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(),
        "mode": opts.mode,
        "loadavg_start": loadavg(),
        "note": opts.note,
        "seed": seed,
        "order": [],
        "contenders_order": [c.name for c in contenders],
        "vxswitch": {"binary": opts.vxswitch, **({"baseline": opts.baseline} if opts.baseline else {})},
        "config": {
            "runs": opts.runs, "sizes": opts.sizes, "tcp_seconds": opts.tcp_seconds, "tcp_omit": opts.tcp_omit,
            "frame_seconds": opts.frame_seconds, "latency_seconds": opts.latency_seconds,
            "latency_paced_mps": LATENCY_PACED_MPS, "latency_msg_bytes": LATENCY_MSG, "generator": gen.name,
            "ping_count": opts.ping_count, "ping_interval_s": PING_INTERVAL, "idle_seconds": opts.latency_seconds,
            "deadline_s": opts.deadline,
        },
    }
    if os.path.exists(opts.vxswitch):
        meta["vxswitch"]["version"] = version([opts.vxswitch, "--version"])
        meta["vxswitch"]["built_utc"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(os.path.getmtime(opts.vxswitch)))
    git = run(["git", "-C", REPO, "describe", "--always", "--dirty"], check=False, timeout=10)
    meta["vxswitch"]["git"] = git.stdout.strip() if git.returncode == 0 else "?"
    meta["tools"] = {
        "iperf3": version(["iperf3", "--version"]),
        "sockperf": version(["sockperf", "--version"]),
        "ping": version(["ping", "-V"]),
    }
    if gen.name == "trafgen":
        meta["tools"]["trafgen"] = version(["trafgen", "-v"])
    if any(c.name.startswith("ovs") for c in contenders):
        meta["tools"]["ovs-vswitchd"] = version(["ovs-vswitchd", "--version"])
    if any(c.name == "vde" for c in contenders):
        meta["tools"]["vde_switch"] = version(["vde_switch", "-v"])

    # -- set-up: every topology at once, each in its own namespaces --------
    live = []
    for c in contenders:
        log(f"setting up {c.name}: {c.title}")
        try:
            c.setup()
            live.append(c)
        except BenchError as e:
            miss(c, None, "set-up", f"set-up failed: {e}")
            log(f"  {c.name}: set-up failed: {e}")

    # -- measurements: every test on every contender in turn, in an order
    # shuffled anew for every test of every round (recorded in meta.order) --
    tests = [("tcp1", lambda c: M.tcp(lab, c, 1, opts.tcp_seconds, opts.tcp_omit)),
             ("tcp4", lambda c: M.tcp(lab, c, 4, opts.tcp_seconds, opts.tcp_omit)),
             ("latency", lambda c: M.latency(lab, c, opts.latency_seconds, "max", LATENCY_MSG)),
             ("latency_paced", lambda c: M.latency(lab, c, opts.latency_seconds, LATENCY_PACED_MPS, LATENCY_MSG)),
             ("ping", lambda c: M.ping(lab, c, opts.ping_count, PING_INTERVAL))]
    for size in opts.sizes:
        tests.append((f"frames_{size}", lambda c, s=size: M.frames(lab, c, gen, s, opts.frame_seconds)))

    def past_deadline() -> bool:
        return time.monotonic() - t_start > opts.deadline

    for r in range(1, opts.runs + 1):
        order_of_round = {}
        tcp_of_round: dict[str, dict[str, dict]] = defaultdict(dict)
        for test, fn in tests:
            order = list(live)
            rng.shuffle(order)
            order_of_round[test] = [c.name for c in order]
            for c in order:
                if past_deadline():
                    miss(c, r, test, f"not started, past the {opts.deadline:g} s deadline")
                    continue
                res, first_error = None, None
                for attempt in (1, 2):  # one retry: a tool's hiccup must not fail a whole run
                    try:
                        c.check_alive()
                        res = fn(c)
                        break
                    except BenchError as e:
                        if first_error is None:
                            first_error = str(e)
                        log(f"  {c.name} run {r} {test}: FAILED (attempt {attempt}): {str(e).splitlines()[0]}")
                        if not c.alive():
                            break  # the switch died: retrying measures nothing
                if res is None:
                    miss(c, r, test, first_error)
                    continue
                if first_error is not None:
                    retried[c.name].append(f"run {r} {test}: {first_error.splitlines()[0]}")
                details[c.name].append({"run": r, "test": test, **res})
                if test.startswith("tcp"):
                    raw[c.name][f"{test}_gbps"].append(res["gbps"])
                    tcp_of_round[c.name][test] = res
                    log(f"  {c.name} run {r} {test}: {res['gbps']:.2f} Gbit/s")
                elif test.startswith("latency"):
                    prefix = "rtt" if test == "latency" else "rtt1k"
                    raw[c.name][f"{prefix}_p50_us"].append(res["p50_us"])
                    raw[c.name][f"{prefix}_p99_us"].append(res["p99_us"])
                    log(f"  {c.name} run {r} {test}: p50 {res['p50_us']:.0f} µs, p99 {res['p99_us']:.0f} µs")
                elif test == "ping":
                    raw[c.name]["ping_avg_us"].append(res["avg_us"])
                    raw[c.name]["ping_p99_us"].append(res["p99_us"])
                    raw[c.name]["ping_lost"].append(res["lost"])
                    log(f"  {c.name} run {r} ping: avg {res['avg_us']:.0f} µs, p99 {res['p99_us']:.0f} µs, "
                        f"{res['lost']} lost")
                else:
                    size = int(test.split("_")[1])
                    raw[c.name][f"fps_{size}"].append(res["fps"])
                    raw[c.name][f"loss_{size}"].append(res["loss"])
                    log(f"  {c.name} run {r} {size} B: {res['fps'] / 1e6:.3f} Mframes/s, "
                        f"loss {res['loss'] * 100:.1f}%")
        meta["order"].append(order_of_round)
        # CPU per GB of this round: both TCP tests pooled. A round that lacks
        # one of them has no CPU figure (not the other test's alone).
        for c in live:
            try:
                pooled = pool_tcp(tcp_of_round.get(c.name, {}), c.userspace)
            except BenchError as e:
                miss(c, r, "cpu per GB", str(e))
                continue
            for key, value in pooled.items():
                raw[c.name][key].append(value)
        # Idle CPU: every userspace switch at once, no traffic anywhere.
        idle = [c for c in live if c.userspace]
        if idle and past_deadline():
            for c in idle:
                miss(c, r, "idle CPU", f"not started, past the {opts.deadline:g} s deadline")
        elif idle:
            time.sleep(IDLE_SETTLE)
            for name, res in M.idle_cpu(idle, opts.latency_seconds).items():
                c = next(x for x in idle if x.name == name)
                if isinstance(res, BenchError):
                    miss(c, r, "idle CPU", str(res))
                    continue
                raw[name]["idle_cpu_pct"].append(res)
                details[name].append({"run": r, "test": "idle", "cpu_pct": res})
            log(f"  run {r} idle CPU: " + ", ".join(
                f"{c.name} {raw[c.name]['idle_cpu_pct'][-1]:.1f}%" for c in idle if raw[c.name]["idle_cpu_pct"]))

    # -- what is missing --------------------------------------------------
    short = {}
    for c in contenders:
        for key in expected_keys(c, opts):
            n = len(raw[c.name].get(key, []))
            if n < opts.runs:
                short.setdefault(c.name, []).append(f"{key} n={n}")
    meta["elapsed_s"] = time.monotonic() - t_start
    meta["loadavg_end"] = loadavg()

    summary = R.build([c.name for c in contenders], raw, C.BASELINE)
    doc = {
        "meta": meta,
        "baseline": C.BASELINE,
        "contenders": {
            c.name: {
                "title": c.title,
                "kind": c.kind,
                "topology": c.topology,
                "userspace_switch": c.userspace,
                "ok": not missing[c.name] and c.name not in short,
                "expected": expected_keys(c, opts),
                "missing": missing[c.name],
                "retried": retried[c.name],
                "metrics": summary[c.name],
                "runs": details[c.name],
            }
            for c in contenders
        },
    }
    doc["targets"] = R.targets(view(doc))
    md, files = write_outputs(opts.out, doc)
    if any(missing.values()) or short:
        logs = os.path.join(opts.out, "logs")
        shutil.rmtree(logs, ignore_errors=True)
        os.makedirs(logs)
        for path in glob.glob(os.path.join(lab.tmp, "*.log")) + glob.glob(os.path.join(lab.tmp, "*", "*.log")):
            shutil.copy(path, logs)
    print(md)
    log(f"wrote {', '.join(files)} to {opts.out} ({meta['elapsed_s']:.0f} s)")
    count = sum(len(m) for m in missing.values())
    if count or short:
        for name, ms in missing.items():
            for m in ms:
                where = f"run {m['run']} " if m["run"] else ""
                reason = m["reason"]
                print(f"MISSING {name} {where}{m['test']}: {reason.splitlines()[0]}", file=sys.stderr)
                if "\n" in reason:
                    print("  " + reason.replace("\n", "\n  "), file=sys.stderr)
        for name, keys in short.items():
            print(f"SHORT {name}: fewer runs than the {opts.runs} planned: {', '.join(keys)}", file=sys.stderr)
        print(f"FAILED: {count} measurement(s) missing; "
              + ", ".join(f"{n}: {len(m)}" for n, m in missing.items() if m), file=sys.stderr)
        return 1
    return 0


def main(argv=None) -> int:
    # Root's tools live in sbin; a sudo or CI PATH may lack those directories.
    path = os.environ.get("PATH", "").split(os.pathsep)
    os.environ["PATH"] = os.pathsep.join(path + [d for d in ("/usr/local/sbin", "/usr/sbin", "/sbin") if d not in path])
    opts = parse_args(argv)
    if opts.check_docs or opts.update_docs:
        return check_docs(opts.update_docs)
    if opts.from_json:
        try:
            return from_json(opts.from_json, opts.out, opts.markdown_table)
        except (OSError, ValueError, KeyError) as e:
            print(f"run.py: cannot render {opts.from_json}: {e}", file=sys.stderr)
            return 2
    if opts.list:
        for c in C.ALL:
            extra = " (only with --only)" if c.name in C.OPTIONAL else ""
            print(f"{c.name:23} {c.title}{extra}\n{'':23} {c.topology}")
        return 0
    if os.geteuid() != 0:
        print("run.py: needs root (namespaces, TAPs, bridges); run it with sudo", file=sys.stderr)
        return 2
    if opts.clean_stale:
        stale = stale_namespaces()
        remove_namespaces(stale)
        print(f"removed {len(stale)} stale namespace(s): {' '.join(stale) or '-'}")
        return 0
    missing = missing_packages(opts)
    if missing:
        pkgs = sorted({pkg for _t, pkg in missing})
        print("run.py: missing tools: " + ", ".join(f"{t} ({pkg})" for t, pkg in missing), file=sys.stderr)
        print(f"install them with:\n  apt-get install -y {' '.join(pkgs)}", file=sys.stderr)
        return 2
    if opts.build:
        log("cargo build --release --bin vxswitch --example tapfwd")
        if subprocess.run(["cargo", "build", "--release", "--bin", "vxswitch", "--example", "tapfwd"],
                          cwd=REPO).returncode != 0:
            return 2
    needs_binary = any(c.needs_vxswitch for c in opts.selected) or getattr(M.GENERATORS[opts.generator], "needs_vxswitch", False)
    if needs_binary and not os.access(opts.vxswitch, os.X_OK):
        print(f"run.py: no vxswitch binary at {opts.vxswitch}; build it with `cargo build --release` "
              "(or add --build), or point --vxswitch / VXSWITCH_BIN at one", file=sys.stderr)
        return 2
    if not os.path.exists("/dev/net/tun"):
        print("run.py: /dev/net/tun is missing (modprobe tun)", file=sys.stderr)
        return 2
    if opts.check:
        print("run.py: all tools present" + (f", vxswitch at {opts.vxswitch}" if needs_binary else ""))
        return 0
    stale = stale_namespaces()
    if stale:
        log(f"note: {len(stale)} namespace(s) left by a killed harness ({' '.join(stale[:4])}...); "
            "remove them with --clean-stale")

    t_start = time.monotonic()
    log(f"{opts.mode} run: {', '.join(c.name for c in opts.selected)}; {opts.runs} round(s), "
        f"about {estimate_seconds(opts) / 60:.1f} min")
    lab = Lab(keep_tmp=opts.keep_tmp)
    atexit.register(lab.cleanup)
    lab.install_signal_handlers()
    rc = 1
    try:
        rc = bench(lab, opts, t_start)
    except Interrupted as e:
        log(f"{e}: removing everything the harness created")
        rc = 128 + e.signum if e.signum != 2 else 130
    except BenchError as e:
        log(f"error: {e}")
        rc = 1
    finally:
        problems = lab.cleanup()
        if problems:
            for p in problems:
                log(f"cleanup: {p}")
            if any(p.startswith("namespaces left") for p in problems):
                rc = rc or 1
        else:
            log(f"cleanup verified: no {lab.prefix}* namespace left, no new host link")
        if opts.keep_tmp:
            log(f"kept {lab.tmp}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
