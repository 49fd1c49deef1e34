// Rebuild the object when bpf-linker changes: the linker is part of the
// toolchain that shapes the output, but cargo does not track it.
fn main() {
    if let Ok(linker) = which::which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", linker.display());
    }
}
