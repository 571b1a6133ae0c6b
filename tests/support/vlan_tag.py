"""802.1Q tagging of one interface without the 8021q module or act_vlan.

Usage (inside the interface's network namespace, as root):

    python3 vlan_tag.py IFNAME VID

Adds a clsact qdisc to IFNAME and two tc BPF programs (direct action): on
egress, bpf_skb_vlan_push(802.1Q, VID) tags every frame the interface sends;
on ingress, bpf_skb_vlan_pop() strips the tag of every frame it receives
before the stack looks at it. The stack above IFNAME stays untagged, the wire
below carries tags; TCP segmentation offload still applies (the tag rides
along as metadata until the driver writes it into the frame), so a TAP with
offloads hands its reader tagged super-frames.

The programs are a few hand-assembled eBPF instructions loaded with the bpf()
syscall, attached over rtnetlink: nothing but python3 and a kernel with
cls_bpf and clsact is needed (no clang, no tc, no 8021q). Exit status 0 when
both are attached, 2 when the kernel lacks what it takes (the message says
what), 1 on any other error.
"""

import ctypes
import os
import socket
import struct
import sys

BPF_PROG_LOAD = 5
BPF_PROG_TYPE_SCHED_CLS = 3
SYS_BPF = {"x86_64": 321, "aarch64": 280}.get(os.uname().machine)

FN_SKB_VLAN_PUSH = 18
FN_SKB_VLAN_POP = 19

RTM_NEWQDISC = 36
RTM_NEWTFILTER = 44
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
NLMSG_ERROR = 2
TCA_KIND, TCA_OPTIONS = 1, 2
TCA_BPF_FD, TCA_BPF_NAME, TCA_BPF_FLAGS = 6, 7, 8
TCA_BPF_FLAG_ACT_DIRECT = 1
TC_H_CLSACT = 0xFFFFFFF1
TC_H_INGRESS_PARENT = 0xFFFFFFF2
TC_H_EGRESS_PARENT = 0xFFFFFFF3
ETH_P_ALL = 0x0003


class Unsupported(Exception):
    pass


def insn(code, dst=0, src=0, off=0, imm=0):
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


MOV64_IMM, CALL, EXIT = 0xB7, 0x85, 0x95


def program(push_vid):
    if push_vid is None:
        # r0 = bpf_skb_vlan_pop(ctx); return TC_ACT_OK
        body = insn(CALL, imm=FN_SKB_VLAN_POP)
    else:
        # r0 = bpf_skb_vlan_push(ctx, htons(ETH_P_8021Q), vid)
        body = (
            insn(MOV64_IMM, dst=2, imm=socket.htons(0x8100))
            + insn(MOV64_IMM, dst=3, imm=push_vid)
            + insn(CALL, imm=FN_SKB_VLAN_PUSH)
        )
    return body + insn(MOV64_IMM, dst=0, imm=0) + insn(EXIT)


def load(code, name):
    if SYS_BPF is None:
        raise Unsupported(f"no bpf() syscall number known for {os.uname().machine}")
    libc = ctypes.CDLL(None, use_errno=True)
    insns = ctypes.create_string_buffer(code, len(code))
    lic = ctypes.create_string_buffer(b"GPL")
    log = ctypes.create_string_buffer(4096)
    attr = ctypes.create_string_buffer(128)
    struct.pack_into(
        "<IIQQIIQII16s",
        attr,
        0,
        BPF_PROG_TYPE_SCHED_CLS,
        len(code) // 8,
        ctypes.addressof(insns),
        ctypes.addressof(lic),
        1,
        len(log),
        ctypes.addressof(log),
        0,
        0,
        name.encode()[:15],
    )
    fd = libc.syscall(SYS_BPF, BPF_PROG_LOAD, attr, ctypes.sizeof(attr))
    if fd < 0:
        err = ctypes.get_errno()
        msg = f"bpf(BPF_PROG_LOAD) of {name}: {os.strerror(err)}: {log.value.decode(errors='replace')}"
        raise (Unsupported if err in (1, 22, 38) else OSError)(msg)
    return fd


def attr(kind, data):
    return struct.pack("<HH", 4 + len(data), kind) + data + b"\0" * (-len(data) % 4)


def request(nl, msg_type, ifindex, handle, parent, info, attrs, what):
    body = struct.pack("<BxHiIII", socket.AF_UNSPEC, 0, ifindex, handle, parent, info) + attrs
    flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
    nl.send(struct.pack("<IHHII", 16 + len(body), msg_type, flags, 1, 0) + body)
    reply = nl.recv(65536)
    _, rtype = struct.unpack_from("<IH", reply)
    if rtype != NLMSG_ERROR:
        raise OSError(f"{what}: unexpected netlink reply type {rtype}")
    (err,) = struct.unpack_from("<i", reply, 16)
    if err:
        # ENOENT/EOPNOTSUPP: no such classifier or qdisc in this kernel.
        kind = Unsupported if -err in (2, 95) else OSError
        raise kind(f"{what}: {os.strerror(-err)}")


def main():
    ifname, vid = sys.argv[1], int(sys.argv[2])
    ifindex = socket.if_nametoindex(ifname)
    nl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    nl.bind((0, 0))
    request(
        nl, RTM_NEWQDISC, ifindex, 0xFFFF0000, TC_H_CLSACT, 0,
        attr(TCA_KIND, b"clsact\0"), f"clsact qdisc on {ifname}",
    )
    info = (1 << 16) | socket.htons(ETH_P_ALL)
    for parent, vid_or_none, name in [
        (TC_H_EGRESS_PARENT, vid, "vlan_push"),
        (TC_H_INGRESS_PARENT, None, "vlan_pop"),
    ]:
        fd = load(program(vid_or_none), name)
        opts = (
            attr(TCA_BPF_FD, struct.pack("<I", fd))
            + attr(TCA_BPF_NAME, name.encode() + b"\0")
            + attr(TCA_BPF_FLAGS, struct.pack("<I", TCA_BPF_FLAG_ACT_DIRECT))
        )
        request(
            nl, RTM_NEWTFILTER, ifindex, 0, parent, info,
            attr(TCA_KIND, b"bpf\0") + attr(TCA_OPTIONS | 0x8000, opts),
            f"tc bpf {name} on {ifname}",
        )
        os.close(fd)


if __name__ == "__main__":
    try:
        main()
    except Unsupported as e:
        print(f"unsupported here: {e}", file=sys.stderr)
        sys.exit(2)
