#!/usr/bin/env python3
"""gdb.py - kvmm's GDB stub (--gdb, --gdb-wait) driven by a small GDB
remote-protocol client, under one accelerator.

    gdb.py KVMM ACCEL BZIMAGE BZIMAGE_ELF

Boots tests/guests' basic.bzImage paused (--gdb-wait) and checks, over
the protocol: the stop reply, the registers (RIP = the 64-bit entry,
0x100200), memory at RIP against the file's bytes, thread queries, a
breakpoint at guest_main_bzimage (from the ELF's symbols) reached with
`c`, a single step (`s` and vCont;s) moving RIP, a memory write read back,
then the breakpoint removed and `c` to the guest's exit: a `W01` packet
and kvmm's exit status 1.  If Debian's gdb is installed the same stub is
also checked with `gdb -batch` (registers, breakpoint, step).

Exit 0 pass, 77 skip (no usable /dev/kvm for ACCEL=kvm), else fail.
"""
import os
import shutil
import socket
import subprocess
import sys
import time

TIMEOUT = 60


def fail(msg, proc=None):
    print("FAIL: " + msg)
    if proc is not None:
        try:
            proc.kill()
            out, err = proc.communicate(timeout=5)
            print("--- stderr:\n" + err.decode(errors="replace")[-3000:])
            print("--- stdout:\n" + out.decode(errors="replace")[-3000:])
        except Exception:
            pass
    sys.exit(1)


def skip(msg):
    print("SKIP: " + msg)
    sys.exit(77)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Rsp:
    """A minimal GDB remote serial protocol client (with acks)."""

    def __init__(self, port):
        deadline = time.time() + 20
        while True:
            try:
                self.s = socket.create_connection(("127.0.0.1", port), timeout=5)
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.1)
        self.s.settimeout(TIMEOUT)
        self.buf = b""

    def _byte(self):
        if not self.buf:
            d = self.s.recv(4096)
            if not d:
                raise EOFError("connection closed")
            self.buf = d
        b, self.buf = self.buf[:1], self.buf[1:]
        return b

    def send(self, data):
        pkt = data.encode() if isinstance(data, str) else data
        ck = sum(pkt) & 0xff
        self.s.sendall(b"$" + pkt + b"#%02x" % ck)
        # the stub acknowledges with '+'
        while True:
            b = self._byte()
            if b == b"+":
                return
            if b == b"-":
                raise RuntimeError("stub nak'ed " + repr(data))

    def recv(self):
        while self._byte() != b"$":
            pass
        data = b""
        while True:
            b = self._byte()
            if b == b"#":
                break
            data += b
        ck = self._byte() + self._byte()
        if int(ck, 16) != sum(data) & 0xff:
            raise RuntimeError("bad checksum in " + repr(data))
        self.s.sendall(b"+")
        out, i = b"", 0
        while i < len(data):  # '}' escapes
            if data[i:i + 1] == b"}":
                out += bytes([data[i + 1] ^ 0x20])
                i += 2
            else:
                out += data[i:i + 1]
                i += 1
        return out.decode(errors="replace")

    def cmd(self, data):
        self.send(data)
        return self.recv()


def le64(hexstr):
    return int.from_bytes(bytes.fromhex(hexstr), "little")


def regs(c):
    g = c.cmd("g")
    if len(g) < 2 * (17 * 8 + 4):
        raise RuntimeError("short g reply: " + g)
    return g


def rip_of(g):
    return le64(g[16 * 16:17 * 16])


def main():
    if len(sys.argv) != 5:
        print(__doc__)
        sys.exit(2)
    kvmm, accel, bzimage, elf = sys.argv[1:]
    if accel == "kvm":
        if not os.access("/dev/kvm", os.R_OK | os.W_OK):
            skip("/dev/kvm is not usable here")
    with open(bzimage, "rb") as f:
        image = f.read()
    setup_sects = image[0x1f1] or 4
    pm_off = (setup_sects + 1) * 512  # the protected-mode part, loaded at 1 MiB
    entry = 0x100200
    expect = image[pm_off + 0x200:pm_off + 0x200 + 16]
    bp = None
    nm = shutil.which("nm")
    if nm:
        for line in subprocess.run([nm, elf], capture_output=True, text=True).stdout.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[2] == "guest_main_bzimage":
                bp = int(parts[0], 16)
    if bp is None:
        skip("no nm, or no guest_main_bzimage symbol in " + elf)

    port = free_port()
    argv = [kvmm, "run", "--accel", accel, "--console", "none", "--mem", "128M",
            "--gdb", "tcp:127.0.0.1:%d" % port, "--gdb-wait", "--kernel", bzimage]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        c = Rsp(port)
    except OSError as e:
        fail("cannot connect to the stub: %s" % e, proc)

    try:
        r = c.cmd("qSupported:multiprocess+;swbreak+;hwbreak+;xmlRegisters=i386")
        if "PacketSize" not in r:
            fail("qSupported: " + r, proc)
        xml = c.cmd("qXfer:features:read:target.xml:0,ffb")
        if "i386:x86-64" not in xml:
            fail("target.xml: " + xml[:200], proc)
        r = c.cmd("?")
        if not r.startswith("T05"):
            fail("stop reply to '?': " + r, proc)
        if c.cmd("qfThreadInfo") != "m1" or c.cmd("qsThreadInfo") != "l":
            fail("thread list", proc)
        if c.cmd("qC") != "QC1":
            fail("qC", proc)
        if c.cmd("Hg1") != "OK" or c.cmd("T1") != "OK" or c.cmd("T5").startswith("OK"):
            fail("Hg/T", proc)
        g = regs(c)
        if rip_of(g) != entry:
            fail("RIP at the start is 0x%x, expected 0x%x" % (rip_of(g), entry), proc)
        # 'g' is the full amd64 layout: 536 bytes
        if len(g) != 2 * 536:
            fail("g reply has %d bytes, expected 536" % (len(g) // 2), proc)
        m = c.cmd("m%x,10" % entry)
        if bytes.fromhex(m) != expect:
            fail("memory at RIP %s, file has %s" % (m, expect.hex()), proc)
        # a breakpoint, continue, stop there
        if c.cmd("Z0,%x,1" % bp) != "OK":
            fail("Z0 refused", proc)
        c.send("c")
        r = c.recv()
        if not r.startswith("T05") or "thread:1;" not in r:
            fail("stop reply after c: " + r, proc)
        rip = rip_of(regs(c))
        if rip != bp:
            fail("stopped at 0x%x, breakpoint at 0x%x" % (rip, bp), proc)
        # single steps, with 's' and with vCont
        if "vCont;c" not in c.cmd("vCont?") or "s" not in c.cmd("vCont?"):
            fail("vCont?", proc)
        c.send("s")
        r = c.recv()
        if not r.startswith("T05"):
            fail("stop reply after s: " + r, proc)
        rip1 = rip_of(regs(c))
        if rip1 == bp:
            fail("s did not move RIP", proc)
        c.send("vCont;s:1")
        r = c.recv()
        if not r.startswith("T05"):
            fail("stop reply after vCont;s: " + r, proc)
        rip2 = rip_of(regs(c))
        if rip2 == rip1:
            fail("vCont;s did not move RIP", proc)
        # a register write read back (RAX), then restored
        g = regs(c)
        rax = g[0:16]
        if c.cmd("P0=efbeadde00000000") != "OK" or regs(c)[0:16] != "efbeadde00000000":
            fail("P (register write) not read back", proc)
        if c.cmd("P0=" + rax) != "OK":
            fail("P restore", proc)
        # memory write read back on the stack page below RSP
        rsp = le64(g[7 * 16:8 * 16])
        a = rsp - 0x200
        old = c.cmd("m%x,4" % a)
        if c.cmd("M%x,4:11223344" % a) != "OK" or c.cmd("m%x,4" % a) != "11223344":
            fail("M (memory write) not read back", proc)
        c.cmd("M%x,4:%s" % (a, old))
        # an unmapped address gives an error, not a crash
        if not c.cmd("m%x,4" % 0x7ff000000000).startswith("E"):
            fail("reading an unmapped address did not fail", proc)
        # remove the breakpoint, run to the guest's exit
        if c.cmd("z0,%x,1" % bp) != "OK":
            fail("z0", proc)
        c.send("c")
        r = c.recv()
        if r != "W01":
            fail("expected W01 at the guest's exit, got " + r, proc)
    except (EOFError, OSError, RuntimeError) as e:
        fail("protocol: %s" % e, proc)
    try:
        rc = proc.wait(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        fail("kvmm did not exit after the guest did", proc)
    if rc != 1:
        fail("kvmm exit status %d, expected 1" % rc, proc)

    gdb = shutil.which("gdb")
    if gdb:
        check_with_gdb(gdb, kvmm, accel, bzimage, bp, entry)
    print("PASS: gdb stub under --accel %s" % accel)


def check_with_gdb(gdb, kvmm, accel, bzimage, bp, entry):
    port = free_port()
    proc = subprocess.Popen([kvmm, "run", "--accel", accel, "--console", "none",
                             "--mem", "128M", "--gdb", "tcp:127.0.0.1:%d" % port,
                             "--gdb-wait", "--kernel", bzimage],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    time.sleep(0.3)
    cmds = ["set pagination off", "set confirm off",
            "target remote 127.0.0.1:%d" % port,
            "printf \"PC0=%lx\\n\", $pc",
            "hbreak *0x%x" % bp, "continue",
            "printf \"PC1=%lx\\n\", $pc", "stepi",
            "printf \"PC2=%lx\\n\", $pc",
            "delete", "continue"]
    args = [gdb, "-nx", "-batch"]
    for c in cmds:
        args += ["-ex", c]
    try:
        res = subprocess.run(args, capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        fail("gdb -batch timed out", proc)
    out = res.stdout + res.stderr
    if "PC0=%x" % entry not in out or "PC1=%x" % bp not in out or "PC2=" not in out \
            or "PC2=%x\n" % bp in out:
        print(out)
        fail("gdb -batch did not see the entry / breakpoint / step", proc)
    try:
        rc = proc.wait(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        fail("kvmm did not exit after gdb's continue", proc)
    if rc != 1:
        print(out)
        fail("kvmm exit status %d after gdb, expected 1" % rc, proc)


if __name__ == "__main__":
    main()
