# <main> -> Object#run -> Loader.call -> Object#spin -> a C library loaded mid-run through Fiddle, one
# library after another; ARGV[0]: seconds per library, ARGV[1..]: the libraries (each exports
# fleetprof_spin(ms)). The first samples in a library the profiler never saw wait for its unwind table and
# are finished in userspace; their Ruby frames (walked in the kernel when each sample was taken) still sit
# under spin.
require "fiddle"

def spin(function, ms)
  function.call(ms) # calls: call
end

module Loader
  def self.call(path, ms)
    lib = Fiddle.dlopen(path)
    function = Fiddle::Function.new(lib["fleetprof_spin"], [Fiddle::TYPE_LONG], Fiddle::TYPE_INT)
    spin(function, ms) # calls: spin
  end
end

def run(paths, ms)
  paths.each { |path| Loader.call(path, ms) } # calls: Loader.call
end

run(ARGV[1..], (ARGV[0].to_f * 1000).to_i) # calls: run
