//! The guest's initramfs: busybox, crashtrace with the shared libraries and
//! dynamic loader it needs, the static helper program, and the init script.
//! One archive serves every kernel: nothing in it is built per kernel.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

use super::cpio::Archive;

/// The init script, run as PID 1 in the guest.
const INIT: &str = include_str!("../../vm/init");
/// Source of the guest's helper program (crasher, collectors, listener).
const VMTOOL_C: &str = include_str!("../../vm/vmtool.c");
const BUSYBOX: &str = "/bin/busybox";

/// Builds the helper program, static so it needs nothing from the guest.
pub(crate) fn build_vmtool(work: &Path) -> Result<PathBuf> {
    let src = work.join("vmtool.c");
    let bin = work.join("vmtool");
    fs::write(&src, VMTOOL_C)?;
    let status = Command::new("gcc")
        .args(["-O2", "-Wall", "-Wextra", "-static", "-o"])
        .arg(&bin)
        .arg(&src)
        .status()
        .context("cannot run gcc; install it with `apt-get install gcc`")?;
    if !status.success() {
        bail!("gcc failed to build the guest helper {} ({status}); static linking needs libc6-dev", src.display());
    }
    Ok(bin)
}

/// The shared objects `binary` loads, as (path ldd names, file to copy),
/// the dynamic loader included.
pub(crate) fn shared_libraries(binary: &Path) -> Result<Vec<(String, PathBuf)>> {
    let out = Command::new("ldd").arg(binary).output().context("cannot run ldd")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        // A static binary makes ldd fail with "not a dynamic executable".
        if text.contains("not a dynamic executable") || String::from_utf8_lossy(&out.stderr).contains("not a dynamic executable") {
            return Ok(Vec::new());
        }
        bail!("ldd {} failed: {}", binary.display(), String::from_utf8_lossy(&out.stderr).trim());
    }
    if let Some(missing) = text.lines().find(|l| l.contains("not found")) {
        bail!("{} needs a library the host lacks: {}", binary.display(), missing.trim());
    }
    parse_ldd(&text)
        .into_iter()
        .map(|path| {
            let real = fs::canonicalize(&path).with_context(|| format!("{} needs {path}, which cannot be read", binary.display()))?;
            Ok((path, real))
        })
        .collect()
}

/// Paths from ldd's output: `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)`
/// and `/lib64/ld-linux-x86-64.so.2 (0x...)`; the vDSO has no file.
pub(crate) fn parse_ldd(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            let target = match line.split_once("=>") {
                Some((_, rhs)) => rhs.trim(),
                None => line,
            };
            let path = target.split_whitespace().next()?;
            path.starts_with('/').then(|| path.to_string())
        })
        .collect()
}

/// Writes the archive and returns its size in bytes.
pub(crate) fn build(crashtrace: &Path, vmtool: &Path, out: &Path) -> Result<usize> {
    if !Path::new(BUSYBOX).is_file() {
        bail!("{BUSYBOX} is missing; install it with `apt-get install busybox-static`");
    }
    if !shared_libraries(Path::new(BUSYBOX))?.is_empty() {
        bail!("{BUSYBOX} is dynamically linked; the guest needs the static one: `apt-get install busybox-static`");
    }
    let read = |p: &Path| fs::read(p).with_context(|| format!("reading {}", p.display()));
    let mut a = Archive::new();
    for d in ["proc", "sys", "dev", "tmp", "run", "etc", "root"] {
        a.dir(d);
    }
    // The kernel opens /dev/console for init's stdio before init can mount
    // devtmpfs.
    a.char_device("/dev/console", 0o600, 5, 1);
    a.char_device("/dev/null", 0o666, 1, 3);
    a.file("/bin/busybox", 0o755, &read(Path::new(BUSYBOX))?);
    a.symlink("/bin/sh", "busybox");
    a.file("/init", 0o755, INIT.as_bytes());
    a.file("/bin/crashtrace", 0o755, &read(crashtrace)?);
    a.file("/bin/vmtool", 0o755, &read(vmtool)?);
    for (path, real) in shared_libraries(crashtrace)? {
        a.file(&path, 0o755, &read(&real)?);
    }
    let data = a.finish();
    fs::write(out, &data).with_context(|| format!("writing {}", out.display()))?;
    Ok(data.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_paths() {
        let text = "\tlinux-vdso.so.1 (0x00007ff488804000)\n\
            \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007ff4887d0000)\n\
            \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007ff48821e000)\n\
            \t/lib64/ld-linux-x86-64.so.2 (0x00007ff488806000)\n";
        assert_eq!(
            parse_ldd(text),
            ["/lib/x86_64-linux-gnu/libgcc_s.so.1", "/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"]
        );
        assert!(parse_ldd("\tlibmissing.so => not found\n").is_empty());
    }
}
