"""The lab: every namespace and process the harness creates, and their removal.

Everything the harness makes goes through a `Lab`, so that `Lab.cleanup()` can
undo it on a normal exit, on an exception, and on SIGINT/SIGTERM/SIGHUP:

- network namespaces are named `vxb-<harness pid>-<short name>`;
- no link is ever created in the host's namespace: every veth, bridge, vxlan
  device and TAP lives in a namespace of the lab and goes away with it;
- processes are started with `start_new_session=True` (a Ctrl-C at the
  terminal reaches only the harness, which then stops them in order) and are
  stopped by PID only: SIGTERM, then SIGKILL after a bounded wait;
- every wait is bounded in time, every retry loop in count.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time


class BenchError(Exception):
    """A step failed; the message says which and why."""


class Interrupted(BaseException):
    """A signal asked the harness to stop (raised from the signal handler)."""

    def __init__(self, signum: int):
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run(argv, timeout: float = 30, check: bool = True, env=None, input=None):
    """Runs a command to completion (bounded by `timeout`) and captures its output."""
    argv = [str(a) for a in argv]
    try:
        p = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"timed out after {timeout:g} s: {' '.join(argv)}") from None
    except FileNotFoundError:
        raise BenchError(f"command not found: {argv[0]}") from None
    if check and p.returncode != 0:
        out = (p.stderr.strip() or p.stdout.strip())[-600:]
        raise BenchError(f"`{' '.join(argv)}` exited {p.returncode}: {out}")
    return p


def nsx(ns: str | None, argv):
    """`argv` run inside network namespace `ns` (`ip netns exec` execs it: same PID)."""
    return ["ip", "netns", "exec", ns, *argv] if ns else list(argv)


def tail(path: str, lines: int = 15) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 8192))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


def list_netns() -> list[str]:
    out = run(["ip", "netns", "list"], check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def host_links() -> set[str]:
    out = run(["ip", "-br", "link"], check=False).stdout
    return {line.split()[0].split("@")[0] for line in out.splitlines() if line.strip()}


def _exit_info(popen: subprocess.Popen):
    """The child's exit as (code, signal) without reaping it, or None while it runs.

    Not reaping keeps its PID (and so its process group id) reserved until
    `Lab.stop()` has swept the group, so a kill can never hit a reused PID.
    """
    if popen.returncode is not None:
        rc = popen.returncode
        return (rc, 0) if rc >= 0 else (None, -rc)
    try:
        info = os.waitid(os.P_PID, popen.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return (None, 0)
    if info is None or info.si_pid == 0:
        return None
    if info.si_code == os.CLD_EXITED:
        return (info.si_status, 0)
    return (None, info.si_status)


class Proc:
    """A process the lab started: its Popen, a label and its log file."""

    def __init__(self, label: str, popen: subprocess.Popen, logpath: str):
        self.label = label
        self.popen = popen
        self.logpath = logpath

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return _exit_info(self.popen) is None

    def status(self) -> str:
        info = _exit_info(self.popen)
        if info is None:
            return "running"
        code, sig = info
        return f"killed by signal {sig}" if sig else f"exit status {code}"

    def log_tail(self, lines: int = 15) -> str:
        return tail(self.logpath, lines)

    def output(self) -> str:
        try:
            with open(self.logpath, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""


class Lab:
    def __init__(self, keep_tmp: bool = False):
        self.pid = os.getpid()
        self.prefix = f"vxb-{self.pid}-"
        self.tmp = tempfile.mkdtemp(prefix=f"vxb-{self.pid}-")
        self.keep_tmp = keep_tmp
        self.namespaces: list[str] = []
        self.procs: list[Proc] = []
        self.cleaning = False
        self.closed = False
        self.host_links_at_start = host_links()
        self._n = 0

    # -- signals ------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        def handler(signum, _frame):
            if self.cleaning:
                return  # finish the cleanup first; it is bounded
            raise Interrupted(signum)

        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, handler)

    # -- creation -----------------------------------------------------------

    def netns(self, short: str) -> str:
        """A new network namespace with `lo` up and IPv6 off (no stray RS/MLD traffic)."""
        name = self.prefix + short
        run(["ip", "netns", "add", name])
        self.namespaces.append(name)
        run(["ip", "-n", name, "link", "set", "lo", "up"])
        run(
            nsx(
                name,
                [
                    "sysctl", "-q", "-w",
                    "net.ipv6.conf.all.disable_ipv6=1",
                    "net.ipv6.conf.default.disable_ipv6=1",
                ],
            )
        )
        return name

    def path(self, name: str) -> str:
        return os.path.join(self.tmp, name)

    def spawn(self, label: str, argv, ns: str | None = None, stdin=None, env=None) -> Proc:
        """Starts a long-running process (in `ns`); stdout+stderr go to a log file."""
        self._n += 1
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", label)
        logpath = os.path.join(self.tmp, f"{self._n:04d}-{safe}.log")
        argv = [str(a) for a in nsx(ns, argv)]
        with open(logpath, "ab") as f:
            try:
                popen = subprocess.Popen(
                    argv,
                    stdin=stdin if stdin is not None else subprocess.DEVNULL,
                    stdout=f,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    env=env,
                )
            except FileNotFoundError:
                raise BenchError(f"command not found: {argv[0]}") from None
        proc = Proc(label, popen, logpath)
        self.procs.append(proc)
        return proc

    def stop(self, proc: Proc, sig: int = signal.SIGTERM, timeout: float = 5) -> None:
        """Stops one process and whatever it forked (trafgen forks its workers).

        Each process runs in its own session, so its process group id is its
        PID: `sig` goes to that group, then SIGKILL if the process is still
        there after `timeout`. The process is reaped only after a last SIGKILL
        to its group, so no PID or group id can have been reused meanwhile.
        """
        p = proc.popen
        if p.returncode is None:
            def wait_exit(limit):
                end = time.monotonic() + limit
                while time.monotonic() < end:
                    if not proc.alive():
                        return True
                    time.sleep(0.02)
                return not proc.alive()

            for s, limit in ((sig, timeout), (signal.SIGKILL, 5)):
                if not proc.alive():
                    break
                try:
                    os.killpg(p.pid, s)
                except ProcessLookupError:
                    break
                if wait_exit(limit):
                    break
            try:
                os.killpg(p.pid, signal.SIGKILL)  # stragglers of the group; the leader is a zombie
            except (ProcessLookupError, PermissionError):
                pass
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                log(f"warning: {proc.label} (pid {p.pid}) did not die after SIGKILL")
        if p.stdin:
            try:
                p.stdin.close()
            except OSError:
                pass
        if proc in self.procs:
            self.procs.remove(proc)

    # -- removal ------------------------------------------------------------

    def cleanup(self) -> list[str]:
        """Removes everything; safe to call twice. Returns problems found afterwards."""
        if self.closed:
            return []
        self.cleaning = True
        try:
            for proc in list(reversed(self.procs)):
                self.stop(proc, timeout=5)
            for ns in reversed(self.namespaces):
                # Nothing should be left inside; if something is (a child of
                # a process we started), it is in a namespace we made.
                pids = run(["ip", "netns", "pids", ns], check=False, timeout=10).stdout.split()
                for pid in pids:
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                    except (ProcessLookupError, ValueError):
                        pass
                run(["ip", "netns", "del", ns], check=False, timeout=20)
            self.namespaces.clear()
            problems = []
            left = [n for n in list_netns() if n.startswith(self.prefix)]
            if left:
                problems.append(f"namespaces left behind: {' '.join(left)}")
            new_links = host_links() - self.host_links_at_start
            if new_links:
                # The harness never creates host links; anything new there
                # belongs to someone else on this machine, but say so.
                problems.append(
                    "links appeared in the host namespace during the run (not created by the "
                    f"harness, which makes none there): {' '.join(sorted(new_links))}"
                )
            if not self.keep_tmp:
                shutil.rmtree(self.tmp, ignore_errors=True)
            self.closed = True
            return problems
        finally:
            self.cleaning = False


def stale_namespaces() -> list[str]:
    """`vxb-PID-*` namespaces whose harness process is gone (it was SIGKILLed)."""
    stale = []
    for name in list_netns():
        m = re.match(r"vxb-(\d+)-", name)
        if m and not os.path.exists(f"/proc/{m.group(1)}"):
            stale.append(name)
    return stale


def remove_namespaces(names: list[str]) -> None:
    for ns in names:
        for pid in run(["ip", "netns", "pids", ns], check=False).stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        run(["ip", "netns", "del", ns], check=False)
