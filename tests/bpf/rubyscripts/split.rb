# heavy runs three times as long as light, in pure Ruby. ARGV[0]: seconds (default 2); ARGV[1]: where
# StackProf (Ruby's own sampling profiler, cpu mode every 2 ms) writes each frame's self samples as
# "name count" lines, when given. Profiled by tests/bpf/test_ruby_stacks.py.

def heavy(n)
  a = 0
  i = 0
  while i < 3 * n
    a = (a * 31 + i) % 1_000_003
    i += 1
  end
  a
end

def light(n)
  a = 0
  i = 0
  while i < n
    a = (a * 31 + i) % 1_000_003
    i += 1
  end
  a
end

def run(seconds)
  deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + seconds
  while Process.clock_gettime(Process::CLOCK_MONOTONIC) < deadline
    heavy(20_000)
    light(20_000)
  end
end

seconds = (ARGV[0] || "2").to_f
if ARGV[1]
  require "stackprof"
  data = StackProf.run(mode: :cpu, interval: 2000) { run(seconds) }
  File.write(ARGV[1], data[:frames].values.map { |f| "#{f[:name]} #{f[:samples]}\n" }.join)
else
  run(seconds)
end
