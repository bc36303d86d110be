/* SPDX-License-Identifier: GPL-2.0-only */
/* The goroutine's pprof labels, per sample of a Go process in `go_procs`: the running thread's g from its
 * TLS slot, then g->m->curg->labels. Only the label set's address and a tag go into the sample header; the
 * agent reads the labels themselves from process memory (label sets are immutable once set, and the tag
 * tells a set from a later one at the same address). Included by tracer/bpf/sampler.bpf.c.
 */
#ifndef FLEETPROF_GO_LABELS_BPF_H
#define FLEETPROF_GO_LABELS_BPF_H

#include "go_offsets.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct go_proc_info);
} go_procs SEC(".maps");

static __always_inline __u64 go_read_word(__u64 addr)
{
	__u64 v = 0;
	if (!addr || bpf_probe_read_user(&v, sizeof(v), (void *)addr))
		return 0;
	return v;
}

/* Fill the header's labels (0: none, or not a Go process) and labels_tag. */
static __always_inline void go_labels(struct sample *s, struct task_struct *task, __u32 pid)
{
	struct go_proc_info *info = bpf_map_lookup_elem(&go_procs, &pid);
	if (!info)
		return;
	__u64 tp = BPF_CORE_READ(task, thread.fsbase);
	if (!tp)
		return;
	__u64 g = go_read_word(tp + info->tls_g);
	__u64 m = g ? go_read_word(g + info->g_m) : 0;
	__u64 curg = m ? go_read_word(m + info->m_curg) : 0;
	__u64 labels = curg ? go_read_word(curg + info->g_labels) : 0;
	__u64 first = labels ? go_read_word(labels) : 0;
	if (!first)
		return;
	__u32 tag = 0;
	if (bpf_probe_read_user(&tag, sizeof(tag), (void *)(first + info->tag_offset)))
		return;
	s->hdr.labels = info->send_first ? first : labels;
	s->hdr.labels_tag = tag;
	count(STAT_GO_LABELS);
}

#endif
