<?php
// <main> -> run -> Cart::total -> Cart::line -> price (x3, recursive) -> hot, which spends its time in
// PHP arithmetic and in preg_match (the C regex engine). argv[1]: seconds (default 2).
// Profiled by tests/bpf/test_php_stacks.py; `// calls: f` marks the line a function shows while f runs.
// Prints opcache's JIT status at the end (`jit=null` without opcache), so a JIT run can show it compiled code.

function hot(int $rounds): int
{
    $acc = 0;
    for ($i = 0; $i < $rounds; $i++) {
        $acc = ($acc * 31 + $i) % 1000003;
    }
    $acc += preg_match('/^(a+)+$/', str_repeat('a', 16) . '!'); // calls: preg_match (backtracks for ms)
    return $acc;
}

function price(int $depth, int $rounds): int
{
    if ($depth > 1) {
        return price($depth - 1, $rounds); // calls: price
    }
    return hot($rounds); // calls: hot
}

class Cart
{
    public function total(int $rounds): int
    {
        return $this->line($rounds); // calls: Cart::line
    }

    public function line(int $rounds): int
    {
        return price(3, $rounds); // calls: price-first
    }
}

function run(float $seconds): void
{
    $cart = new Cart();
    $deadline = microtime(true) + $seconds;
    while (microtime(true) < $deadline) {
        $cart->total(300000); // calls: Cart::total
    }
}

run(isset($argv[1]) ? (float) $argv[1] : 2.0); // calls: run
$status = function_exists('opcache_get_status') ? opcache_get_status(false) : false;
echo 'jit=', json_encode($status['jit'] ?? null), "\n";
