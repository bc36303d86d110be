/* Loads argv[2] with dlopen after `argv[1]` seconds of sleep, then runs for argv[3] seconds:
 * main -> run_plugin -> plugin_entry -> plugin_mid -> plugin_leaf (the last three in the library). */
#include <dlfcn.h>
#include <stdio.h>

#include "zoo.h"

typedef unsigned long (*entry_fn)(unsigned long);
volatile unsigned long sink;

ZOO_NOINLINE unsigned long run_plugin(entry_fn entry)
{
	unsigned long r = entry(200000);
	ZOO_KEEP(r);
	return r + 1;
}

int main(int argc, char **argv)
{
	if (argc < 4)
		return 2;
	struct timespec nap = {0, (long)(atof(argv[1]) * 1e9)};
	nanosleep(&nap, NULL);
	void *lib = dlopen(argv[2], RTLD_NOW);
	if (!lib) {
		fprintf(stderr, "%s\n", dlerror());
		return 1;
	}
	entry_fn entry = (entry_fn)dlsym(lib, "plugin_entry");
	if (!entry)
		return 1;
	double end = zoo_now() + atof(argv[3]);
	while (zoo_now() < end)
		sink += run_plugin(entry);
	return 0;
}
