//! A Rust process that faults three calls deep, for crashtrace's stack
//! tests: main -> crash_level1 -> crash_level2 -> crash_level3, which writes
//! to an unmapped address (SIGSEGV). Built with frame pointers forced on.
//!
//! Rust's runtime catches SIGSEGV to report stack overflows; for any other
//! fault its handler restores the default action and returns, so the fault
//! repeats and the process dies of it.

use std::hint::black_box;

#[inline(never)]
fn crash_level3(target: usize) {
    // SAFETY: none; the write is meant to fault. The address comes through
    // black_box so the compiler cannot reason about it.
    unsafe { std::ptr::write_volatile(black_box(target) as *mut u32, 42) };
}

#[inline(never)]
fn crash_level2(target: usize) {
    crash_level3(target);
    black_box(());
}

#[inline(never)]
fn crash_level1(target: usize) {
    crash_level2(target);
    black_box(());
}

fn main() {
    // A page the process never maps.
    crash_level1(black_box(0x10));
    eprintln!("deep-rust: did not crash");
    std::process::exit(3);
}
