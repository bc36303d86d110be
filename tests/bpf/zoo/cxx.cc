// C++ without frame pointers, four activities in turn, each with its own chain under main:
//   run_sort      -> std::sort internals (templates, inlined or not) -> the lambda comparator
//   run_templates -> accumulate<Kernel<3>> -> Kernel<3>::apply
//   run_virtual   -> Square::area / Circle::area through a vtable
//   run_throw     -> thrower (4 deep) -> __cxa_throw -> the unwinder in libgcc_s / libstdc++
#include <algorithm>
#include <memory>
#include <stdexcept>
#include <vector>

#include "zoo.h"

volatile unsigned long sink;

ZOO_NOINLINE unsigned long run_sort(std::vector<unsigned long> &v, unsigned long seed)
{
	for (std::size_t i = 0; i < v.size(); i++)
		v[i] = (i + seed) * 0x9e3779b97f4a7c15UL;
	std::sort(v.begin(), v.end(), [](unsigned long a, unsigned long b) __attribute__((noinline)) {
		for (int i = 0; i < 4; i++) {
			a = (a ^ (a >> 31)) * 0x94d049bb133111ebUL;
			b = (b ^ (b >> 31)) * 0x94d049bb133111ebUL;
		}
		return a < b;
	});
	return v[v.size() / 2];
}

template <int N> struct Kernel {
	static ZOO_NOINLINE unsigned long apply(unsigned long x)
	{
		for (int i = 0; i < 64 * N; i++) {
			x = x * 6364136223846793005UL + (unsigned long)N;
			ZOO_KEEP(x);
		}
		return x;
	}
};

template <typename K> ZOO_NOINLINE unsigned long accumulate(unsigned long n)
{
	unsigned long total = 0;
	for (unsigned long i = 0; i < n; i++) {
		total += K::apply(i);
		ZOO_KEEP(total);
	}
	return total;
}

ZOO_NOINLINE unsigned long run_templates(unsigned long n)
{
	return accumulate<Kernel<3>>(n) + accumulate<Kernel<5>>(n / 2);
}

struct Shape {
	virtual ~Shape() = default;
	virtual unsigned long area(unsigned long n) const = 0;
};

struct Square : Shape {
	ZOO_NOINLINE unsigned long area(unsigned long n) const override
	{
		unsigned long x = n;
		for (unsigned long i = 0; i < n; i++) {
			x = x * 2862933555777941757UL + 3037000493UL;
			ZOO_KEEP(x);
		}
		return x;
	}
};

struct Circle : Shape {
	ZOO_NOINLINE unsigned long area(unsigned long n) const override
	{
		unsigned long x = n | 1;
		for (unsigned long i = 0; i < n; i++) {
			x ^= x << 13;
			x ^= x >> 7;
			ZOO_KEEP(x);
		}
		return x;
	}
};

ZOO_NOINLINE unsigned long run_virtual(const std::vector<std::unique_ptr<Shape>> &shapes, unsigned long n)
{
	unsigned long total = 0;
	for (const auto &s : shapes)
		total += s->area(n);
	return total;
}

ZOO_NOINLINE unsigned long thrower(int depth, unsigned long n)
{
	if (depth <= 1)
		throw std::runtime_error("zoo");
	unsigned long r = thrower(depth - 1, n);
	ZOO_KEEP(r);
	return r + n;
}

ZOO_NOINLINE unsigned long run_throw(int times)
{
	unsigned long caught = 0;
	for (int i = 0; i < times; i++) {
		try {
			caught += thrower(4, (unsigned long)i);
		} catch (const std::runtime_error &e) {
			caught += (unsigned long)e.what()[0];
		}
	}
	return caught;
}

int main(int argc, char **argv)
{
	std::vector<unsigned long> v(20000);
	std::vector<std::unique_ptr<Shape>> shapes;
	for (int i = 0; i < 4; i++) {
		if ((i + argc) % 2)
			shapes.push_back(std::make_unique<Square>());
		else
			shapes.push_back(std::make_unique<Circle>());
	}
	struct zoo_clock c = zoo_start(argc, argv);
	while (zoo_more(&c)) {
		sink += run_sort(v, (unsigned long)c.done);
		sink += run_templates(2000);
		sink += run_virtual(shapes, 100000);
		sink += run_throw(400);
	}
	return 0;
}
