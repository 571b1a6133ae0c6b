# Captures the real inputs the fuzz seeds are made from (docs/fuzzing.md,
# "Where the seeds come from"). Run as root inside a fresh network
# namespace, with the vxswitch binary built:
#
#   unshare --net python3 fuzz/capture.py OUTDIR target/debug/vxswitch
#
# Writes OUTDIR/raw/KIND/NNN.bin, one file per captured thing:
#   vnet/     what a TAP with virtio_net_hdr and offloads hands over (TCP
#             super-frames, USO, plain UDP): tests/offload_frames/vnet_capture.py
#   plain/    frames a container's kernel sends to its gateway through a
#             TAP without offloads: ARP, ICMP echo, NS, ICMPv6 echo, MLD, RS
#   vxlan/    VXLAN datagrams (UDP payloads) the kernel's vxlan device sends
#   state/    state.json of a daemon with --state-dir after a few changes
#   etcd/     raw HTTP responses of etcd 3.4's JSON gateway (curl --raw -i)
#   cni/      an IPAM result from the reference host-local plugin
#
# Every wait is bounded; everything runs in this namespace and a temporary
# directory, and the processes started are stopped by PID.
import fcntl, json, os, select, shutil, signal, socket, struct, subprocess, sys, tempfile, time

OUT = os.path.abspath(sys.argv[1])
VXSWITCH = os.path.abspath(sys.argv[2])
HERE = os.path.dirname(os.path.abspath(__file__))
TMP = tempfile.mkdtemp(prefix="vxfuzz-")
TUNSETIFF = 0x400454CA


def run(*a, check=True, **kw):
    return subprocess.run(list(a), check=check, capture_output=True, timeout=30, **kw)


def save(kind, data, name=None):
    d = os.path.join(OUT, "raw", kind)
    os.makedirs(d, exist_ok=True)
    n = name or "%03d.bin" % len(os.listdir(d))
    with open(os.path.join(d, n), "wb") as f:
        f.write(data)


def vnet():
    d = os.path.join(TMP, "vnet")
    os.makedirs(d)
    # Its own namespace: it configures vh0 with fixed addresses.
    run("unshare", "--net", sys.executable,
        os.path.join(HERE, "..", "tests", "offload_frames", "vnet_capture.py"), d)
    for f in sorted(os.listdir(d)):
        if f.endswith(".bin") and f != "sent.bin":
            save("vnet", open(os.path.join(d, f), "rb").read())


def plain():
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", b"pl0", 0x0002 | 0x1000))
    run("ip", "link", "set", "pl0", "address", "02:00:00:00:00:02", "up")
    run("ip", "addr", "add", "10.77.0.2/24", "dev", "pl0")
    run("ip", "addr", "add", "fd77::2/64", "dev", "pl0", "nodad")

    def drain(t):
        end = time.time() + t
        while time.time() < end:
            r, _, _ = select.select([fd], [], [], max(0, end - time.time()))
            if r:
                save("plain", os.read(fd, 70000))

    drain(0.5)
    for cmd in (["ping", "-c1", "-W1", "10.77.0.1"], ["ping", "-6", "-c1", "-W1", "fd77::1"]):
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        drain(1.2)
        p.wait(timeout=5)
    run("ip", "neigh", "replace", "10.77.0.1", "lladdr", "02:00:00:00:00:01", "dev", "pl0")
    run("ip", "-6", "neigh", "replace", "fd77::1", "lladdr", "02:00:00:00:00:01", "dev", "pl0")
    for cmd in (["ping", "-c1", "-W1", "-s", "56", "10.77.0.1"],
                ["ping", "-c1", "-W1", "-s", "1400", "10.77.0.1"],
                ["ping", "-6", "-c1", "-W1", "fd77::1"]):
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        drain(1.2)
        p.wait(timeout=5)
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.sendto(b"hello", ("10.77.0.1", 53))
    drain(0.3)
    os.close(fd)


def vxlan():
    # The datagrams a vxlan device sends to 10.9.0.2, read off the veth
    # they leave by (the other end has no address: nothing answers).
    run("ip", "link", "add", "vxa", "type", "veth", "peer", "name", "vxb")
    run("ip", "link", "set", "vxa", "up")
    run("ip", "link", "set", "vxb", "up")
    run("ip", "addr", "add", "10.9.0.1/24", "dev", "vxa")
    run("ip", "neigh", "replace", "10.9.0.2", "lladdr", "02:00:00:00:00:ff", "dev", "vxa")
    run("ip", "link", "add", "vx0", "type", "vxlan", "id", "4242", "remote", "10.9.0.2",
        "local", "10.9.0.1", "dstport", "4789", "dev", "vxa")
    run("ip", "link", "set", "vx0", "address", "02:00:00:00:00:0a", "up")
    run("ip", "addr", "add", "10.99.0.1/24", "dev", "vx0")
    run("ip", "addr", "add", "fd99::1/64", "dev", "vx0", "nodad")
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    s.bind(("vxa", 0))
    s.setblocking(False)

    def drain(t):
        end = time.time() + t
        while time.time() < end:
            r, _, _ = select.select([s], [], [], max(0, end - time.time()))
            if not r:
                continue
            f, addr = s.recvfrom(70000)
            if addr[2] != socket.PACKET_OUTGOING or f[12:14] != b"\x08\x00":
                continue
            ihl = (f[14] & 15) * 4
            if f[23] != 17:
                continue
            udp = 14 + ihl
            if struct.unpack("!H", f[udp + 2:udp + 4])[0] == 4789:
                save("vxlan", f[udp + 8:])

    drain(0.5)
    for cmd in (["ping", "-c1", "-W1", "10.99.0.2"], ["ping", "-6", "-c1", "-W1", "fd99::2"]):
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        drain(1.2)
        p.wait(timeout=5)
    run("ip", "neigh", "replace", "10.99.0.2", "lladdr", "02:00:00:00:00:0b", "dev", "vx0")
    run("ip", "-6", "neigh", "replace", "fd99::2", "lladdr", "02:00:00:00:00:0b", "dev", "vx0")
    run("bridge", "fdb", "append", "02:00:00:00:00:0b", "dev", "vx0", "dst", "10.9.0.2")
    for cmd in (["ping", "-c2", "-i0.2", "-W1", "10.99.0.2"], ["ping", "-6", "-c1", "-W1", "fd99::2"]):
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        drain(1.2)
        p.wait(timeout=5)
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.sendto(bytes(range(200)), ("10.99.0.2", 9))
    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    t.setblocking(False)
    try:
        t.connect(("10.99.0.2", 80))
    except BlockingIOError:
        pass
    drain(0.5)
    t.close()
    s.close()


def state():
    d = os.path.join(TMP, "state")
    sock = os.path.join(TMP, "vx.sock")
    daemon = subprocess.Popen([VXSWITCH, "daemon", "--socket", sock, "--state-dir", d,
                               "--workers", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sleeper = subprocess.Popen(["unshare", "--net", "sleep", "60"])
    try:
        end = time.time() + 10
        while not os.path.exists(sock) and time.time() < end:
            time.sleep(0.05)
        time.sleep(0.2)

        def vx(*a):
            run(VXSWITCH, "--socket", sock, *a, check=False)
            save("state", open(os.path.join(d, "state.json"), "rb").read())

        vx("network", "create", "red", "--subnet", "10.77.0.0/24", "--gateway", "10.77.0.1",
           "--gateway-port", "switch")
        vx("network", "create", "blue", "--vni", "4242", "--vtep", "192.0.2.1", "--vtep",
           "[2001:db8::1]:8472", "--mtu", "1400")
        vx("network", "create", "green", "--subnet", "fd42::/64", "--vni", "77", "--learn-vteps")
        vx("port", "add", "c1", "--network", "red", "--pid", str(sleeper.pid), "--ip",
           "10.77.0.11/24", "--container", "web")
        vx("port", "add", "c2", "--network", "green", "--pid", str(sleeper.pid), "--ifname",
           "eth1", "--mac", "02:00:00:00:00:12", "--no-offload")
        vx("fdb", "add", "02:00:00:00:00:99", "--network", "red", "--port", "c1")
        vx("fdb", "add", "02:00:00:00:00:98", "--network", "blue", "--vtep", "192.0.2.1")
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=10)
        except subprocess.TimeoutExpired:
            daemon.kill()
        sleeper.kill()
        sleeper.wait()


def etcd():
    d = os.path.join(TMP, "etcd")
    run("ip", "link", "set", "lo", "up")
    url = "http://127.0.0.1:23790"
    p = subprocess.Popen(["etcd", "--data-dir", d, "--listen-client-urls", url,
                          "--advertise-client-urls", url, "--listen-peer-urls",
                          "http://127.0.0.1:23800", "--initial-advertise-peer-urls",
                          "http://127.0.0.1:23800", "--initial-cluster",
                          "default=http://127.0.0.1:23800"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        end = time.time() + 15
        while time.time() < end:
            if run("curl", "-s", url + "/health", check=False).returncode == 0:
                break
            time.sleep(0.1)

        def b64(s):
            import base64
            return base64.b64encode(s.encode()).decode()

        def post(name, path, body, extra=()):
            r = run("curl", "-s", "-i", "--raw", *extra, "-X", "POST", url + path,
                    "-d", json.dumps(body), check=False)
            save("etcd", r.stdout, name + ".bin")
            return r.stdout

        records = {
            "/vxswitch/v1/hosts/h1": {"vtep": "192.0.2.1", "vxlan_port": 4789,
                                       "boot_id": "b1", "version": "0.1.0"},
            "/vxswitch/v1/hosts/h2": {"vtep": "2001:db8::2", "vxlan_port": 8472,
                                       "boot_id": "b2", "version": "0.1.0"},
            "/vxswitch/v1/networks/red": {"vni": 4242, "subnets": [
                {"subnet": "10.77.0.0/24", "gateway": "10.77.0.1"}], "mtu": 1450},
            "/vxswitch/v1/vni/4242": {"network": "red"},
            "/vxswitch/v1/endpoints/h2/red/02:00:00:00:00:21": {"ips": ["10.77.0.21"]},
            "/vxswitch/v1/ipam/red/10.77.0.21": {"owner": "h2/c21"},
        }
        lease = json.loads(post("lease_grant", "/v3/lease/grant", {"TTL": "60"}).split(b"\r\n\r\n", 1)[1])
        for k, v in records.items():
            body = {"key": b64(k), "value": b64(json.dumps(v))}
            if "/hosts/" in k or "/endpoints/" in k:
                body["lease"] = lease["ID"]
            post("put", "/v3/kv/put", body)
        post("range", "/v3/kv/range", {"key": b64("/vxswitch/v1/"), "range_end": b64("/vxswitch/v10")})
        post("range_page", "/v3/kv/range", {"key": b64("/vxswitch/v1/"),
                                            "range_end": b64("/vxswitch/v10"), "limit": "2"})
        post("get_missing", "/v3/kv/range", {"key": b64("/nothing")})
        post("txn", "/v3/kv/txn", {
            "compare": [{"key": b64("/vxswitch/v1/networks/blue"), "target": "CREATE",
                         "result": "EQUAL", "create_revision": "0"}],
            "success": [{"request_put": {"key": b64("/vxswitch/v1/networks/blue"),
                                         "value": b64('{"vni":77,"subnets":[]}')}}],
            "failure": [{"request_range": {"key": b64("/vxswitch/v1/networks/blue")}}]})
        post("txn_failed", "/v3/kv/txn", {
            "compare": [{"key": b64("/vxswitch/v1/networks/blue"), "target": "CREATE",
                         "result": "EQUAL", "create_revision": "0"}],
            "success": [], "failure": [{"request_range": {"key": b64("/vxswitch/v1/networks/blue")}}]})
        post("delete", "/v3/kv/deleterange", {"key": b64("/vxswitch/v1/ipam/"),
                                              "range_end": b64("/vxswitch/v1/ipam0")})
        post("keepalive", "/v3/lease/keepalive", {"ID": lease["ID"]})
        post("ttl", "/v3/lease/timetolive", {"ID": lease["ID"]})
        post("revoke_missing", "/v3/lease/revoke", {"ID": "12345"})
        post("bad_request", "/v3/kv/range", {"key": 7})
        post("compacted", "/v3/kv/range", {"key": b64("/x"), "revision": "99999"})
        # A watch: created, then events for a put and a delete, then cut.
        w = subprocess.Popen(["curl", "-s", "-i", "--raw", "--max-time", "2", "-X", "POST",
                              url + "/v3/watch", "-d", json.dumps({"create_request": {
                                  "key": b64("/vxswitch/v1/"), "range_end": b64("/vxswitch/v10"),
                                  "start_revision": "2"}})], stdout=subprocess.PIPE)
        time.sleep(0.5)
        post("put2", "/v3/kv/put", {"key": b64("/vxswitch/v1/networks/green"),
                                     "value": b64('{"vni":78,"subnets":[]}')})
        post("delete2", "/v3/kv/deleterange", {"key": b64("/vxswitch/v1/networks/green")})
        out, _ = w.communicate(timeout=10)
        save("etcd", out, "watch.bin")
        post("watch_compacted", "/v3/watch", {"create_request": {
            "key": b64("/vxswitch/v1/"), "start_revision": "1"}}, extra=("--max-time", "1"))
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()


def cni():
    conf = {"cniVersion": "1.0.0", "name": "vx", "type": "vxswitch",
            "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.88.0.0/16",
                                                         "gateway": "10.88.0.1"}]],
                     "routes": [{"dst": "0.0.0.0/0"}], "dataDir": os.path.join(TMP, "ipam")}}
    env = dict(os.environ, CNI_COMMAND="ADD", CNI_CONTAINERID="45476dc56b4a9f",
               CNI_NETNS="/run/netns/x", CNI_IFNAME="eth0", CNI_PATH="/usr/lib/cni")
    r = subprocess.run(["/usr/lib/cni/host-local"], input=json.dumps(conf).encode(), env=env,
                       capture_output=True, timeout=10)
    save("cni", r.stdout, "host_local.json")


for step in (vnet, plain, vxlan, state, etcd, cni):
    try:
        step()
    except Exception as e:  # one missing tool must not lose the rest
        print("capture: %s failed: %s" % (step.__name__, e), file=sys.stderr)
shutil.rmtree(TMP, ignore_errors=True)
for k in sorted(os.listdir(os.path.join(OUT, "raw"))):
    print(k, len(os.listdir(os.path.join(OUT, "raw", k))))
