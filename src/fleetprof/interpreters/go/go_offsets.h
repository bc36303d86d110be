/* SPDX-License-Identifier: GPL-2.0-only OR Apache-2.0 */
/* Where a Go process keeps the running goroutine's pprof labels: the one source of the layout the BPF
 * label reader (go_labels.bpf.h) and the agent (interpreters/go/procinfo.py, its mirror) share.
 *
 * g (the running goroutine, or g0 on the system stack) sits at a fixed offset from the thread pointer;
 * g->m->curg is the user goroutine whose labels pprof charges a sample to; curg->labels points at its
 * label set (a *labelMap), whose first word is the map (Go <= 1.23) or the label slice's array (1.24+).
 */
#ifndef FLEETPROF_GO_OFFSETS_H
#define FLEETPROF_GO_OFFSETS_H

struct go_proc_info {
	__s64 tls_g;        /* g's address relative to the thread pointer (fs base): -8 for Go's own TLS */
	__u32 g_m;          /* runtime.g.m */
	__u32 m_curg;       /* runtime.m.curg */
	__u32 g_labels;     /* runtime.g.labels */
	__u32 tag_offset;   /* a u32 read at the label set's first word + this: tells a reused address from
	                     * the set first seen there (the map's random hash0; the first key's pointer) */
	__u32 send_first;   /* 1: the header gets the set's first word (the map: one read less for the agent);
	                     * 0: the set's address (the slice form's length sits beside its array) */
	__u32 reserved;
};                      /* 32 bytes */

#endif
