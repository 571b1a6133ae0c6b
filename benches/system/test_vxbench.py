#!/usr/bin/env python3
"""Unit tests of the harness's pure parts (no root, no network, about a second):

    python3 benches/system/test_vxbench.py

What a figure says: the runs behind it, no spread from one run, no figure
made up from part of a measurement, verdicts computed from the data, and
the docs' generated tables checked against their JSON.
"""

from __future__ import annotations

import sys

sys.dont_write_bytecode = True

import copy  # noqa: E402
import importlib.util  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import tempfile  # noqa: E402
import unittest  # noqa: E402
from contextlib import redirect_stderr, redirect_stdout  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from vxbench import measure as M  # noqa: E402
from vxbench import report as R  # noqa: E402
from vxbench.lab import BenchError  # noqa: E402

spec = importlib.util.spec_from_file_location("vxbench_run", os.path.join(HERE, "run.py"))
RUN = importlib.util.module_from_spec(spec)
spec.loader.exec_module(RUN)

RESULTS = os.path.join(HERE, "results")


def doc_with(metrics: dict, runs: int = 3, expected: dict | None = None, userspace=None) -> dict:
    """A minimal results document: metrics[name][key] = [value per run]."""
    userspace = userspace or {}
    contenders = {}
    for name, keys in metrics.items():
        contenders[name] = {
            "kind": "l2", "userspace_switch": userspace.get(name, name != "bridge"), "missing": [],
            "metrics": {k: R.summarize(v) for k, v in keys.items()},
        }
        if expected is not None:
            contenders[name]["expected"] = expected.get(name, list(keys))
    return {
        "meta": {"config": {"runs": runs, "sizes": [64]}, "date_utc": "D", "machine": "M", "mode": "full",
                 "elapsed_s": 1, "loadavg_start": "0", "loadavg_end": "0", "seed": 1,
                 "contenders_order": list(metrics), "vxswitch": {}},
        "baseline": "bridge",
        "contenders": contenders,
    }


class Cells(unittest.TestCase):
    def test_one_run_has_no_spread_and_says_n1(self):
        s = R.summarize([12.5])
        self.assertIsNone(s["spread_pct"])
        v = R.View(doc_with({"vxswitch": {"tcp1_gbps": [12.5]}, "bridge": {"tcp1_gbps": [25.0]}}, runs=1))
        text = R.cell(v, "vxswitch", "tcp1_gbps")
        self.assertNotIn("±", text)
        self.assertIn("n=1", text)
        self.assertIn("(0.50×)", text)

    def test_every_cell_gives_its_n(self):
        v = R.View(doc_with({"vxswitch": {"tcp1_gbps": [10.0, 12.0]}, "bridge": {"tcp1_gbps": [20.0, 20, 20]}}))
        self.assertIn("±9% n=2", R.cell(v, "vxswitch", "tcp1_gbps"))
        self.assertIn("n=3", R.cell(v, "bridge", "tcp1_gbps"))
        self.assertIn("1 of 2 figures stand on fewer than 3 runs", "\n".join(R.header(v)))

    def test_a_figure_with_no_run_is_missing_not_zero(self):
        v = R.View(doc_with({"vxswitch": {"tcp1_gbps": [10.0]}, "bridge": {"tcp1_gbps": [20.0]}},
                            expected={"vxswitch": ["tcp1_gbps", "tcp4_gbps"]}))
        self.assertEqual(R.cell(v, "vxswitch", "tcp4_gbps"), "**missing** (n=0)")
        with self.assertRaises(ValueError):
            R.summarize([1.0, None])

    def test_negative_loss_is_shown_not_clamped(self):
        v = R.View(doc_with({"bridge": {"loss_64": [-0.002, 0.0, 0.0]}}))
        self.assertIn("(min -0.2)", R.cell(v, "bridge", "loss_64"))

    def test_plot_subtitle_counts_the_runs_behind_the_points(self):
        v = R.View(doc_with({"vxswitch": {"fps_64": [1.0, 2, 3]}, "bridge": {"fps_64": [1.0, 2]}}))
        self.assertIn("2–3 runs (of 3 planned) per point", R.svg_frames(v))


class Measurements(unittest.TestCase):
    def test_ping_lines_parse_to_microseconds_without_duplicates(self):
        out = ("PING 10.250.1.12 (10.250.1.12) 56(84) bytes of data.\n"
               "64 bytes from 10.250.1.12: icmp_seq=1 ttl=64 time=0.092 ms\n"
               "64 bytes from 10.250.1.12: icmp_seq=2 ttl=64 time=0.110 ms\n"
               "64 bytes from 10.250.1.12: icmp_seq=2 ttl=64 time=0.300 ms (DUP!)\n"
               "64 bytes from 10.250.1.12: icmp_seq=4 ttl=64 time=1.05 ms\n"
               "rtt min/avg/max/mdev = 0.092/0.417/1.050/0.447 ms\n")
        times = M.parse_ping(out)
        self.assertEqual(sorted(times), [1, 2, 4])
        self.assertAlmostEqual(times[2], 110.0)
        self.assertAlmostEqual(times[4], 1050.0)

    def test_percentile_is_nearest_rank(self):
        values = list(range(1, 101))
        self.assertEqual(M.percentile(values, 99), 99)
        self.assertEqual(M.percentile(values, 50), 50)
        self.assertEqual(M.percentile([7.0], 99), 7.0)

    def test_cpu_per_gb_needs_both_tcp_tests(self):
        one = {"moved_bytes": 1e9, "switch_cpu_s": 0.5, "softirq_s": 0.1, "machine_busy_s": 1.0, "wall_s": 1.0}
        with self.assertRaisesRegex(BenchError, "tcp4 missing"):
            RUN.pool_tcp({"tcp1": one}, True)
        with self.assertRaisesRegex(BenchError, "no CPU time"):
            RUN.pool_tcp({"tcp1": one, "tcp4": dict(one, switch_cpu_s=None)}, True)
        pooled = RUN.pool_tcp({"tcp1": one, "tcp4": dict(one, switch_cpu_s=1.5)}, True)
        self.assertAlmostEqual(pooled["cpu_s_per_gb"], 1.0)
        self.assertNotIn("cpu_s_per_gb", RUN.pool_tcp({"tcp1": one, "tcp4": one}, False))


class Targets(unittest.TestCase):
    def verdicts(self, doc):
        return {t["target"]: t for t in R.targets(R.View(doc))}

    def test_no_regression_within_the_runs_ranges_is_met_outside_not(self):
        doc = doc_with({"vxswitch": {"tcp1_gbps": [9.0, 10.0, 11.0]},
                        "vxswitch-base": {"tcp1_gbps": [10.0, 10.5, 11.5]}, "bridge": {"tcp1_gbps": [20.0]}})
        t = self.verdicts(doc)["TCP 1 stream: no regression"]
        self.assertTrue(t["met"])
        self.assertTrue(t["overlap"])
        doc["contenders"]["vxswitch"]["metrics"]["tcp1_gbps"] = R.summarize([7.0, 8.0, 9.0])
        self.assertFalse(self.verdicts(doc)["TCP 1 stream: no regression"]["met"])

    def test_a_target_without_its_contender_has_no_figure_and_says_how(self):
        t = self.verdicts(doc_with({"vxswitch": {"tcp4_gbps": [1.0]}, "bridge": {"tcp4_gbps": [2.0]}}))
        self.assertIsNone(t["64 B frames/s ≥ 1.3× VDE"]["met"])
        self.assertIn("add vde with --only", t["64 B frames/s ≥ 1.3× VDE"]["why"])
        self.assertIn("--baseline", t["TCP 1 stream: no regression"]["why"])
        self.assertFalse(t["TCP 4 streams ≥ 0.7× the bridge"]["met"])

    def test_uplink_targets_appear_only_with_an_uplink_contender(self):
        plain = self.verdicts(doc_with({"vxswitch": {"tcp1_gbps": [1.0]}, "bridge": {"tcp1_gbps": [2.0]}}))
        self.assertFalse([t for t in plain if t.startswith("uplink")])
        t = self.verdicts(doc_with({
            "uplink-vxswitch": {"tcp1_gbps": [8.0], "tcp4_gbps": [7.0], "fps_64": [0.12], "loss_64": [0.03]},
            "uplink-macvlan": {"tcp1_gbps": [10.0], "tcp4_gbps": [10.0], "fps_64": [0.23], "loss_64": [0.0]},
            "bridge": {"tcp1_gbps": [9.0]}}))
        self.assertTrue(t["uplink TCP 1 stream ≥ 0.8× macvlan"]["met"])
        self.assertFalse(t["uplink TCP 4 streams ≥ 0.8× macvlan"]["met"])
        self.assertFalse(t["uplink 64 B frames: nothing lost (< 0.1%)"]["met"])
        ovs = t["uplink 64 B frames/s ≥ OVS with an AF_PACKET port"]
        self.assertIsNone(ovs["met"])
        self.assertIn("add uplink-ovs with --only", ovs["why"])

    def test_port_type_targets_and_the_ceiling_appear_only_when_measured(self):
        plain = self.verdicts(doc_with({"vxswitch": {"fps_64": [280e3]}, "vde": {"fps_64": [230e3]}}))
        self.assertFalse([t for t in plain if t.startswith("veth ports") or t.startswith("the generator")])
        doc = doc_with({"vxswitch-ebpf": {"fps_64": [310e3], "tcp4_gbps": [28.0]}, "vde": {"fps_64": [230e3]},
                        "tap-floor": {"fps_64": [276e3]}, "bridge": {"tcp4_gbps": [31.0]}, "veth": {"fps_64": [300e3]}})
        t = self.verdicts(doc)
        self.assertTrue(t["veth ports + fast path: 64 B frames/s ≥ 1.3× VDE"]["met"])
        self.assertFalse(t["veth ports + fast path: 64 B frames/s ≥ 1.2× tap-floor"]["met"])
        self.assertTrue(t["veth ports + fast path: TCP 4 streams ≥ 0.7× the bridge"]["met"])
        ceiling = [line for line in R.table_targets(R.View(doc)) if line.startswith("- **reference**")]
        self.assertEqual(len(ceiling), 1)
        self.assertIn("veth 0.300 Mfps n=1 against tap-floor 0.276 Mfps n=1 = 1.09×", ceiling[0])
        self.assertIn("the target's 1.2× lies beyond it", ceiling[0])

    def test_the_cpu_ceiling_of_tap_ports_is_the_bridges_cpu_per_gb_over_the_floors(self):
        doc = doc_with({"bridge": {"machine_s_per_gb": [0.48]}, "tap-floor": {"machine_s_per_gb": [0.79]},
                        "vxswitch": {"tcp4_gbps": [18.0]}})
        rows = [line for line in R.table_targets(R.View(doc)) if "CPU ceiling" in line]
        self.assertEqual(len(rows), 1)
        self.assertIn("= 0.61× (the target's 0.7× lies beyond it)", rows[0])

    def test_peers_table_has_a_column_per_peer_and_floor(self):
        v = R.View(doc_with({n: {"fps_64": [x]} for n, x in
                             (("vxswitch", 3.0), ("ovs", 2.0), ("vde", 3.1), ("tap-floor", 2.9), ("bridge", 3.0))}))
        head, _rule, row = R.table_peers(v)
        self.assertEqual(head, "| contender | figure | better | value | ÷ ovs | ÷ vde | ÷ tap-floor | ÷ bridge |")
        self.assertIn("| 1.50× better | 0.97× worse | 1.03× better | 1.00× overlap |", row)


class UplinkScenario(unittest.TestCase):
    """The uplink contenders' set-up commands, recorded instead of run (no root needed)."""

    class FakeLab:
        def __init__(self):
            self.made = []

        def netns(self, short):
            self.made.append(short)
            return f"vxb-1-{short}"

        def path(self, name):
            return os.path.join(self.tmp, name)

        def spawn(self, label, argv, ns=None, **_kw):
            class P:
                pid, label = 1, "fake"
                def alive(self):
                    return True
            self.spawned = (argv, ns)
            return P()

    def commands(self, name):
        from vxbench import contenders as C

        cmds = []

        class Done:
            returncode = 0
            stdout = json.dumps([{"address": "02:00:00:00:00:12", "mtu": 1500,
                                  "linkinfo": {"info_kind": "veth", "info_data": {"vnet_hdr": True}}}])

        class Stats(Done):
            stdout = json.dumps({"fastpath": {"active": True}})

        def fake_run(argv, **_kw):
            cmds.append([str(a) for a in argv])
            return Stats() if [str(a) for a in argv[-2:]] == ["--json", "stats"] else Done()

        saved = C.run, C.wait_for, C.OVS_SCHEMA
        # Nothing runs, so nothing is waited for; OVS's schema is not needed either.
        C.run, C.wait_for, C.OVS_SCHEMA = fake_run, (lambda *_a, **_kw: None), __file__
        try:
            with tempfile.TemporaryDirectory() as tmp:
                lab = self.FakeLab()
                lab.tmp = tmp
                c = C.BY_NAME[name](lab, 7, RUN.parse_args(["--only", name, "--vxswitch", "/bin/true"]))
                c.setup()
        finally:
            C.run, C.wait_for, C.OVS_SCHEMA = saved
        return c, lab, [" ".join(x) for x in cmds]

    def test_uplink_contenders_are_optional(self):
        from vxbench import contenders as C

        default = [c.name for c in RUN.parse_args(["--quick"]).selected]
        for name in C.UPLINK:
            self.assertNotIn(name, default)
        only = [c.name for c in RUN.parse_args(["--quick", "--only", ",".join(C.UPLINK)]).selected]
        self.assertEqual(set(only), {*C.UPLINK, *C.ALWAYS})

    def test_each_puts_the_container_on_the_same_simulated_lan(self):
        from vxbench import contenders as C

        for name in C.UPLINK:
            with self.subTest(name):
                c, lab, cmds = self.commands(name)
                self.assertEqual((c.ns1, c.ns2), (f"vxb-1-{name}-c1", f"vxb-1-{name}-c2"))
                lan, host = f"vxb-1-{name}-lan", f"vxb-1-{name}-host"
                # The LAN: a bridge, the LAN host and the host's eth0 on it, GRO/TSO on.
                self.assertIn(f"ip -n {lan} link add br0 type bridge", cmds)
                for port in ("lh1", "up0"):
                    self.assertIn(f"ip -n {lan} link set {port} master br0", cmds)
                self.assertIn(f"ip -n {host} link add eth0 type veth peer name up0 netns {lan}", cmds)
                self.assertIn(f"ip -n {c.ns1} addr add 10.250.7.11/24 dev eth0", cmds)
                self.assertIn(f"ip netns exec {host} ethtool -K eth0 gro on tso on", cmds)
                # Nothing in the host's own namespace: every ip command names a lab namespace.
                for cmd in cmds:
                    if cmd.startswith("ip "):
                        self.assertRegex(cmd, r"^ip (-n|netns exec) vxb-1-", cmd)
                self.assertEqual(c.mac2, "02:00:00:00:00:12")
                self.assertEqual(c.kind, "uplink")

    def test_the_four_ways_onto_eth0(self):
        c, lab, cmds = self.commands("uplink-vxswitch")
        host = "vxb-1-uplink-vxswitch-host"
        self.assertEqual(lab.spawned[1], host, "the daemon runs in the host namespace")
        create = next(x for x in cmds if " network create " in x)
        self.assertIn("network create lan --uplink eth0 --subnet 10.250.7.0/24", create)
        self.assertTrue(any(f"port add c2 --network lan --netns /run/netns/{c.ns2} --ip 10.250.7.12/24" in x
                            for x in cmds), cmds)
        c, lab, cmds = self.commands("uplink-vxswitch-ebpf")
        self.assertIn("--fastpath", lab.spawned[0])
        self.assertTrue(any(f"port add c2 --network lan --netns /run/netns/{c.ns2} --ip 10.250.7.12/24 --backend veth"
                            in x for x in cmds), cmds)
        c, _lab, cmds = self.commands("uplink-macvlan")
        host = "vxb-1-uplink-macvlan-host"
        self.assertIn(f"ip -n {host} link add mv0 link eth0 type macvlan mode bridge", cmds)
        self.assertIn(f"ip -n {host} link set mv0 netns {c.ns2}", cmds)
        self.assertFalse(c.userspace)
        c, _lab, cmds = self.commands("uplink-bridge")
        host = "vxb-1-uplink-bridge-host"
        self.assertIn(f"ip -n {host} link set eth0 master br0", cmds)
        self.assertIn(f"ip -n {host} link set p2 master br0", cmds)
        self.assertIn(f"ip -n {c.ns2} link add eth0 type veth peer name p2 netns {host}", cmds)
        c, lab, cmds = self.commands("uplink-ovs")
        host = "vxb-1-uplink-ovs-host"
        self.assertEqual(lab.spawned[1], host, "ovs-vswitchd runs in the host namespace")
        self.assertTrue(any("add-br br0 -- set bridge br0 datapath_type=netdev -- add-port br0 eth0 -- "
                            "add-port br0 vxbt2 -- set interface vxbt2 type=tap" in x for x in cmds), cmds)
        self.assertIn(f"ip -n {host} link set vxbt2 netns {c.ns2}", cmds)
        self.assertTrue(any("other_config:userspace-tso-enable=true" in x for x in cmds),
                        "a virtio_net_hdr on OVS's AF_PACKET socket, as on vxswitch's")


class Docs(unittest.TestCase):
    def test_check_docs_accepts_the_rendered_table_and_names_a_stale_one(self):
        src = os.path.join(RESULTS, "2026-12-06-reorg-overlay-recheck.json")
        table = R.render_table(RUN.view(RUN.load_json(src)), "before-after")
        with tempfile.TemporaryDirectory() as d:
            doc = os.path.join(d, "doc.md")
            with open(doc, "w") as f:
                f.write(f"text\n\n<!-- generated from {src} table=before-after -->\n{table}\nmore\n")
            with redirect_stdout(io.StringIO()):
                self.assertEqual(RUN.check_docs(False, [doc]), 0)
            stale = table.replace("1.01×", "1.05×")
            self.assertNotEqual(stale, table)
            with open(doc, "w") as f:
                f.write(f"<!-- generated from {src} table=before-after -->\n{stale}\nmore\n")
            err = io.StringIO()
            with redirect_stdout(io.StringIO()), redirect_stderr(err):
                self.assertEqual(RUN.check_docs(False, [doc]), 1)
            self.assertIn("--markdown-table before-after", err.getvalue())
            with redirect_stdout(io.StringIO()):
                self.assertEqual(RUN.check_docs(True, [doc]), 0)
                self.assertEqual(RUN.check_docs(False, [doc]), 0)
            with open(doc) as f:
                self.assertTrue(f.read().endswith(table + "\nmore\n"))

    def test_committed_results_render(self):
        for name in sorted(os.listdir(RESULTS)):
            if name.endswith(".json"):
                with self.subTest(name):
                    v = RUN.view(RUN.load_json(os.path.join(RESULTS, name)))
                    for table in R.TABLES:
                        R.render_table(v, table)
                    md = R.markdown(v)
                    self.assertNotIn("±0% n=1", md)

    def test_an_old_results_json_keeps_its_twin_beside_its_original(self):
        doc = copy.deepcopy(RUN.load_json(os.path.join(RESULTS, "2026-12-06-reorg-before-after.json")))
        doc["meta"].pop("contenders_order", None)
        names = RUN.view(doc).names
        self.assertEqual(names.index("vxswitch-base"), names.index("vxswitch") + 1)
        self.assertEqual(json.loads(json.dumps(doc))["baseline"], "bridge")


if __name__ == "__main__":
    unittest.main(verbosity=1)
