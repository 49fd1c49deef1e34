//! crashtrace's eBPF programs: one module per hook family.
//!
//! The programs filter in the kernel and copy out only what user space cannot
//! read later (siginfo, the target's comm, limits at the moment of death).
//! Everything else is read from /proc by user space.
#![no_std]
#![no_main]

mod cgroups;
mod collector;
mod coredump;
mod emit;
mod maps;
mod process;
mod signals;
mod sysctl;
mod task;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any reachable panic, so this is never entered.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
