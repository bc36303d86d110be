# <main> -> Shop::Cart#total -> Shop::Cart#line -> Pricing.price (x3, recursive) -> Pricing.hot, which
# spends its time in Ruby arithmetic and in Array#sort's C code calling back into a block.
# argv[0]: seconds (default 2). Profiled by tests/bpf/test_ruby_stacks.py; `# calls: f` marks the line a
# method shows while f runs.

module Pricing
  def self.hot(rounds)
    acc = 0
    i = 0
    while i < rounds
      acc = (acc * 31 + i) % 1_000_003
      i += 1
    end
    (1..3000).to_a.reverse.sort { |a, b| a <=> b } # calls: sort
    acc
  end

  def self.price(depth, rounds)
    return hot(rounds) if depth <= 1 # calls: hot
    price(depth - 1, rounds) # calls: price
  end
end

module Shop
  class Cart
    def total(rounds)
      line(rounds) # calls: line
    end

    def line(rounds)
      Pricing.price(3, rounds) # calls: price-first
    end
  end
end

def run(seconds)
  cart = Shop::Cart.new
  deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + seconds
  cart.total(20_000) while Process.clock_gettime(Process::CLOCK_MONOTONIC) < deadline # calls: total
end

run((ARGV[0] || "2").to_f) # calls: run
