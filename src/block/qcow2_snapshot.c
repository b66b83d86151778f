/*
 * qcow2_snapshot.c - internal snapshots of a qcow2 image (spec: "Snapshot
 * table").
 *
 * The header's snapshots_offset names a table of nb_snapshots entries,
 * each 8-byte aligned: {u64 l1_table_offset, u32 l1_size, u16 id_str_size,
 * u16 name_size, u32 date_sec, u32 date_nsec, u64 vm_clock_nsec,
 * u32 vm_state_size, u32 extra_data_size, extra data, id, name}.  Version
 * 3 entries carry at least 16 bytes of extra data: vm_state_size_large and
 * disk_size.  A snapshot's l1_table is a frozen copy of the active one; the
 * l2_tables and data clusters they share have refcounts above 1, so the
 * active image copies them before writing (COPIED is clear).
 *
 * The table is untrusted like every other part of the image: sizes are
 * bounded by QEMU's limits, every entry must fit the table, every l1_table
 * must be cluster aligned and inside the file.  The clusters of the table
 * and of the snapshots' l1_tables go into im->snapmeta so that no data
 * write lands on them, whatever a hostile l2 entry says.
 */
#include "block/qcow2_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* QEMU's QCOW_MAX_SNAPSHOTS, QCOW_MAX_SNAPSHOTS_SIZE and
 * QCOW_MAX_SNAPSHOT_EXTRA_DATA. */
#define MAX_SNAPSHOTS        65536u
#define MAX_SNAPSHOTS_BYTES  (64u << 20)
#define MAX_EXTRA_DATA       1024u
#define ENTRY_FIXED          40

void qcow2_snapshots_free(struct qimg *im)
{
	for (uint32_t i = 0; im->snaps && i < im->nb_snapshots; i++) {
		free(im->snaps[i].id);
		free(im->snaps[i].name);
		free(im->snaps[i].extra);
	}
	free(im->snaps);
	im->snaps = NULL;
}

/* Every cluster of host bytes [off, off + len) into im->snapmeta. */
static int mark(struct qimg *im, uint64_t off, uint64_t len)
{
	for (uint64_t c = off & ~(im->cluster_size - 1); c < off + len; c += im->cluster_size) {
		int r = qcow2_oset_add(&im->snapmeta, c);

		if (r)
			return r;
	}
	return 0;
}

static char *strndup_bytes(const uint8_t *p, size_t n)
{
	char *s = malloc(n + 1);

	if (s) {
		memcpy(s, p, n);
		s[n] = 0;
	}
	return s;
}

/* Parse the entry at buf[*pos] (the table is len bytes) into sn. */
static int parse_entry(struct qimg *im, const uint8_t *buf, uint64_t len, uint64_t *pos,
		       struct qcow2_snapshot *sn, uint32_t n, char *err, size_t errlen)
{
	const uint8_t *e = buf + *pos;
	uint32_t id_len, name_len, extra;
	uint64_t size;

	if (*pos > len || len - *pos < ENTRY_FIXED) {
		snprintf(err, errlen, "%s: snapshot %u runs past the snapshot table", im->path, n);
		return -EINVAL;
	}
	sn->l1_offset = be64(e);
	sn->l1_size = be32(e + 8);
	id_len = (uint32_t)e[12] << 8 | e[13];
	name_len = (uint32_t)e[14] << 8 | e[15];
	sn->date_sec = be32(e + 16);
	sn->date_nsec = be32(e + 20);
	sn->vm_clock_nsec = be64(e + 24);
	sn->vm_state_size = be32(e + 32);
	extra = be32(e + 36);
	sn->disk_size = im->size;
	if (extra > MAX_EXTRA_DATA) {
		snprintf(err, errlen, "%s: snapshot %u: extra data of %u bytes (at most %u)",
			 im->path, n, extra, MAX_EXTRA_DATA);
		return -EINVAL;
	}
	/* The last entry's padding may lie past the end of the file. */
	size = ENTRY_FIXED + (uint64_t)extra + id_len + name_len;
	if (size > len - *pos) {
		snprintf(err, errlen, "%s: snapshot %u runs past the snapshot table", im->path, n);
		return -EINVAL;
	}
	if (im->version >= 3 && extra < 16) {
		snprintf(err, errlen, "%s: snapshot %u: %u bytes of extra data (version 3 needs 16)",
			 im->path, n, extra);
		return -EINVAL;
	}
	if (extra >= 8)
		sn->vm_state_size = be64(e + ENTRY_FIXED);
	if (extra >= 16)
		sn->disk_size = be64(e + ENTRY_FIXED + 8);
	if (!cluster_aligned(im, sn->l1_offset) || !sn->l1_offset ||
	    (uint64_t)sn->l1_size * 8 > MAX_L1_BYTES || sn->l1_offset > im->file_size ||
	    sn->l1_size * 8ull > im->file_size - sn->l1_offset) {
		snprintf(err, errlen, "%s: snapshot %u: l1_table (offset 0x%" PRIx64 ", %u entries) "
			 "not cluster-aligned, too large or past the end of the file",
			 im->path, n, sn->l1_offset, sn->l1_size);
		return -EINVAL;
	}
	sn->extra_size = extra;
	sn->extra = malloc(extra ? extra : 1);
	sn->id = strndup_bytes(e + ENTRY_FIXED + extra, id_len);
	sn->name = strndup_bytes(e + ENTRY_FIXED + extra + id_len, name_len);
	if (!sn->extra || !sn->id || !sn->name)
		return -ENOMEM;
	memcpy(sn->extra, e + ENTRY_FIXED, extra);
	*pos += (size + 7) & ~7ull;
	return mark(im, sn->l1_offset, sn->l1_size * 8ull);
}

int qcow2_snapshots_load(struct qimg *im, char *err, size_t errlen)
{
	uint64_t len, pos = 0;
	uint8_t *buf;
	int r = 0;

	im->snapshots_bytes = 0;
	if (!im->nb_snapshots)
		return 0;
	if (im->nb_snapshots > MAX_SNAPSHOTS) {
		snprintf(err, errlen, "%s: %u snapshots (at most %u)", im->path,
			 im->nb_snapshots, MAX_SNAPSHOTS);
		return -EINVAL;
	}
	/* The entries' lengths are only known while parsing: read what can
	 * hold them, bounded by the limit and the file. */
	len = im->file_size - im->snapshots_offset;
	if (len > MAX_SNAPSHOTS_BYTES)
		len = MAX_SNAPSHOTS_BYTES;
	buf = malloc(len ? len : 1);
	im->snaps = calloc(im->nb_snapshots, sizeof(*im->snaps));
	if (!buf || !im->snaps) {
		free(buf);
		snprintf(err, errlen, "%s: out of memory", im->path);
		return -ENOMEM;
	}
	r = qcow2_pread(im->fd, buf, len, im->snapshots_offset);
	if (r)
		snprintf(err, errlen, "%s: cannot read the snapshot table: %s", im->path,
			 strerror(-r));
	for (uint32_t i = 0; !r && i < im->nb_snapshots; i++) {
		r = parse_entry(im, buf, len, &pos, &im->snaps[i], i, err, errlen);
		if (r == -ENOMEM)
			snprintf(err, errlen, "%s: out of memory", im->path);
	}
	free(buf);
	if (!r) {
		im->snapshots_bytes = pos;
		r = mark(im, im->snapshots_offset, pos);
		if (r)
			snprintf(err, errlen, "%s: out of memory", im->path);
	}
	return r;
}
