/*
 * cmos_rtc.h - the MC146818 real-time clock and its 128 bytes of CMOS RAM.
 *
 * Index port PC_RTC_PORT (0x70), data port 0x71, interrupt PC_IRQ_RTC (8).
 * Guests read the wall-clock time from it at boot (Linux's
 * mc146818_get_time, firmware), use its periodic/alarm/update interrupts
 * (Linux's rtc-cmos, /dev/rtc0), and old firmware reads the memory size from
 * the CMOS bytes.  See cmos_rtc.c for the model; datasheet: Motorola
 * MC146818A.
 */
#ifndef KVMM_HW_CMOS_RTC_H
#define KVMM_HW_CMOS_RTC_H

#include <stdint.h>

struct vm;
struct cmos_rtc;

/* CMOS offsets the board may want to fill (values follow QEMU's PC). */
#define CMOS_BASE_MEM_LO    0x15 /* base memory, KiB (640) */
#define CMOS_BASE_MEM_HI    0x16
#define CMOS_EXT_MEM_LO     0x17 /* memory above 1 MiB, KiB, max 65535 */
#define CMOS_EXT_MEM_HI     0x18
#define CMOS_EXT_MEM2_LO    0x30 /* the same value again */
#define CMOS_EXT_MEM2_HI    0x31
#define CMOS_CENTURY        0x32 /* BCD/binary as register B says (ACPI FADT) */
#define CMOS_MEM_ABOVE_16M_LO 0x34 /* RAM between 16 MiB and 4 GiB, 64 KiB units */
#define CMOS_MEM_ABOVE_16M_HI 0x35
#define CMOS_MEM_ABOVE_4G_LO  0x5b /* RAM above 4 GiB, 64 KiB units, 3 bytes */
#define CMOS_MEM_ABOVE_4G_MID 0x5c
#define CMOS_MEM_ABOVE_4G_HI  0x5d
#define CMOS_NR_CPUS_MINUS_1  0x5f /* SeaBIOS without fw_cfg */

/* Put the RTC on the board: claims ports 0x70-0x71 on vm->pio, drives ISA
 * line 8, adds itself to the machine.  The clock starts at the host's
 * CLOCK_REALTIME (UTC) and runs on vm_clock_ns().  `ram_size` (bytes) is
 * the guest RAM size, split around the PCI hole as in memory.h, for the
 * memory-size bytes above; CMOS_NR_CPUS_MINUS_1 comes from vm->nr_cpus.
 * *out (may be NULL) receives the device, owned by the machine.
 * Returns 0, -ENOMEM, -ENOSPC (device table full) or -EBUSY (ports taken;
 * the inert device then stays in the device list until vm_destroy()). */
int cmos_rtc_create(struct vm *vm, uint64_t ram_size, struct cmos_rtc **out);

/* Set / get a CMOS RAM byte from the board (boot order bytes, equipment
 * byte, ...).  `index` must be 0x0e..0x7f other than CMOS_CENTURY: the
 * clock and control registers below 0x0e are the guest's.  Returns 0 or
 * -EINVAL.  Callable any time (takes the device lock). */
int cmos_rtc_set_byte(struct cmos_rtc *rtc, unsigned index, uint8_t value);
int cmos_rtc_get_byte(struct cmos_rtc *rtc, unsigned index, uint8_t *value);

#endif
