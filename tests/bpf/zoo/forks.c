/* Pre-fork workers: forks argv[2] children one after another, each runs argv[1] seconds of
 * main -> worker -> outer -> middle -> inner -> hot and exits without exec (its mappings are its parent's). */
#include <sys/wait.h>
#include <unistd.h>

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

ZOO_NOINLINE void worker(double seconds)
{
	double end = zoo_now() + seconds;
	while (zoo_now() < end)
		sink += outer(20000);
}

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 0.03;
	int children = argc > 2 ? atoi(argv[2]) : 40;
	for (int i = 0; i < children; i++) {
		pid_t pid = fork();
		if (pid == 0) {
			worker(seconds);
			_exit(0);
		}
		if (pid < 0)
			return 1;
		waitpid(pid, NULL, 0);
	}
	return 0;
}
