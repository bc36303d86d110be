/* Samples inside a signal handler: SIGALRM every millisecond runs a busy handler, so stacks go
 * on_alarm -> __restore_rt (libc's signal trampoline) -> the interrupted code -> main. The interrupted code
 * is mostly spin_r11 (spin_r11.S), whose CFA is in r11: unwinding it after the handler needs the
 * sigcontext's r11. */
#include <signal.h>
#include <sys/time.h>

#include "zoo.h"

unsigned long spin_r11(unsigned long n);

volatile unsigned long handled;

ZOO_NOINLINE unsigned long handler_work(unsigned long n)
{
	unsigned long x = n | 1;
	for (unsigned long i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		ZOO_KEEP(x);
	}
	return x;
}

ZOO_NOINLINE void on_alarm(int sig)
{
	handled += handler_work(150000 + (unsigned long)sig);
}

int main(int argc, char **argv)
{
	struct sigaction sa = {0};
	sa.sa_handler = on_alarm;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGALRM, &sa, NULL);
	struct itimerval it = {{0, 1000}, {0, 1000}};
	setitimer(ITIMER_REAL, &it, NULL);
	struct zoo_clock c = zoo_start(argc, argv);
	unsigned long sum = 0;
	while (zoo_more(&c))
		sum += spin_r11(200000);
	ZOO_KEEP(sum);
	return 0;
}
