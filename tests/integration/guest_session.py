"""Drive a Debian guest booted by kvmm with the test initramfs in batch mode
(scripts/initramfs-init): start kvmm, wait for the init marker, send shell
lines, collect the console, wait for the exit status.

Shared by the end-to-end tests (debian_guest.py, virtio_guest.py).  Exit
codes follow meson: 0 pass, 77 skipped (reason on stdout), 1 fail."""
import os
import re
import select
import subprocess
import sys
import time

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MARKER = rb"KVMM-INIT-OK"


def skip(why):
    print(f"SKIP: {why}")
    sys.exit(77)


def fail(why, out=b""):
    print(f"FAIL: {why}")
    if out:
        print("--- console (last 3000 bytes) ---")
        print(out[-3000:].decode(errors="replace"))
    sys.exit(1)


def check_accel(accel):
    """Skip when the accelerator cannot run a stock kernel on this host."""
    if accel == "kvm":
        if os.path.exists("/sys/module/kvm_pvm"):
            skip("this host's /dev/kvm is PVM (kvm_pvm), which cannot run a stock Linux kernel")
        if not os.access("/dev/kvm", os.R_OK | os.W_OK):
            skip("/dev/kvm is missing or not accessible")


def default_accel():
    """What `--accel auto` picks for Linux here: emu on PVM or without KVM."""
    if os.path.exists("/sys/module/kvm_pvm") or not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "emu"
    return "kvm"


def asset(script):
    """Build (or find cached) a guest asset; its path, or skip."""
    p = subprocess.run([os.path.join(TOP, "scripts", script)], capture_output=True, text=True)
    if p.returncode != 0 or not p.stdout.strip():
        skip(f"{script} could not build the guest asset: {p.stderr.strip().splitlines()[-1:]}")
    return p.stdout.strip().splitlines()[-1]


class Guest:
    """One kvmm process running the test initramfs with kvmm.batch."""

    def __init__(self, cmd, stdin=subprocess.PIPE, env=None):
        self.p = subprocess.Popen(cmd, stdin=stdin, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, env=env)
        self.out = b""
        self.err = b""
        self.marker_at = 0

    def read_until(self, pattern, timeout):
        deadline = time.monotonic() + timeout
        while not re.search(pattern, self.out):
            left = deadline - time.monotonic()
            if left <= 0 or (self.p.poll() is not None and
                             not select.select([self.p.stdout], [], [], 0)[0]):
                return False
            r, _, _ = select.select([self.p.stdout, self.p.stderr], [], [], min(left, 1.0))
            for f in r:
                data = os.read(f.fileno(), 65536)
                if f is self.p.stdout:
                    self.out += data
                else:
                    self.err += data
        return True

    def wait_marker(self, timeout):
        """Seconds until the init marker; fails the test without it."""
        t0 = time.monotonic()
        if not self.read_until(MARKER, timeout):
            self.p.kill()
            fail(f"no init marker within {timeout} s (kvmm stderr: {self.stderr()})", self.out)
        self.marker_at = len(self.out)
        return time.monotonic() - t0

    def send(self, text):
        self.p.stdin.write(text.encode())
        self.p.stdin.flush()

    def run(self, script, timeout=300, done="DONE"):
        """Send shell lines, then `echo DONE`; wait for it.  The console
        text after the marker."""
        self.send(script + f"echo {done}\n")
        if not self.read_until(done.encode(), timeout):
            self.p.kill()
            fail("the shell did not answer the commands", self.out)
        return self.out[self.marker_at:].decode(errors="replace")

    def poweroff(self, timeout=120):
        """poweroff -f; kvmm's exit status."""
        self.send("poweroff -f\n")
        try:
            status = self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            fail("poweroff -f did not end kvmm", self.out)
        self.out += self.p.stdout.read() or b""
        self.err += self.p.stderr.read() or b""
        return status

    def stderr(self):
        return self.err.decode(errors="replace").strip()


def results(text):
    """Lines "Rn value" printed by a test script, as a dict."""
    return dict(re.findall(r"^(R\w+) ?(.*?)\r?$", text, re.M))
