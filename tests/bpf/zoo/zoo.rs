// Rust release build: main -> outer -> middle -> inner -> hot, plus an iterator closure in `fold_squares`.
use std::hint::black_box;
use std::time::{Duration, Instant};

#[inline(never)]
fn hot(n: u64) -> u64 {
    let mut x = n;
    for i in 0..n {
        x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
    }
    x
}

#[inline(never)]
fn fold_squares(n: u64) -> u64 {
    (0..n).map(|i| black_box(i.wrapping_mul(i))).fold(0u64, |a, b| a.wrapping_add(b ^ (a >> 3)))
}

#[inline(never)]
fn inner(n: u64) -> u64 {
    black_box(hot(n)).wrapping_add(fold_squares(n / 4))
}

#[inline(never)]
fn middle(n: u64) -> u64 {
    black_box(inner(n)).wrapping_add(2)
}

#[inline(never)]
fn outer(n: u64) -> u64 {
    black_box(middle(n)).wrapping_add(3)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mut rounds: u64 = 0;
    let mut secs = 2.0f64;
    if args.len() > 2 && args[1] == "-n" {
        rounds = args[2].parse().unwrap_or(1);
    } else if args.len() > 1 {
        secs = args[1].parse().unwrap_or(2.0);
    }
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let mut sink = 0u64;
    let mut done = 0u64;
    loop {
        done += 1;
        if (rounds > 0 && done > rounds) || (rounds == 0 && Instant::now() >= end) {
            break;
        }
        sink = sink.wrapping_add(outer(200_000));
    }
    println!("{}", black_box(sink) & 1);
}
