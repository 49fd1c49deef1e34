//! crashtrace's eBPF programs: one module per hook family.
//!
//! The programs filter in the kernel and copy out only what user space cannot
//! read later (siginfo, the target's comm, limits at the moment of death).
//! Everything else is read from /proc by user space.
//!
//! Built for `bpfel-unknown-none` by `cargo xtask build`. A host build (as in
//! `cargo build --workspace`) compiles to a program that only says so.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
// An atomic add on a map value (maps.rs): the BPF target's core has no
// atomic read-modify-write types.
#![cfg_attr(target_arch = "bpf", feature(core_intrinsics))]
#![cfg_attr(target_arch = "bpf", allow(internal_features))]
// The programs are `pub` because the loader finds them by their exported
// symbol names, not through Rust paths.
#![allow(unreachable_pub)]

#[cfg(target_arch = "bpf")]
mod cgroups;
#[cfg(target_arch = "bpf")]
mod collector;
#[cfg(target_arch = "bpf")]
mod coredump;
#[cfg(target_arch = "bpf")]
mod emit;
#[cfg(target_arch = "bpf")]
mod maps;
#[cfg(target_arch = "bpf")]
mod process;
#[cfg(target_arch = "bpf")]
mod signals;
#[cfg(target_arch = "bpf")]
mod stacks;
#[cfg(target_arch = "bpf")]
mod sysctl;
#[cfg(target_arch = "bpf")]
mod task;

#[cfg(not(target_arch = "bpf"))]
fn main() {
    eprintln!("tracer-ebpf holds eBPF programs; build it with `cargo xtask build`");
    std::process::exit(2);
}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any reachable panic, so this is never entered.
    loop {}
}

#[cfg(target_arch = "bpf")]
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
