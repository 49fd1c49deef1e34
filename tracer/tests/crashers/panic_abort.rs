// A Rust panic with `panic = "abort"`: the panic runtime aborts (SIGABRT).
// For tracer/tests/stacks.rs: main -> level1 -> level2 -> panic!.
use std::hint::black_box;

#[inline(never)]
fn level2(n: u32) -> u32 {
    if black_box(n) == 0 {
        panic!("abort on purpose");
    }
    n + 1
}

#[inline(never)]
fn level1(n: u32) -> u32 {
    black_box(level2(black_box(n))) + 1
}

fn main() {
    std::process::exit(black_box(level1(black_box(0))) as i32);
}
