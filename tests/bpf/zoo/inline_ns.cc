// C++ without frame pointers whose hot code is inlined, in namespaces and classes:
//   main -> mix::run_mix -> [mix::(anonymous namespace)::Mixer::stir] -> [mix::detail::rotate]
//   main -> mix::run_mix -> [mix::Table::fold]
// (brackets: inlined). GCC gives stir and rotate (internal linkage) no DW_AT_linkage_name, so only their
// bare DW_AT_name is in the inline records; fold (a member of a class with external linkage) has one.
#include "zoo.h"

volatile unsigned long sink;

namespace mix {
namespace detail {
static inline __attribute__((always_inline)) unsigned long rotate(unsigned long x, int k)
{
	for (int i = 0; i < 48; i++) {
		x = ((x << k) | (x >> (64 - k))) ^ (x * 0x9e3779b97f4a7c15UL);
		ZOO_KEEP(x);
	}
	return x;
}
}  // namespace detail

namespace {
struct Mixer {
	unsigned long seed;
	inline __attribute__((always_inline)) unsigned long stir(unsigned long x) const
	{
		for (int i = 0; i < 8; i++) {
			x = detail::rotate(x + seed, 13 + i);
			ZOO_KEEP(x);
		}
		return x;
	}
};
}  // namespace

class Table {
      public:
	inline __attribute__((always_inline)) unsigned long fold(unsigned long x) const
	{
		for (int i = 0; i < 256; i++) {
			x = x * 6364136223846793005UL + 1442695040888963407UL;
			ZOO_KEEP(x);
		}
		return x;
	}
};

ZOO_NOINLINE unsigned long run_mix(unsigned long n)
{
	Mixer mixer{n};
	Table table;
	unsigned long acc = n;
	for (unsigned long i = 0; i < n; i++)
		acc = mixer.stir(acc) + table.fold(acc + i);
	return acc;
}
}  // namespace mix

int main(int argc, char **argv)
{
	struct zoo_clock c = zoo_start(argc, argv);
	while (zoo_more(&c))
		sink += mix::run_mix(200);
	return 0;
}
