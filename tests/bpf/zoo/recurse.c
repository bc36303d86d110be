/* Recursion 150 deep: main -> recurse x 150 -> burn. */
#include "zoo.h"

#define DEPTH 150

volatile unsigned long sink;

ZOO_NOINLINE unsigned long burn(unsigned long n)
{
	unsigned long x = n;
	for (unsigned long i = 0; i < n; i++) {
		x = x * 6364136223846793005UL + i;
		ZOO_KEEP(x);
	}
	return x;
}

ZOO_NOINLINE unsigned long recurse(int depth, unsigned long n)
{
	unsigned long r = depth <= 1 ? burn(n) : recurse(depth - 1, n);
	ZOO_KEEP(r);
	return r + (unsigned long)depth;
}

int main(int argc, char **argv)
{
	struct zoo_clock c = zoo_start(argc, argv);
	while (zoo_more(&c))
		sink += recurse(DEPTH, 200000);
	return 0;
}
