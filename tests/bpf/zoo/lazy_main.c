/* Lazy binding: each round forks a child that calls every function of libzoolazy.so once through its PLT
 * (linked -z lazy), so each call goes through ld.so's _dl_runtime_resolve_* (its CFA is rbx-based) ->
 * _dl_fixup -> the symbol lookup, then the child exits. call_all() (lazy_calls.c) is generated. */
#include <sys/wait.h>
#include <unistd.h>

#include "zoo.h"

unsigned long call_all(unsigned long x);

int main(int argc, char **argv)
{
	struct zoo_clock c = zoo_start(argc, argv);
	while (zoo_more(&c)) {
		pid_t child = fork();
		if (child == 0)
			_exit((int)(call_all(1) & 1));
		if (child < 0)
			return 1;
		waitpid(child, NULL, 0);
	}
	return 0;
}
