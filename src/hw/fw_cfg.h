/*
 * fw_cfg.h - QEMU's firmware configuration interface (fw_cfg).
 *
 * The channel through which firmware (SeaBIOS, OVMF) and direct-boot loaders
 * learn about the machine: RAM size, CPU count, the e820 map, ACPI tables,
 * the kernel, initrd and command line.  Items are byte blobs selected by a
 * 16-bit key; "files" have names and appear in a directory.  Specification:
 * QEMU docs/specs/fw_cfg.rst; key numbers from QEMU's
 * include/standard-headers/linux/qemu_fw_cfg.h (an ABI shared with
 * firmware).
 *
 * Guest interface on the PC (PC_FW_CFG_PORT, PC_FW_CFG_DMA_PORT):
 *   0x510  16-bit write: selector      0x511  8-bit read: data
 *   0x514  DMA address, big-endian, 8 bytes (two 32-bit writes, high
 *          first; the write of the low half at 0x518 starts the transfer);
 *          reads return the signature "QEMU CFG".
 */
#ifndef KVMM_HW_FW_CFG_H
#define KVMM_HW_FW_CFG_H

#include <stddef.h>
#include <stdint.h>

struct vm;
struct fw_cfg;

/* Selector keys (qemu_fw_cfg.h) */
#define FW_CFG_SIGNATURE      0x00 /* "QEMU" */
#define FW_CFG_ID             0x01 /* u32 LE feature bits: 1 traditional, 2 DMA */
#define FW_CFG_UUID           0x02
#define FW_CFG_RAM_SIZE       0x03 /* u64 LE, bytes */
#define FW_CFG_NOGRAPHIC      0x04
#define FW_CFG_NB_CPUS        0x05 /* u16 LE, CPUs present at boot */
#define FW_CFG_MACHINE_ID     0x06
#define FW_CFG_KERNEL_ADDR    0x07
#define FW_CFG_KERNEL_SIZE    0x08
#define FW_CFG_KERNEL_CMDLINE 0x09
#define FW_CFG_INITRD_ADDR    0x0a
#define FW_CFG_INITRD_SIZE    0x0b
#define FW_CFG_BOOT_DEVICE    0x0c
#define FW_CFG_NUMA           0x0d
#define FW_CFG_BOOT_MENU      0x0e
#define FW_CFG_MAX_CPUS       0x0f /* u16 LE, CPUs possible (hotplug) */
#define FW_CFG_KERNEL_ENTRY   0x10
#define FW_CFG_KERNEL_DATA    0x11
#define FW_CFG_INITRD_DATA    0x12
#define FW_CFG_CMDLINE_ADDR   0x13
#define FW_CFG_CMDLINE_SIZE   0x14
#define FW_CFG_CMDLINE_DATA   0x15
#define FW_CFG_SETUP_ADDR     0x16
#define FW_CFG_SETUP_SIZE     0x17
#define FW_CFG_SETUP_DATA     0x18
#define FW_CFG_FILE_DIR       0x19 /* BE32 count + struct fw_cfg_file[] */
#define FW_CFG_FILE_FIRST     0x20 /* first key given to files */
#define FW_CFG_WRITE_CHANNEL  0x4000
#define FW_CFG_ARCH_LOCAL     0x8000
/* x86 arch-local keys */
#define FW_CFG_ACPI_TABLES    (FW_CFG_ARCH_LOCAL + 0)
#define FW_CFG_SMBIOS_ENTRIES (FW_CFG_ARCH_LOCAL + 1)
#define FW_CFG_IRQ0_OVERRIDE  (FW_CFG_ARCH_LOCAL + 2)
#define FW_CFG_E820_TABLE     (FW_CFG_ARCH_LOCAL + 3)
#define FW_CFG_HPET           (FW_CFG_ARCH_LOCAL + 4)

/* FW_CFG_ID feature bits */
#define FW_CFG_VERSION     0x01
#define FW_CFG_VERSION_DMA 0x02

/* DMA control bits (FWCfgDmaAccess.control, big-endian in guest RAM) */
#define FW_CFG_DMA_CTL_ERROR  0x01
#define FW_CFG_DMA_CTL_READ   0x02
#define FW_CFG_DMA_CTL_SKIP   0x04
#define FW_CFG_DMA_CTL_SELECT 0x08
#define FW_CFG_DMA_CTL_WRITE  0x10

/* "QEMU CFG", read from the DMA address register */
#define FW_CFG_DMA_SIGNATURE 0x51454d5520434647ull

/* A file's name holds at most this many bytes including the NUL. */
#define FW_CFG_MAX_FILE_PATH 56
/* Files get keys FW_CFG_FILE_FIRST .. 0x3fff. */
#define FW_CFG_MAX_FILES (0x4000 - FW_CFG_FILE_FIRST)

/* Put fw_cfg on the board: claims PC_FW_CFG_PORT (2 ports) and
 * PC_FW_CFG_DMA_PORT (8 ports) on vm->pio, adds the device to the machine,
 * and fills the items every guest expects: FW_CFG_SIGNATURE, FW_CFG_ID
 * (traditional | DMA), FW_CFG_RAM_SIZE (vm->mem.ram_size), FW_CFG_NB_CPUS
 * and FW_CFG_MAX_CPUS (vm->nr_cpus) and an empty FW_CFG_FILE_DIR.  *out
 * (may be NULL) receives the device, owned by the machine.
 * Returns 0, -ENOMEM, -ENOSPC (device table full) or -EBUSY (ports taken;
 * the inert device then stays in the device list until vm_destroy()). */
int fw_cfg_create(struct vm *vm, struct fw_cfg **out);

/* Set item `key` to a copy of data[0..len) (data may be NULL when len is
 * 0), replacing any previous contents.  `key` is a generic key below
 * FW_CFG_FILE_FIRST other than FW_CFG_FILE_DIR, or an arch-local key
 * FW_CFG_ARCH_LOCAL + n with n < FW_CFG_FILE_FIRST; files use
 * fw_cfg_add_file().  Returns 0, -EINVAL (bad key, len > 4 GiB - 1) or
 * -ENOMEM.  Callable while the guest runs (takes the device lock). */
int fw_cfg_add_bytes(struct fw_cfg *fw, uint16_t key, const void *data,
		     size_t len);

/* Little-endian integer items (FW_CFG_KERNEL_SIZE and friends): v stored
 * as 2, 4 or 8 bytes LE under `key`.  Same keys and errors as
 * fw_cfg_add_bytes(). */
int fw_cfg_add_u16(struct fw_cfg *fw, uint16_t key, uint16_t v);
int fw_cfg_add_u32(struct fw_cfg *fw, uint16_t key, uint32_t v);
int fw_cfg_add_u64(struct fw_cfg *fw, uint16_t key, uint64_t v);

/* Add a named file ("etc/e820", "etc/acpi/tables", "opt/...") holding a
 * copy of data[0..len), listed in FW_CFG_FILE_DIR with the next free key
 * (FW_CFG_FILE_FIRST, +1, ... in order of adding).  Adding an existing name
 * again replaces its contents and keeps its key.  Returns 0, -EINVAL (empty name, len > 4 GiB - 1),
 * -ENAMETOOLONG (name longer than FW_CFG_MAX_FILE_PATH - 1 bytes), -ENOSPC
 * (FW_CFG_MAX_FILES reached) or -ENOMEM. */
int fw_cfg_add_file(struct fw_cfg *fw, const char *name, const void *data,
		    size_t len);

#endif
