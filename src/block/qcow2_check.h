/*
 * qcow2_check.h - consistency check and repair of a qcow2 image, for
 * `kvmm img check` (qemu-img check's counts and terms).  The checker
 * itself is qcow2_check.c; the driver's view of it is in qcow2_int.h.
 */
#ifndef KVMM_BLOCK_QCOW2_CHECK_H
#define KVMM_BLOCK_QCOW2_CHECK_H

#include <stdint.h>

struct image;

/* What to repair (qemu-img check -r leaks: FIX_LEAKS; -r all: both). */
#define QCOW2_FIX_LEAKS  1u
#define QCOW2_FIX_ERRORS 2u

/* The outcome, counted as qemu-img check counts (its JSON key names). */
struct qcow2_check_result {
	uint64_t corruptions;        /* references the refcounts do not cover,
				      * wrong COPIED flags, bad offsets */
	uint64_t leaks;              /* clusters counted but not referenced */
	uint64_t check_errors;       /* the check itself could not go on */
	uint64_t corruptions_fixed, leaks_fixed;
	uint64_t image_end_offset;   /* bytes: end of the last used cluster */
	uint64_t total_clusters;     /* clusters of the virtual disk */
	uint64_t allocated_clusters, fragmented_clusters, compressed_clusters;
	                             /* of the active l1_table's data */
};

/* Check the qcow2 image `img` (opened writable, with image_opts.check,
 * when fix is not 0) and repair what `fix` asks.  One line per problem
 * goes to stderr, in qemu-img's words.  After a repair that leaves no
 * corruption the dirty and corrupt header bits are cleared.  Returns 0
 * with *res filled (problems are counts, not errors), -ENOTSUP for a raw
 * image, -EROFS when fix is asked of a read-only image, or -errno when
 * the check could not complete (res->check_errors says so too). */
int image_check(struct image *img, unsigned fix, struct qcow2_check_result *res);

#endif
