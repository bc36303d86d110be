/* Time in the kernel: main -> syscall_loop -> write()/getppid() wrappers (libc) -> kernel. */
#include <fcntl.h>
#include <unistd.h>

#include "zoo.h"

volatile unsigned long sink;

ZOO_NOINLINE unsigned long syscall_loop(int fd)
{
	static char buf[512];
	unsigned long n = 0;
	for (int i = 0; i < 2000; i++) {
		n += (unsigned long)write(fd, buf, sizeof(buf));
		n += (unsigned long)getppid();
	}
	return n;
}

int main(int argc, char **argv)
{
	int fd = open("/dev/null", O_WRONLY);
	if (fd < 0)
		return 1;
	struct zoo_clock c = zoo_start(argc, argv);
	while (zoo_more(&c))
		sink += syscall_loop(fd);
	return 0;
}
