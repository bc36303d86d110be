/* Two named threads, each with its own chain:
 * zoo-alpha: alpha_main -> alpha_work -> alpha_spin;  zoo-beta: beta_main -> beta_work -> beta_spin. */
#define _GNU_SOURCE
#include <pthread.h>

#include "zoo.h"

volatile unsigned long sink_alpha, sink_beta;
static int g_argc;
static char **g_argv;

ZOO_NOINLINE unsigned long alpha_spin(unsigned long n)
{
	unsigned long x = n;
	for (unsigned long i = 0; i < n; i++) {
		x = x * 2862933555777941757UL + 3037000493UL;
		ZOO_KEEP(x);
	}
	return x;
}

ZOO_NOINLINE unsigned long alpha_work(unsigned long n)
{
	unsigned long r = alpha_spin(n);
	ZOO_KEEP(r);
	return r + 1;
}

ZOO_NOINLINE void *alpha_main(void *unused)
{
	pthread_setname_np(pthread_self(), "zoo-alpha");
	struct zoo_clock c = zoo_start(g_argc, g_argv);
	while (zoo_more(&c))
		sink_alpha += alpha_work(200000);
	return unused;
}

ZOO_NOINLINE unsigned long beta_spin(unsigned long n)
{
	unsigned long x = n | 1;
	for (unsigned long i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		ZOO_KEEP(x);
	}
	return x;
}

ZOO_NOINLINE unsigned long beta_work(unsigned long n)
{
	unsigned long r = beta_spin(n);
	ZOO_KEEP(r);
	return r + 1;
}

ZOO_NOINLINE void *beta_main(void *unused)
{
	pthread_setname_np(pthread_self(), "zoo-beta");
	struct zoo_clock c = zoo_start(g_argc, g_argv);
	while (zoo_more(&c))
		sink_beta += beta_work(200000);
	return unused;
}

int main(int argc, char **argv)
{
	pthread_t a, b;
	g_argc = argc;
	g_argv = argv;
	pthread_create(&a, NULL, alpha_main, NULL);
	pthread_create(&b, NULL, beta_main, NULL);
	pthread_join(a, NULL);
	pthread_join(b, NULL);
	return 0;
}
