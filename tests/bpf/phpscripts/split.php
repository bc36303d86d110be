<?php
// heavy() runs three times as long as light(), in pure PHP (no internal function to hide time in).
// argv[1]: seconds (default 2); argv[2]: where Excimer (PHP's own sampling profiler) writes its collapsed
// stacks, sampling CPU time every 2 ms, when given. Profiled by tests/bpf/test_php_stacks.py.

function heavy(int $n): int
{
    $a = 0;
    for ($i = 0; $i < 3 * $n; $i++) {
        $a = ($a * 31 + $i) % 1000003;
    }
    return $a;
}

function light(int $n): int
{
    $a = 0;
    for ($i = 0; $i < $n; $i++) {
        $a = ($a * 31 + $i) % 1000003;
    }
    return $a;
}

$seconds = (float) ($argv[1] ?? 2);
$out = $argv[2] ?? '';
if ($out !== '') {
    $profiler = new ExcimerProfiler();
    $profiler->setPeriod(0.002);
    $profiler->setEventType(EXCIMER_CPU);
    $profiler->start();
}
$deadline = microtime(true) + $seconds;
while (microtime(true) < $deadline) {
    heavy(20000);
    light(20000);
}
if ($out !== '') {
    $profiler->stop();
    file_put_contents($out, $profiler->getLog()->formatCollapsed());
}
