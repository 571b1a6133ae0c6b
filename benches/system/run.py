#!/usr/bin/env python3
"""System benchmark harness of vxswitch: the same two-container topology on
vxswitch, the Linux bridge, Open vSwitch (userspace datapath), VDE and a bare
veth pair, plus a two-host VXLAN overlay on vxswitch and on the kernel; TCP
throughput, frames/s by frame size with loss, round-trip latency and the
switch's CPU per GB, each the median of several runs, with ratios to the
kernel bridge measured in the same run.

    sudo benches/system/run.py            # full run, about 17 minutes
    sudo benches/system/run.py --quick    # smoke run, under 3 minutes
    sudo benches/system/run.py --only vxswitch,ovs

Needs root. Installs nothing: a missing tool is reported with the apt-get line
that installs it (exit 2). See docs/benchmarks-system.md.

Exit status: 0 every contender produced every figure; 1 some did not (the
reasons are printed); 2 cannot start (not root, tools or binary missing, bad
option); 130 interrupted. Everything created is removed in every case.
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
            sizes="64,256,512,1024,1500", deadline=1200.0)
QUICK = dict(runs=1, tcp_seconds=2.0, tcp_omit=0, frame_seconds=1.0, latency_seconds=1.0,
             sizes="64,1500", deadline=220.0)
LATENCY_PACED_MPS = 1000  # the paced latency test: one message per ms
LATENCY_MSG = 64


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
        epilog="Full run: 3 runs per figure, about 17 minutes. --quick: 1 run, under 3 minutes. Needs root.",
    )
    p.add_argument("--quick", action="store_true", help="smoke run: 1 run each, shorter tests, sizes 64,1500")
    p.add_argument("--only", metavar="LIST",
                   help=f"comma-separated contenders ({','.join(c.name for c in C.ALL)}); "
                        f"'{C.BASELINE}' is always added, it is the baseline of the ratios")
    p.add_argument("--vxswitch", metavar="PATH", default=default_binary(),
                   help="the vxswitch binary (default: $VXSWITCH_BIN, else $CARGO_TARGET_DIR/release/vxswitch, "
                        "else target/release/vxswitch in the repo)")
    p.add_argument("--baseline", metavar="PATH",
                   help="a second vxswitch binary (the 'before' of a change): `vxswitch` and `vxswitch-vxlan`, "
                        "when selected, are also measured with it as vxswitch-base and vxswitch-vxlan-base, "
                        "alternated with every other contender in the same run")
    p.add_argument("--build", action="store_true", help="run `cargo build --release` first")
    p.add_argument("--generator", default="trafgen", choices=sorted(M.GENERATORS), help="frame generator")
    p.add_argument("--runs", type=int, help="runs per figure (default 3; --quick 1)")
    p.add_argument("--sizes", help="frame sizes of the sweep, bytes with FCS (default 64,256,512,1024,1500)")
    p.add_argument("--tcp-seconds", type=float, help="iperf3 -t (default 4; --quick 2)")
    p.add_argument("--frame-seconds", type=float, help="measuring window per frame size (default 1.5; --quick 1)")
    p.add_argument("--latency-seconds", type=float, help="sockperf -t of each latency test (default 2; --quick 1)")
    p.add_argument("--deadline", type=float,
                   help="give up on measurements not started after this many seconds (default 1200; --quick 220)")
    p.add_argument("--out", metavar="DIR", default=os.path.join(REPO, "target", "bench-system"),
                   help="where results.md, results.json and the SVGs go (default target/bench-system)")
    p.add_argument("--note", default="", help="a sentence added to the report (e.g. what else the machine ran)")
    p.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (logs, configs) after the run")
    p.add_argument("--list", action="store_true", help="list the contenders and exit")
    p.add_argument("--from-json", metavar="FILE",
                   help="measure nothing: render results.md and the SVGs again from a results.json into --out")
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
        if C.BASELINE not in wanted:
            wanted.append(C.BASELINE)
        opts.selected = [c for c in C.ALL if c.name in wanted]
    else:
        opts.selected = list(C.ALL)
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
    per = 2 * (opts.tcp_seconds + opts.tcp_omit + 1.0) + 2 * (opts.latency_seconds + 1.2) + len(opts.sizes) * (opts.frame_seconds + 1.0)
    return 20 + opts.runs * len(opts.selected) * per


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


def write_outputs(out: str, doc: dict, contenders, summary: dict, errors: dict):
    """Writes results.md, results.json and the two SVGs; returns the markdown and the file names."""
    meta = doc["meta"]
    sizes = meta["config"]["sizes"]
    os.makedirs(out, exist_ok=True)
    md = R.markdown(meta, contenders, summary, errors, sizes, C.BASELINE)
    if meta.get("note"):
        md = meta["note"].strip() + "\n\n" + md
    retried = [(n, r) for n, e in doc["contenders"].items() for r in e.get("retried", [])]
    if retried:
        md += "\nMeasurements that failed once and succeeded when retried (the retry's figure is used):\n\n"
        md += "".join(f"- {n}: {r}\n" for n, r in retried)
    subtitle = f"{meta['date_utc']}, {meta['machine']}, {meta['config']['runs']} run(s) per bar"
    files = {
        "results.md": md,
        "results.json": json.dumps(doc, indent=2, sort_keys=True) + "\n",
        "throughput.svg": R.svg_throughput(contenders, summary, subtitle),
        "frames.svg": R.svg_frames(contenders, summary, sizes, subtitle.replace("per bar", "per point")),
    }
    for name, text in files.items():
        with open(os.path.join(out, name), "w") as f:
            f.write(text)
    return md, list(files)


def from_json(path: str, out: str) -> int:
    """Renders the outputs again from a results.json (no measurement, no root needed)."""
    with open(path) as f:
        doc = json.load(f)
    contenders = []
    for name, entry in doc["contenders"].items():
        contenders.append(argparse.Namespace(
            name=name, kind=entry.get("kind", "l2"), userspace=entry.get("userspace_switch", True),
            title=entry.get("title", name)))
    order = [c.name for c in C.ALL]
    contenders.sort(key=lambda c: order.index(c.name) if c.name in order else len(order))
    summary = {n: {"metrics": e["metrics"]} for n, e in doc["contenders"].items()}
    errors = {n: e.get("errors", []) for n, e in doc["contenders"].items()}
    md, files = write_outputs(out, doc, contenders, summary, errors)
    print(md)
    log(f"wrote {', '.join(files)} to {out}")
    return 0


def bench(lab: Lab, opts, t_start: float) -> int:
    gen = M.make_generator(opts.generator, opts)
    contenders = [cls(lab, i + 1, opts) for i, cls in enumerate(opts.selected)]
    errors: dict[str, list[str]] = {c.name: [] for c in contenders}
    raw: dict[str, dict[str, list]] = {c.name: defaultdict(list) for c in contenders}
    details: dict[str, list] = {c.name: [] for c in contenders}
    retried: dict[str, list[str]] = {c.name: [] for c in contenders}
    meta = {
        "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(),
        "mode": opts.mode,
        "loadavg_start": loadavg(),
        "note": opts.note,
        "vxswitch": {"binary": opts.vxswitch, **({"baseline": opts.baseline} if opts.baseline else {})},
        "config": {
            "runs": opts.runs, "sizes": opts.sizes, "tcp_seconds": opts.tcp_seconds, "tcp_omit": opts.tcp_omit,
            "frame_seconds": opts.frame_seconds, "latency_seconds": opts.latency_seconds,
            "latency_paced_mps": LATENCY_PACED_MPS, "latency_msg_bytes": LATENCY_MSG, "generator": gen.name,
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
            errors[c.name].append(f"set-up failed: {e}")
            log(f"  {c.name}: set-up failed: {e}")

    # -- measurements: round-robin over contenders within each test --------
    tests = [("tcp1", lambda c: M.tcp(lab, c, 1, opts.tcp_seconds, opts.tcp_omit)),
             ("tcp4", lambda c: M.tcp(lab, c, 4, opts.tcp_seconds, opts.tcp_omit)),
             ("latency", lambda c: M.latency(lab, c, opts.latency_seconds, "max", LATENCY_MSG)),
             ("latency_paced", lambda c: M.latency(lab, c, opts.latency_seconds, LATENCY_PACED_MPS, LATENCY_MSG))]
    for size in opts.sizes:
        tests.append((f"frames_{size}", lambda c, s=size: M.frames(lab, c, gen, s, opts.frame_seconds)))
    cpu_acc: dict[tuple[str, int], list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0, 0.0, 0.0])
    for r in range(opts.runs):
        for test, fn in tests:
            for c in live:
                if time.monotonic() - t_start > opts.deadline:
                    errors[c.name].append(f"run {r + 1} {test}: not started, past the {opts.deadline:g} s deadline")
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
                        log(f"  {c.name} run {r + 1} {test}: FAILED (attempt {attempt}): {str(e).splitlines()[0]}")
                        if not c.alive():
                            break  # the switch died: retrying measures nothing
                if res is None:
                    errors[c.name].append(f"run {r + 1} {test}: {first_error}")
                    continue
                if first_error is not None:
                    retried[c.name].append(f"run {r + 1} {test}: {first_error.splitlines()[0]}")
                details[c.name].append({"run": r + 1, "test": test, **res})
                if test.startswith("tcp"):
                    raw[c.name][f"{test}_gbps"].append(res["gbps"])
                    acc = cpu_acc[(c.name, r)]
                    acc[0] += res["switch_cpu_s"] or 0.0
                    acc[1] += res["softirq_s"]
                    acc[2] += res["moved_bytes"]
                    acc[3] += 1
                    acc[4] += res["machine_busy_s"]
                    acc[5] += res["wall_s"]
                    log(f"  {c.name} run {r + 1} {test}: {res['gbps']:.2f} Gbit/s")
                elif test.startswith("latency"):
                    prefix = "rtt" if test == "latency" else "rtt1k"
                    raw[c.name][f"{prefix}_p50_us"].append(res["p50_us"])
                    raw[c.name][f"{prefix}_p99_us"].append(res["p99_us"])
                    log(f"  {c.name} run {r + 1} {test}: p50 {res['p50_us']:.0f} µs, p99 {res['p99_us']:.0f} µs")
                else:
                    size = int(test.split("_")[1])
                    raw[c.name][f"fps_{size}"].append(res["fps"])
                    raw[c.name][f"loss_{size}"].append(res["loss"])
                    log(f"  {c.name} run {r + 1} {size} B: {res['fps'] / 1e6:.3f} Mframes/s, "
                        f"loss {res['loss'] * 100:.1f}%")
        # CPU per GB of this run: both TCP tests pooled.
        for c in live:
            acc = cpu_acc.get((c.name, r))
            if acc and acc[2] > 0:
                gb = acc[2] / 1e9
                if c.userspace:
                    raw[c.name]["cpu_s_per_gb"].append(acc[0] / gb)
                raw[c.name]["softirq_s_per_gb"].append(acc[1] / gb)
                raw[c.name]["machine_s_per_gb"].append(acc[4] / gb)
                if acc[5] > 0:
                    raw[c.name]["busy_cpus"].append(acc[4] / acc[5])

    # -- verdict per contender ---------------------------------------------
    required = ["tcp1_gbps", "tcp4_gbps", "rtt_p50_us", "rtt_p99_us", "rtt1k_p50_us", "rtt1k_p99_us"]
    required += [f"{k}_{s}" for s in opts.sizes for k in ("fps", "loss")]
    failed = {}
    for c in contenders:
        need = required + (["cpu_s_per_gb"] if c.userspace else [])
        missing = [k for k in need if not raw[c.name].get(k)]
        if missing or any(e.startswith("set-up failed") for e in errors[c.name]):
            failed[c.name] = missing
    meta["elapsed_s"] = time.monotonic() - t_start
    meta["loadavg_end"] = loadavg()

    summary = R.build(contenders, raw, C.BASELINE)
    doc = {
        "meta": meta,
        "baseline": C.BASELINE,
        "targets": R.targets(summary),
        "contenders": {
            c.name: {
                "title": c.title,
                "kind": c.kind,
                "topology": c.topology,
                "userspace_switch": c.userspace,
                "ok": c.name not in failed,
                "errors": errors[c.name],
                "retried": retried[c.name],
                "metrics": summary[c.name]["metrics"],
                "runs": details[c.name],
            }
            for c in contenders
        },
    }
    md, files = write_outputs(opts.out, doc, contenders, summary, errors)
    if any(errors.values()):
        logs = os.path.join(opts.out, "logs")
        shutil.rmtree(logs, ignore_errors=True)
        os.makedirs(logs)
        for path in glob.glob(os.path.join(lab.tmp, "*.log")) + glob.glob(os.path.join(lab.tmp, "*", "*.log")):
            shutil.copy(path, logs)
    print(md)
    log(f"wrote {', '.join(files)} to {opts.out} ({meta['elapsed_s']:.0f} s)")
    if failed:
        for name, missing in failed.items():
            reasons = errors[name] or [f"no value for {', '.join(missing)}"]
            print(f"FAILED {name}: " + "; ".join(r.splitlines()[0] for r in reasons), file=sys.stderr)
            for r in reasons:
                if "\n" in r:
                    print("  " + r.replace("\n", "\n  "), file=sys.stderr)
        return 1
    return 0


def main(argv=None) -> int:
    # Root's tools live in sbin; a sudo or CI PATH may lack those directories.
    path = os.environ.get("PATH", "").split(os.pathsep)
    os.environ["PATH"] = os.pathsep.join(path + [d for d in ("/usr/local/sbin", "/usr/sbin", "/sbin") if d not in path])
    opts = parse_args(argv)
    if opts.from_json:
        return from_json(opts.from_json, opts.out)
    if opts.list:
        for c in C.ALL:
            print(f"{c.name:19} {c.title}\n{'':19} {c.topology}")
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
    log(f"{opts.mode} run: {', '.join(c.name for c in opts.selected)}; {opts.runs} run(s) per figure, "
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
