/*
 * size.h - parsing sizes given on the command line.
 */
#ifndef KVMM_UTIL_SIZE_H
#define KVMM_UTIL_SIZE_H

#include <stdint.h>

/* Parse "512", "512M", "2G", "1536k", "1T" (case-insensitive, optional
 * trailing "B" or "iB"; powers of 1024) into bytes.  A bare number is in
 * `default_unit` bytes (QEMU's --mem takes MiB).  Returns 0, or -EINVAL for
 * syntax errors and -ERANGE when the value overflows 64 bits. */
int size_parse(const char *s, uint64_t default_unit, uint64_t *bytes);

#endif
