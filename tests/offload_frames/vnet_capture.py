# Captures what a vnet_hdr TAP with offloads hands over, for
# tests/offload_root.rs: a TCP burst (after a handshake faked from the TAP
# side; nothing is ever ACKed, so the burst is the initial window), a USO
# send (UDP_SEGMENT) and a plain UDP send, over IPv4 and IPv6.
# Run inside a fresh network namespace: argv[1] = OUTDIR. Writes one
# OUTDIR/NNN.bin (virtio_net_hdr + frame) per read of the TAP and
# OUTDIR/sent.bin, the bytes the applications sent (prefixes of it).
# Python because the TAP needs ioctls (TUNSETOFFLOAD, ...) that the crate
# keeps in its private sys module; every wait here is bounded.
import fcntl, os, select, socket, struct, subprocess, sys, time

out = sys.argv[1]
TUNSETIFF, TUNSETOFFLOAD = 0x400454CA, 0x400454D0
TUNSETVNETHDRSZ, TUNSETVNETLE = 0x400454D8, 0x400454DC
fd = os.open("/dev/net/tun", os.O_RDWR)
fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", b"vh0", 0x0002 | 0x1000 | 0x4000))
fcntl.ioctl(fd, TUNSETVNETHDRSZ, struct.pack("i", 12))
fcntl.ioctl(fd, TUNSETVNETLE, struct.pack("i", 1))
fcntl.ioctl(fd, TUNSETOFFLOAD, 0x01 | 0x02 | 0x04 | 0x08 | 0x20 | 0x40)
PEER = bytes([2, 0, 0, 0, 0, 2])
def ip(*a):
    subprocess.run(["ip"] + list(a), check=True)
ip("link", "set", "vh0", "address", "02:00:00:00:00:01", "up")
ip("addr", "add", "10.43.0.1/24", "dev", "vh0")
ip("addr", "add", "fd43::1/64", "dev", "vh0", "nodad")
ip("neigh", "add", "10.43.0.2", "lladdr", "02:00:00:00:00:02", "dev", "vh0")
ip("-6", "neigh", "add", "fd43::2", "lladdr", "02:00:00:00:00:02", "dev", "vh0")
n = [0]
def read(timeout=2.0):
    r, _, _ = select.select([fd], [], [], timeout)
    if not r:
        return None
    b = os.read(fd, 70000)
    with open("%s/%03d.bin" % (out, n[0]), "wb") as f:
        f.write(b)
    n[0] += 1
    return b
def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF
def synack(frame, v6):
    l3 = 14
    if v6:
        src, dst, l4 = frame[l3 + 8:l3 + 24], frame[l3 + 24:l3 + 40], l3 + 40
    else:
        ihl = (frame[l3] & 15) * 4
        src, dst, l4 = frame[l3 + 12:l3 + 16], frame[l3 + 16:l3 + 20], l3 + ihl
    sport, dport, seq = struct.unpack("!HHI", frame[l4:l4 + 8])
    opts = frame[l4 + 20:l4 + (frame[l4 + 12] >> 4) * 4]
    tsval = 0
    i = 0
    while i < len(opts):
        k = opts[i]
        if k == 0:
            break
        if k == 1:
            i += 1
            continue
        if k == 8:
            tsval = struct.unpack("!I", opts[i + 2:i + 6])[0]
        i += opts[i + 1]
    myopts = bytes([2, 4, 5, 0xB4, 1, 3, 3, 7, 4, 2, 8, 10]) + struct.pack("!II", 1, tsval)
    tcp = struct.pack("!HHIIBBHHH", dport, sport, 1000, seq + 1, (20 + len(myopts)) // 4 << 4, 0x12, 65535, 0, 0) + myopts
    if v6:
        pseudo = dst + src + struct.pack("!IxxxB", len(tcp), 6)
        iph = struct.pack("!IHBB", 0x60000000, len(tcp), 6, 64) + dst + src
        et = b"\x86\xdd"
    else:
        pseudo = dst + src + struct.pack("!xBH", 6, len(tcp))
        iph = struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(tcp), 0, 0x4000, 64, 6, 0) + dst + src
        iph = iph[:10] + struct.pack("!H", csum(iph)) + iph[12:]
        et = b"\x08\x00"
    tcp = tcp[:16] + struct.pack("!H", csum(pseudo + tcp)) + tcp[18:]
    os.write(fd, bytes(12) + frame[6:12] + PEER + et + iph + tcp)
data = bytes((i * 7 + i // 251) & 0xFF for i in range(60000))
for v6, dst in ((False, "10.43.0.2"), (True, "fd43::2")):
    fam = socket.AF_INET6 if v6 else socket.AF_INET
    c = socket.socket(fam, socket.SOCK_STREAM)
    c.setblocking(False)
    try:
        c.connect((dst, 5201))
    except BlockingIOError:
        pass
    deadline = time.time() + 5
    while time.time() < deadline:
        b = read()
        if b is None:
            continue
        f = b[12:]
        et = f[12:14]
        if et == b"\x08\x00" and f[23] == 6 and f[14 + (f[14] & 15) * 4 + 13] == 0x02:
            synack(f, False)
            break
        if et == b"\x86\xdd" and f[20] == 6 and f[54 + 13] == 0x02:
            synack(f, True)
            break
    select.select([], [c], [], 5)
    c.setblocking(True)
    c.sendall(data[:30000])
    got = 0
    deadline = time.time() + 5
    while got < 14480 and time.time() < deadline:
        b = read(0.5)
        if b is not None and len(b) > 100:
            got += len(b) - 12 - (54 if not v6 else 74) - 12
    c.close()
    u = socket.socket(fam, socket.SOCK_DGRAM)
    u.setsockopt(17, 103, 1000)  # UDP_SEGMENT
    u.sendto(data[:5500], (dst, 9))
    u.setsockopt(17, 103, 0)
    u.sendto(data[:300], (dst, 9))
    for _ in range(4):
        read(0.5)
with open(out + "/sent.bin", "wb") as f:
    f.write(data)
print("frames", n[0])
