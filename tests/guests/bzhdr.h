/*
 * bzhdr.h - the boot sector area and setup header of the test bzImages, as
 * an assembler macro used by bzimage.S and minimal.S.  Field offsets follow
 * Documentation/arch/x86/boot.rst; `.org` pins each group.  The values the
 * linker computes: setup_sects (__bz_setup_sects), syssize (__bz_syssize,
 * 16-byte units of the protected-mode part) and init_size (__bz_init_size,
 * the memory the image needs from the load address, .bss included).
 *
 * \start16 is the real-mode code a BIOS-style loader jumps to (CS = setup
 * segment + 0x20, IP = 0, i.e. offset 0x200: the jump over the header).
 */
	.macro BZ_SETUP_HEADER start16
	.org 0x1f1
	.byte __bz_setup_sects          /* 0x1f1 setup_sects */
	.word 0                         /* 0x1f2 root_flags */
	.long __bz_syssize              /* 0x1f4 syssize */
	.word 0                         /* 0x1f8 ram_size */
	.word 0xffff                    /* 0x1fa vid_mode: normal */
	.word 0                         /* 0x1fc root_dev */
	.word 0xaa55                    /* 0x1fe boot_flag */
	.org 0x200
	.byte 0xeb, \start16 - 1f       /* 0x200 jmp short over the header */
1:	.ascii "HdrS"                   /* 0x202 header */
	.word BZ_PROTOCOL_VERSION       /* 0x206 version */
	.long 0                         /* 0x208 realmode_swtch */
	.word 0x1000                    /* 0x20c start_sys_seg (obsolete) */
	.word 0                         /* 0x20e kernel_version: none, not Linux */
	.byte 0                         /* 0x210 type_of_loader (written by the loader) */
	.byte BZ_LOADFLAGS              /* 0x211 loadflags */
	.word 0x8000                    /* 0x212 setup_move_size */
	.long GUEST_LOAD_ADDR           /* 0x214 code32_start */
	.long 0                         /* 0x218 ramdisk_image */
	.long 0                         /* 0x21c ramdisk_size */
	.long 0                         /* 0x220 bootsect_kludge */
	.word 0                         /* 0x224 heap_end_ptr */
	.byte 0                         /* 0x226 ext_loader_ver */
	.byte 0                         /* 0x227 ext_loader_type */
	.long 0                         /* 0x228 cmd_line_ptr */
	.long BZ_INITRD_ADDR_MAX        /* 0x22c initrd_addr_max */
	.long BZ_KERNEL_ALIGN           /* 0x230 kernel_alignment */
	.byte 0                         /* 0x234 relocatable_kernel: no, load at 1 MiB */
	.byte 21                        /* 0x235 min_alignment (log2) */
	.word BZ_XLOADFLAGS             /* 0x236 xloadflags */
	.long BZ_CMDLINE_SIZE           /* 0x238 cmdline_size */
	.long 0                         /* 0x23c hardware_subarch: PC */
	.quad 0                         /* 0x240 hardware_subarch_data */
	.long 0                         /* 0x248 payload_offset */
	.long 0                         /* 0x24c payload_length */
	.quad 0                         /* 0x250 setup_data */
	.quad GUEST_LOAD_ADDR           /* 0x258 pref_address */
	.long __bz_init_size            /* 0x260 init_size */
	.long 0                         /* 0x264 handover_offset: no EFI */
	.long 0                         /* 0x268 kernel_info_offset */
	.org 0x26c
	.endm

#define BZ_HDR_END 0x26c
