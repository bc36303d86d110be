/* Shared by the zoo programs: run for argv[1] seconds (default 2), or argv[1] = "-n N" fixed iterations. */
#ifndef ZOO_H
#define ZOO_H
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ZOO_NOINLINE __attribute__((noinline))
#define ZOO_KEEP(x) __asm__ volatile("" : "+r"(x) : : "memory")

static inline double zoo_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Rounds to run: argv = [prog, "-n", N] gives N; otherwise 0 (run by time, see zoo_seconds). */
static inline long zoo_rounds(int argc, char **argv)
{
	if (argc > 2 && strcmp(argv[1], "-n") == 0)
		return atol(argv[2]);
	return 0;
}

static inline double zoo_seconds(int argc, char **argv)
{
	return argc > 1 && strcmp(argv[1], "-n") != 0 ? atof(argv[1]) : 2.0;
}

/* Loop helper: true while rounds remain (fixed mode) or time is left (timed mode). */
struct zoo_clock {
	long rounds;
	long done;
	double end;
};

static inline struct zoo_clock zoo_start(int argc, char **argv)
{
	struct zoo_clock c = {zoo_rounds(argc, argv), 0, 0};
	c.end = zoo_now() + zoo_seconds(argc, argv);
	return c;
}

static inline int zoo_more(struct zoo_clock *c)
{
	c->done++;
	if (c->rounds)
		return c->done <= c->rounds;
	return zoo_now() < c->end;
}
#endif
