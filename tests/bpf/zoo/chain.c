/* The zoo's C chain, built without frame pointers (and PIE, non-PIE, static, stripped):
 * main -> outer -> middle -> [blend, inlined into middle] -> inner -> hot.
 * `hidden` is static (no .dynsym entry even with -rdynamic): hot -> hidden is the leaf pair of a second path. */
#include "zoo.h"

volatile unsigned long sink;

static ZOO_NOINLINE unsigned long hidden(unsigned long n)
{
	unsigned long x = n | 1;
	for (unsigned long i = 0; i < n / 4; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		ZOO_KEEP(x);
	}
	return x;
}

ZOO_NOINLINE unsigned long hot(unsigned long n)
{
	unsigned long x = n;
	for (unsigned long i = 0; i < n; i++) {
		x = x * 6364136223846793005UL + i;
		ZOO_KEEP(x);
	}
	return x + hidden(n);
}

ZOO_NOINLINE unsigned long inner(unsigned long n)
{
	unsigned long r = hot(n);
	ZOO_KEEP(r);
	return r + 1;
}

static inline __attribute__((always_inline)) unsigned long blend(unsigned long n)
{
	unsigned long r = inner(n);
	ZOO_KEEP(r);
	return r ^ (r >> 7);
}

ZOO_NOINLINE unsigned long middle(unsigned long n)
{
	unsigned long r = blend(n);
	ZOO_KEEP(r);
	return r + 2;
}

ZOO_NOINLINE unsigned long outer(unsigned long n)
{
	unsigned long r = middle(n);
	ZOO_KEEP(r);
	return r + 3;
}

int main(int argc, char **argv)
{
	struct zoo_clock c = zoo_start(argc, argv);
	while (zoo_more(&c))
		sink += outer(200000);
	return 0;
}
