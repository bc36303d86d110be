/* Issue 2's frame-pointer chain: main -> outer -> middle -> inner -> hot, each a real call. */
#include "zoo.h"

volatile unsigned long sink;

ZOO_NOINLINE unsigned long hot(unsigned long n)
{
	unsigned long x = n;
	for (unsigned long i = 0; i < n; i++) {
		x = x * 6364136223846793005UL + i;
		ZOO_KEEP(x);
	}
	return x;
}

ZOO_NOINLINE unsigned long inner(unsigned long n)
{
	unsigned long r = hot(n);
	ZOO_KEEP(r);
	return r + 1;
}

ZOO_NOINLINE unsigned long middle(unsigned long n)
{
	unsigned long r = inner(n);
	ZOO_KEEP(r);
	return r + 2;
}

ZOO_NOINLINE unsigned long outer(unsigned long n)
{
	unsigned long r = middle(n);
	ZOO_KEEP(r);
	return r + 3;
}

#ifndef ZOO_CHAIN_ONLY /* forks.c includes the chain without this main */
int main(int argc, char **argv)
{
	struct zoo_clock c = zoo_start(argc, argv);
	while (zoo_more(&c))
		sink += outer(200000);
	return 0;
}
#endif
