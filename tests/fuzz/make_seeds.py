#!/usr/bin/env python3
"""make_seeds.py - write starting inputs for the fuzz targets.

    tests/fuzz/make_seeds.py OUTDIR

creates OUTDIR/<target>/seed-*: for the boot loaders a minimal bzImage
(boot protocol 2.15, 64-bit entry), Multiboot v1 images (a.out kludge and
ELF32), PVH ELF64 / ELF32 kernels with a XEN_ELFNOTE_PHYS32_ENTRY note; for
the device targets short guest programs in fuzz_board.c's encoding that
reach each device's interesting state (UART with interrupts on, PIT
counting, RTC periodic interrupt, fw_cfg DMA, IOAPIC entries unmasked,
...); for fuzz_virtqueue valid and hostile ring layouts (direct,
indirect, EVENT_IDX, rings in high RAM, loops, buffers in the hole, avail
index jumps, nested indirect tables, huge lengths).  Deterministic; the
files in tests/fuzz/corpus-regress/ were made by it (plus any crash
reproducers added by hand, named crash-*).
"""
import os
import struct
import sys

# ---------------------------------------------------------------- kernels


def bzimage(relocatable=True, version=0x20F, xlf=0x1, setup_sects=1,
            pm_size=0x400, init_size=0x100000, pref=0x1000000,
            cmdline_size=0x7FF, initrd_max=0x7FFFFFFF):
    setup = bytearray(((setup_sects or 4) + 1) * 512)  # 0 means 4
    hdr = struct.pack(
        '<BHIHHHHHIHIHHBBHIIIIHBBIIIBBHIIQIIQQIII',
        setup_sects,            # 0x1f1 setup_sects
        0,                      # root_flags
        pm_size // 16,          # syssize
        0, 0xFFFF, 0,           # ram_size, vid_mode, root_dev
        0xAA55,                 # 0x1fe boot_flag
        0x66EB,                 # 0x200 jump: eb 66 -> header ends 0x268
        0x53726448,             # 0x202 "HdrS"
        version,                # 0x206
        0, 0x1000,              # realmode_swtch, start_sys_seg
        0x100,                  # 0x20e kernel_version (offset from 0x200)
        0, 0x01,                # type_of_loader, loadflags LOADED_HIGH
        0, 0x100000,            # setup_move_size, code32_start
        0, 0, 0,                # ramdisk_image, ramdisk_size, bootsect_kludge
        0, 0, 0,                # heap_end_ptr, ext_loader_ver, ext_loader_type
        0, initrd_max,          # cmd_line_ptr, initrd_addr_max
        0x200000,               # kernel_alignment
        1 if relocatable else 0, 21, xlf,
        cmdline_size, 0, 0,     # cmdline_size, hardware_subarch, _data
        0, 0, 0,                # payload_offset, payload_length, setup_data
        pref, init_size, 0, 0)  # pref_address, init_size, handover, kernel_info
    setup[0x1F1:0x1F1 + len(hdr)] = hdr
    ver = b'6.1.0-fuzz (kvmm@fuzz) #1\0'
    setup[0x300:0x300 + len(ver)] = ver
    pm = bytearray(pm_size)
    pm[0x200:0x202] = b'\xeb\xfe'  # startup_64: jmp .
    return bytes(setup + pm)


def multiboot_aout(flags=0x10003, load=0x100000, bss_extra=0x1000):
    hdr_off = 0
    magic = 0x1BADB002
    body = bytearray(0x200)
    size = len(body)
    h = struct.pack('<IIIIIIII', magic, flags, (-(magic + flags)) & 0xFFFFFFFF,
                    load + hdr_off, load, 0, load + size + bss_extra,
                    load + 0x40)
    body[hdr_off:hdr_off + len(h)] = h
    body[0x40:0x42] = b'\xeb\xfe'
    return bytes(body)


def elf(is64, segments, notes=b'', entry=0x100000, note_align=4):
    """An ET_EXEC x86 ELF with PT_LOAD segments [(paddr, data, memsz)] and
    an optional PT_NOTE segment holding `notes`."""
    ehsize = 64 if is64 else 52
    phentsize = 56 if is64 else 32
    nph = len(segments) + (1 if notes else 0)
    off = ehsize + nph * phentsize
    off = (off + 15) & ~15
    phdrs, blobs = [], []
    for paddr, data, memsz in segments:
        phdrs.append((1, off, paddr, paddr, len(data), memsz, 0x1000, 7))
        blobs.append((off, data))
        off = (off + len(data) + 15) & ~15
    if notes:
        phdrs.append((4, off, 0, 0, len(notes), len(notes), note_align, 4))
        blobs.append((off, notes))
        off += len(notes)
    ident = b'\x7fELF' + bytes([2 if is64 else 1, 1, 1]) + bytes(9)
    if is64:
        eh = ident + struct.pack('<HHIQQQIHHHHHH', 2, 62, 1, entry, ehsize, 0,
                                 0, ehsize, phentsize, nph, 64, 0, 0)
    else:
        eh = ident + struct.pack('<HHIIIIIHHHHHH', 2, 3, 1, entry, ehsize, 0,
                                 0, ehsize, phentsize, nph, 40, 0, 0)
    out = bytearray(off)
    out[0:len(eh)] = eh
    for i, (typ, o, va, pa, fsz, msz, al, fl) in enumerate(phdrs):
        p = ehsize + i * phentsize
        if is64:
            ph = struct.pack('<IIQQQQQQ', typ, fl, o, va, pa, fsz, msz, al)
        else:
            ph = struct.pack('<IIIIIIII', typ, o, va, pa, fsz, msz, fl, al)
        out[p:p + len(ph)] = ph
    for o, data in blobs:
        out[o:o + len(data)] = data
    return bytes(out)


def note(name, typ, desc, align=4):
    n = name.encode() + b'\0'
    pad = lambda b: b + bytes((-len(b)) % align)
    return struct.pack('<III', len(n), len(desc), typ) + pad(n) + pad(desc)


def pvh(is64=True):
    code = b'\xeb\xfe' + bytes(0x1FE)
    entry = 0x100000
    desc = struct.pack('<Q' if is64 else '<I', entry)
    notes = note('Linux', 1, b'6.1.0\0') + note('Xen', 18, desc)
    return elf(is64, [(0x100000, code, 0x2000)], notes, entry=entry)


def multiboot_elf():
    magic, flags = 0x1BADB002, 0x3
    mb = struct.pack('<III', magic, flags, (-(magic + flags)) & 0xFFFFFFFF)
    code = mb + b'\xeb\xfe' + bytes(0x100)
    return elf(False, [(0x100000, code, 0x1000)], entry=0x10000C)

# ---------------------------------------------------------------- devices
# fuzz_board.c's encoding: op byte = kind | hi << 4.

PORTS = [0x20, 0x21, 0xa0, 0xa1, 0x4d0, 0x4d1, 0x40, 0x41, 0x42, 0x43, 0x61,
         0x60, 0x64, 0x70, 0x71, 0x80, 0xf4, 0xcf9, 0x510, 0x511, 0x514,
         0x518] + [0x3f8 + i for i in range(8)] + \
        [0x600, 0x602, 0x604, 0x608, 0x620, 0x622, 0xcf8, 0xcfc, 0xcfe,
         0xc000, 0xc008]


def port(p):
    return bytes([PORTS.index(p)]) if p in PORTS else b'\xff' + struct.pack('<H', p)


SIZE = {1: 0, 2: 1, 4: 2}


def out(p, v, size=1):
    return bytes([0 | SIZE[size] << 4]) + port(p) + struct.pack('<I', v)


def inp(p, size=1):
    return bytes([1 | SIZE[size] << 4]) + port(p)


def ioapic_reg(reg, val):
    return bytes([4]) + bytes([reg]) + struct.pack('<I', val)


def ram_write(addr, data):
    return bytes([5, 0]) + struct.pack('<H', addr) + bytes([len(data)]) + data


def dma(desc, control, length, target):
    return (bytes([6, 0]) + struct.pack('<H', desc) + struct.pack('<II', control, length)
            + bytes([0]) + struct.pack('<H', target))


def advance(ns, hi=15):
    return bytes([7 | hi << 4]) + struct.pack('<I', ns)


def jump(ns, shift=0):
    return bytes([8 | shift << 4]) + struct.pack('<I', ns)


ROUNDTRIP = bytes([9])
RESET = bytes([12])


def inject(data):
    return bytes([13, len(data)]) + data


def event(kind, a=0):
    return bytes([14 | kind << 4, a])


def fwcfg_read(key, n):
    return bytes([15]) + struct.pack('<H', key) + bytes([n])


def ecam_w(slot, reg, v, size=4):
    return (bytes([2 | (SIZE[size] | 4) << 4]) + struct.pack('<I', slot << 15 | reg)
            + struct.pack('<Q', v))


def ecam_r(slot, reg, size=4):
    return bytes([3 | (SIZE[size] | 4) << 4]) + struct.pack('<I', slot << 15 | reg)


def bar_w(off, v, size=4):
    return (bytes([2 | (SIZE.get(size, 3) | 4) << 4]) + struct.pack('<I', 1 << 31 | off)
            + struct.pack('<Q', v))


def bar_r(off, size=4):
    return bytes([3 | (SIZE.get(size, 3) | 4) << 4]) + struct.pack('<I', 1 << 31 | off)


def device_seeds():
    s = {}
    # COM1: 115200 8N1, FIFO, all interrupts, output, loopback, input.
    s['uart'] = (out(0x3fb, 0x80) + out(0x3f8, 1) + out(0x3f9, 0) + out(0x3fb, 3)
                 + out(0x3fa, 0xc7) + out(0x3fc, 0x0b) + out(0x3f9, 0x0f)
                 + out(0x3f8, ord('K')) + inp(0x3fa) + inp(0x3fd)
                 + inject(b'hello') + inp(0x3f8) + inp(0x3fa)
                 + out(0x3fc, 0x1b) + out(0x3f8, 0x55) + inp(0x3f8) + ROUNDTRIP)
    # PIT: channel 0 mode 2 at 1 kHz, channel 2 mode 3 with gate, read back.
    s['pit'] = (out(0x43, 0x34) + out(0x40, 0xa9) + out(0x40, 0x04)
                + out(0x61, 0x03) + out(0x43, 0xb6) + out(0x42, 0x00) + out(0x42, 0x10)
                + advance(5000000) + out(0x43, 0x00) + inp(0x40) + inp(0x40)
                + out(0x43, 0xe2) + inp(0x40) + inp(0x61) + event(0) + ROUNDTRIP)
    # PIC: the ICW sequence Linux sends, unmask IRQ0, PIT tick, INTA, EOI.
    s['pic'] = (out(0x20, 0x11) + out(0x21, 0x30) + out(0x21, 0x04) + out(0x21, 0x01)
                + out(0xa0, 0x11) + out(0xa1, 0x38) + out(0xa1, 0x02) + out(0xa1, 0x01)
                + out(0x21, 0xfa) + out(0xa1, 0xfe) + out(0x4d1, 0x0e)
                + out(0x43, 0x34) + out(0x40, 0x00) + out(0x40, 0x10)
                + advance(20000000) + event(0) + out(0x20, 0x20) + out(0x20, 0x0b)
                + inp(0x20) + event(7, 0x88) + event(0) + out(0xa0, 0x20) + ROUNDTRIP)
    # RTC: read the time, periodic interrupt at 1024 Hz, alarm, update.
    s['rtc'] = (out(0x70, 0x0a) + inp(0x71) + out(0x70, 0x00) + inp(0x71)
                + out(0x70, 0x0b) + out(0x71, 0x72) + out(0x70, 0x0a) + out(0x71, 0x26)
                + advance(3000000) + out(0x70, 0x0c) + inp(0x71)
                + jump(2000000000) + out(0x70, 0x0c) + inp(0x71) + ROUNDTRIP)
    # fw_cfg: signature by port, the file directory and a file by DMA.
    s['fw_cfg'] = (fwcfg_read(0x0000, 4) + fwcfg_read(0x0019, 70)
                   + ram_write(0x1000, struct.pack('>IIQ', 0x00190000 | 0x0a, 200, 0x2000))
                   + out(0x514, 0, 4) + out(0x518, 0x00100000, 4)
                   + dma(0x1100, (0x22 << 16) | 0x0a, 5000, 0x3000)
                   + dma(0x1200, 0x04, 16, 0) + dma(0x1300, 0x10, 4, 0x3000)
                   + inp(0x514, 4) + ROUNDTRIP)
    # IOAPIC: route pin 4 (COM1) level/edge, unmask, raise, EOI.
    s['ioapic'] = (ioapic_reg(0x01, 0) + ioapic_reg(0x18, 0x00008031) + ioapic_reg(0x19, 0)
                   + ioapic_reg(0x10 + 2 * 2, 0x30) + event(3, 0x84) + event(2, 0x31)
                   + bytes([4 | 1 << 4, 0x18]) + struct.pack('<I', 0x8031) + bytes([0x31])
                   + event(6) + event(3, 0x94) + event(3, 0x14)
                   + bytes([3 | 2 << 4]) + struct.pack('<H', 0x10) + ROUNDTRIP)
    # i8042: self test, config byte, keyboard reset and echo, mouse, reset line.
    s['i8042'] = (out(0x64, 0xaa) + inp(0x60) + out(0x64, 0x20) + inp(0x60)
                  + out(0x64, 0x60) + out(0x60, 0x47) + out(0x60, 0xff) + inp(0x60) + inp(0x60)
                  + out(0x60, 0xee) + inp(0x60) + out(0x64, 0xa8) + out(0x64, 0xd4)
                  + out(0x60, 0xf4) + inp(0x64) + inp(0x60) + out(0x64, 0xd0) + inp(0x60)
                  + b''.join(out(0x64, 0xd4) + out(0x60, c) for c in
                            (0xe6, 0xe7, 0xe8, 0x02, 0xe9, 0xea, 0xeb, 0xf2, 0xf3, 0x64))
                  + out(0x60, 0xf0) + out(0x60, 0x01) + out(0x60, 0xf0) + out(0x60, 0x00)
                  + inp(0x60) + inp(0x60) + inp(0x60) + inp(0x60)
                  + ROUNDTRIP + out(0x64, 0xfe))
    # ACPI PM: enable SCI and power button, press it, timer, sleep S5.
    s['acpi_pm'] = (out(0x604, 0x0001, 2) + out(0x602, 0x0121, 2) + event(4)
                    + inp(0x600, 2) + out(0x600, 0x0100, 2) + inp(0x608, 4)
                    + out(0x622, 0x0001, 2) + event(5, 0) + inp(0x620, 2)
                    + advance(5000000000 & 0xffffffff) + ROUNDTRIP + out(0x604, 0x2000, 2))
    # PCI: the host bridge by 0xCF8/0xCFC, the function by ECAM: size and
    # move BAR 0, enable decoding, MSI-X with the function masked, a
    # notification left pending, unmask, INTx with INTX_DISABLE.
    s['pci'] = (out(0xcf8, 0x80000000, 4) + inp(0xcfc, 4) + out(0xcf8, 0x80000808, 4)
                + inp(0xcfe, 2) + ecam_r(1, 0) + ecam_w(1, 0x10, 0xffffffff) + ecam_r(1, 0x10)
                + ecam_w(1, 0x10, 0xc0008000) + ecam_w(1, 0x04, 0x0407, 2)
                + bar_w(0x8008, 0x1234) + ecam_w(1, 0x10, 0xc0000000) + inp(0xc000, 4)
                + ecam_w(1, 0x52, 0xc000, 2) + bar_w(0x2000, 0xfee00000) + bar_w(0x2008, 0x41)
                + bar_w(0x200c, 0) + event(11, 0) + ecam_w(1, 0x52, 0x8000, 2)
                + event(12, 1) + ecam_w(1, 0x04, 0x0003, 2) + ecam_r(1, 0x06, 2)
                + event(12, 0) + event(11, 0) + bar_r(0x2000) + bar_r(0x2008, 8) + bar_r(0x3000, 8)
                + bar_w(0x2010, 0xfee00000fee01000, 8) + bar_w(0x201c, 1) + event(11, 1)
                + bar_r(0x3000) + bar_w(0x201c, 0) + ROUNDTRIP + RESET + ecam_r(1, 0x10))
    # Misc: POST, debug exit, 0xCF9, state loads and a machine reset.
    s['misc'] = (out(0x80, 0x55) + inp(0x80) + out(0xcf9, 0x02) + out(0xcf9, 0x06)
                 + out(0xf4, 0x10, 4) + bytes([11 | 3 << 4, 3, 0, 0, 5, 1, 9, 2, 3, 4])
                 + RESET + ROUNDTRIP)
    return s


def virtio_pci_seeds():
    """Programs for fuzz_virtio_pci.c (encoding at its top)."""
    def op(kind, hi=0):
        return bytes([kind | hi << 4])

    def cc_w(off, v, size):
        return op(0, {1: 0, 2: 1, 4: 2, 8: 3}[size]) + bytes([off]) + struct.pack('<Q', v)

    def cfg_w(reg, v, size):
        return op(5, SIZE[size]) + struct.pack('<HI', reg, v)

    def ram(addr, data):
        return op(7) + struct.pack('<I', addr) + bytes([len(data)]) + data

    def desc(i, addr, length, flags, nxt, head):
        return op(14) + bytes([i]) + struct.pack('<IIHH', addr, length, flags, nxt) + bytes([head])

    def msix_w(off, v):
        return op(9, 2) + struct.pack('<H', off) + struct.pack('<Q', v)

    notify, run, isr, isr_cfg = op(2, 1) + b'\x00', op(8), op(3), op(3, 1)
    chain = (ram(0x1000, struct.pack('<QIHH', 0x4000, 5, 1, 1) + struct.pack('<QIHH', 0x5000, 64, 2, 0))
             + ram(0x4000, b'hello') + desc(2, 0x6000, 16, 2, 0, 0))
    s = {}
    s['msix'] = (op(13, 3) + cfg_w(0x9a, 0x8000, 2) + msix_w(0, 0xfee00000) + msix_w(8, 0x41)
                 + msix_w(12, 0) + chain + notify + run + op(10, 3) + struct.pack('<H', 0x1000)
                 + msix_w(12, 1) + desc(3, 0x6000, 16, 2, 0, 3) + notify + run + msix_w(12, 0)
                 + op(11) + op(12))
    s['intx'] = (op(13) + chain + notify + run + isr + op(15, 0) + b'\x00' + isr_cfg
                 + op(4, 4 | 2) + bytes([4]) + struct.pack('<I', 7) + op(4, 2) + bytes([0]) + op(11))
    s['hostile'] = (op(13, 2) + cc_w(0x14, 0, 1) + cc_w(0x14, 11, 1) + cc_w(0x18, 3, 2)
                    + cc_w(0x1c, 1, 2) + op(1, 0) + bytes([0x14]) + op(13, 1)
                    + desc(0, 0x1000, 0xffffffff, 4, 0, 0) + notify + run
                    + desc(1, 0xc0000000, 16, 3, 1, 1) + notify + run
                    + cfg_w(0x20, 0xffffffff, 4) + cfg_w(0x04, 0, 2) + op(11) + op(12) + notify + run)
    return s


STATE_DEVICES = ['pic', 'ioapic', 'pit', 'uart_16550', 'i8042', 'cmos_rtc',
                 'fw_cfg', 'post_port', 'debug_exit', 'pci', 'reset_cf9', 'acpi_pm']


def state_seeds():
    """A stream that each device accepts or nearly accepts is hard to write
    by hand; short well-formed prefixes (version byte 1, zeros) get the
    mutator past the version check, the rest it finds by comparison
    tracing.  fw_cfg, post_port, debug_exit and reset_cf9 are exact."""
    s = {}
    for i, name in enumerate(STATE_DEVICES):
        body = {'fw_cfg': b'\x01' + struct.pack('<HIQ', 0x19, 4, 0),
                'post_port': b'\x01\x80',
                'debug_exit': b'\x01',
                'reset_cf9': b'\x01\x02'}.get(name, b'\x01' + bytes(200))
        prog = device_seeds()['misc'] if i % 2 else device_seeds()['uart']
        s[name] = bytes([i]) + struct.pack('<H', len(body)) + body + prog
    return s


def split(kernel, flags=0x08, rsdp=0xf0000, isize=0, cmdline=b'console=ttyS0',
          initrd=b'070701fuzz'):
    return (bytes([flags]) + struct.pack('<II', rsdp, isize)
            + struct.pack('<H', len(cmdline)) + cmdline
            + struct.pack('<H', len(initrd)) + initrd + kernel)


# ---------------------------------------------------------- virtqueues
# fuzz_virtqueue.c's encoding: a config byte, three addresses, operations.

VQ_NEXT, VQ_WRITE, VQ_INDIRECT = 1, 2, 4


def vq_low(off):
    return struct.pack('<BH', 0, off)


def vq_high(off):
    return struct.pack('<BH', 1, off)


def vq_hole_minus(off):
    return struct.pack('<BH', 2, off)


def vq_raw(addr):
    return struct.pack('<BQ', 3, addr)


def vq_desc(index, addr, length, flags=0, nxt=0, table=None):
    where = b'\x00' if table is None else b'\x01'
    tail = b'' if table is None else table
    return (b'\x01' + where + struct.pack('<H', index) + tail + addr +
            struct.pack('<IHH', length, flags, nxt))


def vq_offer(head, step=1):
    return struct.pack('<BHB', 2, head, step)


def vq_pop_push(written):
    return struct.pack('<BI', 3, written)


VQ_POP_UNPOP, VQ_NOTIFY, VQ_DISABLE, VQ_ENABLE, VQ_REENABLE, VQ_HOLD = (
    b'\x04', b'\x05', b'\x06', b'\x07', b'\x08', b'\x0a')


def vq_event(which, value):
    return struct.pack('<BBH', 9, which, value)


def vq_seed(size_log2, ops, event_idx=False, indirect=False,
            rings=(vq_low(0), vq_low(0x1000), vq_low(0x2000))):
    cfg = size_log2 | (8 if event_idx else 0) | (16 if indirect else 0)
    return bytes([cfg]) + b''.join(rings) + b''.join(ops)


def virtqueue_seeds():
    two = [vq_desc(0, vq_low(0x4000), 16, VQ_NEXT, 1),
           vq_desc(1, vq_low(0x5000), 64, VQ_WRITE)]
    table = vq_low(0x6000)
    indirect = [vq_desc(0, vq_low(0x4000), 8, VQ_NEXT, 2, table=table),
                vq_desc(2, vq_high(0x100), 32, VQ_WRITE | VQ_NEXT, 1, table=table),
                vq_desc(1, vq_hole_minus(0x10), 16, VQ_WRITE, table=table),
                vq_desc(3, table, 48, VQ_INDIRECT)]
    return {
        'direct': vq_seed(3, two + [vq_offer(0), vq_pop_push(64), VQ_NOTIFY,
                                    vq_offer(0), VQ_POP_UNPOP, vq_pop_push(10),
                                    VQ_NOTIFY]),
        'event-idx': vq_seed(4, two + [vq_event(1, 1), vq_offer(0), vq_offer(0),
                                       VQ_DISABLE, vq_pop_push(3), VQ_ENABLE,
                                       vq_pop_push(70), VQ_NOTIFY, VQ_NOTIFY],
                             event_idx=True),
        'indirect': vq_seed(3, indirect + [vq_offer(3), vq_pop_push(40),
                                           VQ_NOTIFY, VQ_REENABLE, vq_offer(3),
                                           vq_pop_push(0)],
                            event_idx=True, indirect=True),
        'high-rings': vq_seed(7, two + [vq_offer(0), vq_pop_push(64)],
                              rings=(vq_high(0), vq_high(0x800), vq_high(0xa00))),
        'loop': vq_seed(3, [vq_desc(0, vq_low(0x4000), 4, VQ_NEXT, 1),
                            vq_desc(1, vq_low(0x4000), 4, VQ_NEXT, 0),
                            vq_offer(0), vq_pop_push(0), VQ_REENABLE]),
        'hole': vq_seed(3, [vq_desc(0, vq_hole_minus(8), 16, VQ_WRITE),
                            vq_offer(0), vq_pop_push(16),
                            vq_desc(0, vq_raw(0xfeb00000), 4),
                            VQ_REENABLE, vq_offer(0), vq_pop_push(0)]),
        'avail-jump': vq_seed(2, two + [vq_offer(0, 5), vq_pop_push(0),
                                        VQ_REENABLE, vq_offer(9), vq_pop_push(0)]),
        'nested-indirect': vq_seed(3, [
            vq_desc(0, vq_low(0x7000), 16, VQ_INDIRECT, table=table),
            vq_desc(0, table, 16, VQ_INDIRECT | VQ_NEXT, 1),
            vq_offer(0), vq_pop_push(0)], indirect=True),
        'huge': vq_seed(1, [vq_desc(0, vq_low(0), 0xffffffff, VQ_WRITE),
                            vq_offer(0), vq_pop_push(0xffffffff)]),
        'in-flight-full': vq_seed(2, two + [vq_offer(0), VQ_HOLD] * 5),
        'in-flight-rolling': vq_seed(4, two + [vq_offer(0), VQ_HOLD] * 12 +
                                     [vq_offer(0), vq_pop_push(64)]),
    }


# ------------------------------------------------------------ virtio-blk
# fuzz_virtio_blk.c's encoding: a config byte, then operations.

def vblk_req(q=0, tsel=0, ssel=0, layout=0, segs=()):
    """REQ: segs are (u16 length selector, payload bytes)."""
    b = bytes([0, q, tsel, ssel, layout, len(segs)])
    for sel, payload in segs:
        b += struct.pack('<H', sel) + payload
    return b


def vblk_zap(sector, num, flags=0):
    return struct.pack('<QII', sector, num, flags)


def vblk_seeds():
    kick = bytes([3, 0])
    rd = vblk_req(tsel=0, ssel=2 << 2, segs=[(8, b'')])
    wr = vblk_req(tsel=1, ssel=3 << 2, layout=4, segs=[(1, bytes(range(64)))])
    fl = vblk_req(tsel=2)
    gid = vblk_req(tsel=3, segs=[(0x8014, b'')])
    disc = vblk_req(tsel=4, segs=[(0x8010, vblk_zap(8, 16))])
    wz = vblk_req(tsel=5, segs=[(0x8020, vblk_zap(4, 4, 1) + vblk_zap(40, 8))])
    return {
        'read': b'\x00' + rd + kick,
        'write-read': b'\x00' + wr + kick + rd + kick,
        'flush': b'\x00' + wr + fl + kick,
        'get-id': b'\x00' + gid + kick,
        'discard': b'\x00' + disc + kick,
        'write-zeroes': b'\x00' + wz + kick,
        'power-cut': b'\x00' + wr + kick + fl + kick + bytes([5]) + wr + kick
                     + bytes([6]) + rd + kick,
        'indirect-split': b'\x00' + vblk_req(tsel=0, ssel=1, layout=16 | 1,
                                             segs=[(2, b''), (0x8100, b'')]) + kick,
        'read-only': b'\x01' + wr + kick + rd + kick,
        'no-status': b'\x40' + vblk_req(tsel=0, layout=8, segs=[(1, b'')]) + kick
                     + bytes([7]) + rd + kick,
        'two-queues': b'\x20' + vblk_req(q=1, tsel=1, layout=4, segs=[(1, bytes(64))])
                      + bytes([3, 1]) + rd + kick,
        'no-event-idx-no-flush': b'\x0a' + wr + kick + fl + kick,
        'bad-index': b'\x00' + rd + bytes([9, 0]) + struct.pack('<H', 999) + kick,
    }


def main():
    outdir = sys.argv[1]
    kernels = {
        'bzimage': bzimage(),
        'bzimage-fixed': bzimage(relocatable=False, version=0x20C, setup_sects=0),
        'multiboot-aout': multiboot_aout(),
        'multiboot-elf': multiboot_elf(),
        'pvh64': pvh(True),
        'pvh32': pvh(False),
    }
    seeds = {
        'fuzz_boot_load': kernels,
        'fuzz_boot_split': {
            'bzimage-initrd': split(kernels['bzimage']),
            'bzimage-small-ram': split(kernels['bzimage-fixed'], flags=0x0b, isize=0x3000),
            'multiboot-module': split(kernels['multiboot-aout'], flags=0x08),
            'multiboot-elf-nocmd': split(kernels['multiboot-elf'], flags=0x12),
            'pvh-initrd': split(kernels['pvh64'], flags=0x0a),
            'pvh32-dir-initrd': split(kernels['pvh32'], flags=0x28),
        },
        'fuzz_devices': device_seeds(),
        'fuzz_state_load': state_seeds(),
        'fuzz_virtio_pci': virtio_pci_seeds(),
        'fuzz_virtqueue': virtqueue_seeds(),
        'fuzz_virtio_blk': vblk_seeds(),
    }
    for target, files in seeds.items():
        d = os.path.join(outdir, target)
        os.makedirs(d, exist_ok=True)
        for name, data in files.items():
            with open(os.path.join(d, 'seed-' + name), 'wb') as f:
                f.write(data)


if __name__ == '__main__':
    main()
