<?php
// <main> -> run -> Loader::call -> spin -> a C library loaded mid-run through FFI, one library after
// another; argv[1]: seconds per library, argv[2..]: the libraries (each exports fleetprof_spin(ms)).
// The first samples in a library the profiler never saw wait for its unwind table and are finished in
// userspace; their PHP frames (walked in the kernel when each sample was taken) still sit under spin.

function spin(FFI $lib, int $ms): int
{
    return $lib->fleetprof_spin($ms); // calls: fleetprof_spin
}

class Loader
{
    public static function call(string $path, int $ms): int
    {
        $lib = FFI::cdef('int fleetprof_spin(long ms);', $path);
        return spin($lib, $ms); // calls: spin
    }
}

function run(array $paths, int $ms): void
{
    foreach ($paths as $path) {
        Loader::call($path, $ms); // calls: Loader::call
    }
}

run(array_slice($argv, 2), (int) (floatval($argv[1]) * 1000)); // calls: run
