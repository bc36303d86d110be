/* Pre-fork workers: forks argv[2] children one after another, each runs argv[1] seconds of
 * main -> worker -> outer -> middle -> inner -> hot and exits without exec (its mappings are its parent's). */
#include <sys/wait.h>
#include <unistd.h>

#define ZOO_CHAIN_ONLY
#include "fp_chain.c" /* outer -> middle -> inner -> hot */

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
