//! Embeds the eBPF object when `cargo xtask build` points at it with
//! CRASHTRACE_EBPF_OBJECT. Without it, crashtrace still builds (so plain
//! `cargo build` and `cargo test` need no BPF toolchain) and says at run time
//! how to get the object.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(crashtrace_embedded_ebpf)");
    println!("cargo::rerun-if-env-changed=CRASHTRACE_EBPF_OBJECT");
    if let Ok(path) = std::env::var("CRASHTRACE_EBPF_OBJECT") {
        let path = std::path::Path::new(&path);
        if path.is_file() {
            println!("cargo::rerun-if-changed={}", path.display());
            println!("cargo::rustc-cfg=crashtrace_embedded_ebpf");
            println!("cargo::rustc-env=CRASHTRACE_EBPF_OBJECT_PATH={}", path.display());
        } else {
            println!("cargo::warning=CRASHTRACE_EBPF_OBJECT={} is not a file; building without the eBPF object", path.display());
        }
    }
}
