/* Time in libc: main -> copy_buffers -> memcpy (libc's ifunc-selected variant is the leaf);
 * main -> sort_records -> qsort (libc) -> compare_records (the callback is the leaf, qsort in the middle). */
#include <stdint.h>
#include <stdio.h>

#include "zoo.h"

#define COPY_BYTES (16UL << 20)
#define RECORDS 20000

volatile unsigned long sink;

ZOO_NOINLINE void prefault(char *p, unsigned long n)
{
	for (unsigned long i = 0; i < n; i += 4096)
		p[i] = (char)i;
}

ZOO_NOINLINE unsigned long copy_buffers(char *dst, const char *src)
{
	memcpy(dst, src, COPY_BYTES);
	ZOO_KEEP(dst);
	memcpy((char *)src, dst, COPY_BYTES);
	return (unsigned long)(unsigned char)dst[COPY_BYTES / 2];
}

ZOO_NOINLINE int compare_records(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	for (int i = 0; i < 8; i++) {
		x = (x ^ (x >> 29)) * 0xbf58476d1ce4e5b9ULL;
		y = (y ^ (y >> 29)) * 0xbf58476d1ce4e5b9ULL;
	}
	return (x > y) - (x < y);
}

ZOO_NOINLINE unsigned long sort_records(uint64_t *records, unsigned long seed)
{
	for (unsigned long i = 0; i < RECORDS; i++)
		records[i] = (i + seed) * 0x9e3779b97f4a7c15ULL;
	qsort(records, RECORDS, sizeof(*records), compare_records);
	return records[RECORDS / 2];
}

int main(int argc, char **argv)
{
	char *src = malloc(COPY_BYTES), *dst = malloc(COPY_BYTES);
	uint64_t *records = malloc(RECORDS * sizeof(*records));
	if (!src || !dst || !records)
		return 1;
	prefault(src, COPY_BYTES);
	prefault(dst, COPY_BYTES);
	struct zoo_clock c = zoo_start(argc, argv);
	while (zoo_more(&c)) {
		sink += copy_buffers(dst, src);
		sink += sort_records(records, (unsigned long)c.done);
	}
	return 0;
}
