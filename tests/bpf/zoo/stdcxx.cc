// Time in libstdc++: main -> run_strings -> std::string / std::hash / ostringstream members (libstdc++.so)
// and main -> sort_strings -> std::sort of strings (templates in the binary) -> memcmp (libc).
#include <algorithm>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "zoo.h"

volatile unsigned long sink;

ZOO_NOINLINE unsigned long run_strings(unsigned long seed)
{
	unsigned long total = 0;
	std::string s;
	for (unsigned long i = 0; i < 2000; i++) {
		std::ostringstream out;
		out << "key-" << (i * 2654435761UL + seed) << '/' << i;
		s = out.str();
		s.append(s.size() % 7, 'x');
		total += std::hash<std::string>{}(s) + s.find("/1");
	}
	return total;
}

ZOO_NOINLINE unsigned long sort_strings(std::vector<std::string> &words, unsigned long seed)
{
	for (std::size_t i = 0; i < words.size(); i++)
		words[i].assign(48, 'a' + (char)(((i + seed) * 2654435761UL >> 7) % 26));
	std::sort(words.begin(), words.end());
	return words[words.size() / 2].size();
}

int main(int argc, char **argv)
{
	std::vector<std::string> words(20000);
	struct zoo_clock c = zoo_start(argc, argv);
	while (zoo_more(&c)) {
		sink += run_strings((unsigned long)c.done);
		sink += sort_strings(words, (unsigned long)c.done);
	}
	return 0;
}
