#!/usr/bin/env python3
"""decode_board.py - print a fuzz_devices / fuzz_state_load input as the
guest operations fuzz_board.c will play, for triaging a finding.

    tests/fuzz/decode_board.py FILE              (fuzz_devices input)
    tests/fuzz/decode_board.py --state FILE      (fuzz_state_load input)

Keep in step with the encoding at the top of fuzz_board.c.
"""
import struct
import sys

PORTS = [0x20, 0x21, 0xa0, 0xa1, 0x4d0, 0x4d1, 0x40, 0x41, 0x42, 0x43, 0x61,
         0x60, 0x64, 0x70, 0x71, 0x80, 0xf4, 0xcf9, 0x510, 0x511, 0x514,
         0x518] + [0x3f8 + i for i in range(8)] + \
        [0x600, 0x602, 0x604, 0x608, 0x620, 0x622, 0xcf8, 0xcfc, 0xcfe,
         0xc000, 0xc008]
DEVICES = ['pic', 'ioapic', 'pit', 'uart_16550', 'i8042', 'cmos_rtc',
           'fw_cfg', 'post_port', 'debug_exit', 'pci', 'reset_cf9', 'acpi_pm']
RAM = 256 * 1024
IOAPIC = 0xfec00000
EVENTS = ['INTA if INTR', 'INTA', 'IOAPIC EOI', 'GSI level', 'power button',
          'GPE raise', 'toggle EOI-on-deliver', 'PIC pin', 'IOAPIC pin',
          'CMOS set/get', 'fw_cfg add file', 'PCI MSI-X notify', 'PCI INTx']


class In:
    def __init__(self, data):
        self.d, self.i = data, 0

    def left(self):
        return len(self.d) - self.i

    def take(self, n):
        b = self.d[self.i:self.i + n]
        self.i += len(b)
        return b

    def u(self, n):
        return int.from_bytes(self.take(n).ljust(n, b'\0'), 'little')


def port(r):
    s = r.u(1)
    if s < len(PORTS):
        return PORTS[s]
    if s == 0xff:
        return r.u(2)
    return (PORTS[s % len(PORTS)] + (s // len(PORTS)) % 3 - 1) & 0xffff


def addr(r):
    m = r.u(1) & 3
    if m == 0:
        return r.u(2)
    if m == 1:
        return r.u(4) % (RAM + 0x2000)
    if m == 2:
        return RAM - (r.u(1) & 0x3f)
    return r.u(8)


def ioapic_addr(r):
    off = r.u(2)
    return IOAPIC - 0x3800 + (off & 0x7fff) if off & 0x8000 else IOAPIC + (off & 0xfff)


PCI_MMIO, PCI_ECAM = 0xc0000000, 0xe0000000


def mmio_addr(r, hi):
    if not hi & 4:
        return ioapic_addr(r)
    off = r.u(4)
    return PCI_MMIO + (off & 0xffff) if off & (1 << 31) else PCI_ECAM + (off & 0x1fffff)


def decode(r):
    while r.left():
        op = r.u(1)
        k, hi = op & 15, op >> 4
        size = [1, 2, 4, 1][hi & 3]
        if k == 0:
            p = port(r)
            print(f'out{size} 0x{p:x} <- 0x{r.u(4) & ((1 << 8 * size) - 1):x}')
        elif k == 1:
            print(f'in{size} 0x{port(r):x}')
        elif k == 2:
            a = mmio_addr(r, hi)
            print(f'mmio write{1 << (hi & 3)} 0x{a:x} <- 0x{r.u(8):x}')
        elif k == 3:
            print(f'mmio read{1 << (hi & 3)} 0x{mmio_addr(r, hi):x}')
        elif k == 4:
            sel, v = r.u(1), r.u(4)
            eoi = f'; EOI 0x{r.u(1):x}' if hi & 1 else ''
            print(f'ioapic reg 0x{sel:x} <- 0x{v:x}{eoi}')
        elif k == 5:
            a = addr(r)
            data = r.take(r.u(1))
            print(f'ram 0x{a:x} <- {data.hex()}')
        elif k == 6:
            d, c, n, t = addr(r), r.u(4), r.u(4), addr(r)
            if not hi & 2:
                n %= RAM + 0x100
            print(f'fw_cfg dma desc@0x{d:x} control=0x{c:x} len=0x{n:x} '
                  f'addr=0x{t:x} ({"64-bit" if hi & 1 else "2x32-bit"} kick)')
        elif k == 7:
            print(f'clock advance {r.u(4) & ((2 << (2 * hi + 1)) - 1)} ns (stepping timers)')
        elif k == 8:
            print(f'clock jump {r.u(4) << hi} ns, one timer run')
        elif k == 9:
            print('save/load/save every device')
        elif k == 10:
            i = r.u(1)
            data = r.take(r.u(1))
            print(f'load {DEVICES[i % len(DEVICES)]} <- {data.hex()}')
        elif k == 11:
            i = r.u(1)
            muts = [(r.u(1), r.u(1)) for _ in range(hi + 1)]
            print(f'load mutated save of {DEVICES[i % len(DEVICES)]}: '
                  + ', '.join(f'[{p}]^=0x{x:x}' for p, x in muts))
        elif k == 12:
            print('reset every device')
        elif k == 13:
            print(f'console input {r.take(r.u(1))!r}')
        elif k == 14:
            a = r.u(1)
            extra = ''
            if hi == 9:
                extra = f' value 0x{r.u(1):x}'
            elif hi == 10:
                name = r.take(a % 64)
                extra = f' name {name!r} len {r.u(2)}'
            print(f'event {EVENTS[hi] if hi < len(EVENTS) else "reset every device"}'
                  f' arg 0x{a:x}{extra}')
        else:
            key, n = r.u(2), r.u(1)
            print(f'fw_cfg select 0x{key:x}, {n} data reads')


def main():
    args = sys.argv[1:]
    state = args and args[0] == '--state'
    if state:
        args = args[1:]
    r = In(open(args[0], 'rb').read())
    if state:
        i = r.u(1)
        data = r.take(r.u(2))
        print(f'load {DEVICES[i % len(DEVICES)]} <- {data.hex()}')
    decode(r)


if __name__ == '__main__':
    main()
