/* A library the dl_host loads with dlopen after it started: plugin_entry -> plugin_mid -> plugin_leaf. */
#include "zoo.h"

ZOO_NOINLINE unsigned long plugin_leaf(unsigned long n)
{
	unsigned long x = n;
	for (unsigned long i = 0; i < n; i++) {
		x = x * 6364136223846793005UL + 1442695040888963407UL;
		ZOO_KEEP(x);
	}
	return x;
}

ZOO_NOINLINE unsigned long plugin_mid(unsigned long n)
{
	unsigned long r = plugin_leaf(n);
	ZOO_KEEP(r);
	return r + 1;
}

ZOO_NOINLINE unsigned long plugin_entry(unsigned long n)
{
	unsigned long r = plugin_mid(n);
	ZOO_KEEP(r);
	return r + 2;
}
