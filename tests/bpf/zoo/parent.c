/* Works for argv[1] seconds as itself (main -> parent_work -> parent_spin), then forks and execs argv[2]
 * with the remaining arguments and waits for it. */
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "zoo.h"

volatile unsigned long sink;

ZOO_NOINLINE unsigned long parent_spin(unsigned long n)
{
	unsigned long x = n;
	for (unsigned long i = 0; i < n; i++) {
		x = x * 6364136223846793005UL + i;
		ZOO_KEEP(x);
	}
	return x;
}

ZOO_NOINLINE unsigned long parent_work(unsigned long n)
{
	unsigned long r = parent_spin(n);
	ZOO_KEEP(r);
	return r + 1;
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	double end = zoo_now() + atof(argv[1]);
	while (zoo_now() < end)
		sink += parent_work(200000);
	pid_t pid = fork();
	if (pid == 0) {
		execv(argv[2], argv + 2);
		_exit(127);
	}
	int status = 0;
	if (pid < 0 || waitpid(pid, &status, 0) < 0)
		return 1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
