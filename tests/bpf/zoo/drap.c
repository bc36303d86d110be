/* GCC stack realignment through a DRAP register: built with -mavx2, a 32-byte aligned local plus a VLA makes
 * gcc keep the incoming stack pointer in r10 (CFA = r10 + 0 in the prologue and epilogue, usable only while
 * the registers are the sample's own) and find the CFA through rbp in the body (CFA = *(rbp - 8)).
 * main -> drive -> realigned -> tail_work. `realigned` is short, so many of its samples land in the r10
 * windows; samples in tail_work unwind through its body rule. (gcc's CFI keeps "rbp saved at [rbp]" on the
 * final `ret`, after `leave` restored it, so `drive` and `main` don't use rbp: any unwinder would read a
 * wrong rbp at that one instruction.) */
#include "zoo.h"

volatile double drap_sink;

ZOO_NOINLINE double tail_work(double *w, int n)
{
	double s = 0;
	for (int k = 0; k < 4; k++)
		for (int i = 0; i < n; i++)
			s += w[i] * k;
	ZOO_KEEP(s);
	return s;
}

ZOO_NOINLINE double realigned(int n)
{
	__attribute__((aligned(32))) double v[8];
	double w[n];
	for (int i = 0; i < 8; i++)
		v[i] = i * n;
	ZOO_KEEP(v[0]);
	for (int i = 0; i < n; i++)
		w[i] = v[i & 7] + i;
	return tail_work(w, n) + v[3];
}

ZOO_NOINLINE double drive(long rounds)
{
	double acc = 0;
	for (long r = 0; r < rounds; r++)
		acc += realigned(3 + (int)(r & 1));
	return acc;
}

int main(int argc, char **argv)
{
	struct zoo_clock c = zoo_start(argc, argv);
	while (zoo_more(&c))
		drap_sink = drive(20000);
	return 0;
}
