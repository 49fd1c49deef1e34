//! Benchmark 4: start-up, from exec to "crashtrace: attached" on stderr
//! (every hook attached, BTF and tracefs parsing included). When strace is
//! installed, one more start under `strace -f -T` says where the time goes:
//! the slowest system calls before "attached", BPF program loads by name.

use std::{collections::BTreeMap, process::Command, time::Duration};

use anyhow::Result;

use super::{
    Ctx, check_interrupted,
    stats::{median, mib, min_max, ms},
    table::{Section, Table, TargetCheck},
    tracer::{Output, Tracer},
};

const TARGET: Duration = Duration::from_millis(250);
/// Peak resident memory over a start (exec to attached, then a stop).
const RSS_TARGET_KIB: u64 = 24 * 1024;

pub(super) fn run(ctx: &Ctx) -> Result<Section> {
    let runs = ctx.scale.startup_runs;
    let mut section = Section::new(
        "4. Start-up",
        &format!(
            "{runs} starts, one after another: wall time from just before spawning crashtrace to reading \
             \"crashtrace: attached\" on its stderr, and the attach time crashtrace reports itself (loading \
             the object, BTF, attaching). Each instance is stopped with SIGINT before the next starts; its peak \
             resident memory (VmHWM, then wait4's ru_maxrss) is the start-up's, as nothing happens between \
             \"attached\" and the stop."
        ),
    );
    let args = vec!["--color".to_string(), "never".to_string()];
    section.commands.push(format!(
        "{} >/dev/null  # until \"crashtrace: attached\" on stderr, then kill -INT",
        ctx.crashtrace_cmd(&args)
    ));
    let mut wall = Vec::new();
    let mut reported = Vec::new();
    let mut hwm = Vec::new();
    let mut attached_rss = Vec::new();
    let mut ring_kib = 0;
    for _ in 0..runs {
        check_interrupted()?;
        let tracer = Tracer::start(&ctx.binary, &args, &Output::Null)?;
        wall.push(tracer.spawn_to_attached.as_nanos() as f64);
        reported.push(tracer.self_reported_attach.as_nanos() as f64);
        attached_rss.push(tracer.rss_kib().unwrap_or(0) as f64);
        ring_kib = super::churn::bpf_map_kib(&tracer.mappings());
        // Nothing happens between attach and stop: the high-water mark is
        // the start-up's.
        hwm.push(tracer.stop()?.hwm_kib as f64);
    }
    let mut t = Table::new(&["measure", "median", "min", "max"]);
    for (name, v) in [("exec to \"attached\" (wall)", &wall), ("attach time crashtrace reports", &reported)] {
        let (lo, hi) = min_max(v).unwrap_or((f64::NAN, f64::NAN));
        t.row(vec![name.into(), ms(median(v).unwrap_or(f64::NAN)), ms(lo), ms(hi)]);
    }
    for (name, v) in [("peak RSS over the start (VmHWM)", &hwm), ("RSS just after \"attached\"", &attached_rss)] {
        let (lo, hi) = min_max(v).unwrap_or((f64::NAN, f64::NAN));
        let kib = |x: f64| if x.is_finite() { mib(x as u64) } else { "?".into() };
        t.row(vec![name.into(), kib(median(v).unwrap_or(f64::NAN)), kib(lo), kib(hi)]);
    }
    section.tables.push(t);
    let med = median(&wall).unwrap_or(f64::INFINITY);
    section.targets.push(TargetCheck::new("≤ 250 ms to attach all hooks", ms(med), med <= TARGET.as_nanos() as f64));
    // The worst start, not the median: a peak is what the memory limit of
    // a service has to allow.
    let worst = hwm.iter().copied().fold(0.0, f64::max) as u64;
    section.targets.push(TargetCheck::new(
        "start-up peak RSS ≤ 24 MiB (VmHWM, worst of the starts)",
        format!(
            "{} (median {}; of it, BPF map mappings (the ring buffer, mapped twice) {})",
            mib(worst),
            mib(median(&hwm).unwrap_or(0.0) as u64),
            mib(ring_kib)
        ),
        worst > 0 && worst <= RSS_TARGET_KIB,
    ));

    match breakdown(ctx, &args) {
        Ok((table, note)) => {
            section
                .commands
                .push(format!("strace -f -T -o trace.txt {} --duration 1 >/dev/null", ctx.crashtrace_cmd(&args)));
            section.tables.push(table);
            section.notes.push(note);
        }
        Err(why) => section.notes.push(format!("No system-call breakdown: {why}")),
    }
    Ok(section)
}

/// Syscall name, BPF command and program name of one strace line, and its duration.
fn parse_line(line: &str) -> Option<(String, f64)> {
    // "PID name(args...) = ret <0.000123>"
    let rest = line.split_once(' ').map(|(_, r)| r.trim_start())?;
    if rest.starts_with("<...") || rest.starts_with("+++") || rest.starts_with("---") {
        return None;
    }
    let name = &rest[..rest.find('(')?];
    let secs: f64 = rest.rsplit_once('<')?.1.strip_suffix('>')?.parse().ok()?;
    let mut key = name.to_string();
    if name == "bpf" {
        let cmd = rest[4..].split([',', ')']).next().unwrap_or("");
        key = format!("bpf {cmd}");
        if let Some(at) = rest.find("prog_name=\"") {
            let pn = &rest[at + 11..];
            key += &format!(" {}", &pn[..pn.find('"').unwrap_or(pn.len())]);
        }
    }
    Some((key, secs))
}

/// System call (bpf by command and program) -> (calls, seconds), slowest first.
type Breakdown = Vec<(String, (u32, f64))>;

/// Time per system call before "attached", slowest first; the total; and
/// the attach time crashtrace printed.
fn summarise(text: &str) -> (Breakdown, f64, Option<f64>) {
    let mut by: BTreeMap<String, (u32, f64)> = BTreeMap::new();
    let mut total = 0.0;
    let mut reported = None;
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.contains("\"crashtrace: attached in ") {
            // stderr is unbuffered: the number comes in a write of its own.
            reported = lines
                .by_ref()
                .take(4)
                .find_map(|l| {
                    l.split_once("write(2, \"")
                        .map(|(_, r)| r.chars().take_while(char::is_ascii_digit).collect::<String>())
                })
                .and_then(|n| n.parse::<f64>().ok());
            break;
        }
        if let Some((key, secs)) = parse_line(line) {
            let e = by.entry(key).or_default();
            e.0 += 1;
            e.1 += secs;
            total += secs;
        }
    }
    let mut rows: Breakdown = by.into_iter().collect();
    rows.sort_by(|a, b| b.1.1.partial_cmp(&a.1.1).unwrap_or(std::cmp::Ordering::Equal));
    (rows, total, reported)
}

fn breakdown(ctx: &Ctx, args: &[String]) -> Result<(Table, String), String> {
    let out = ctx.scratch.join("startup-strace.txt");
    let status = Command::new("strace")
        .args(["-f", "-T", "-s", "64", "-o"])
        .arg(&out)
        .arg(&ctx.binary)
        .args(args)
        .args(["--duration", "1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map_err(|e| format!("strace is not available ({e})"))?;
    if !status.success() {
        return Err(format!("crashtrace under strace exited with {status}"));
    }
    let text = std::fs::read_to_string(&out).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_file(&out);
    let (rows, total, reported) = summarise(&text);
    let mut t = Table::new(&["system call before \"attached\" (under strace)", "calls", "time in the kernel"]);
    for (key, (n, secs)) in rows.iter().take(8) {
        t.row(vec![key.clone(), n.to_string(), ms(secs * 1e9)]);
    }
    let note = format!(
        "Under strace, crashtrace reported an attach time of {}; {} of it was spent inside the system calls \
         before \"attached\" (the table lists the slowest), the rest in user space (object and BTF parsing, \
         relocation). strace slows every call, so these are proportions, not the figures above.",
        reported.map(ms).unwrap_or_else(|| "?".into()),
        ms(total * 1e9)
    );
    Ok((t, note))
}

#[cfg(test)]
mod tests {
    use super::{parse_line, summarise};

    #[test]
    fn reads_strace_lines() {
        let (k, s) = parse_line(
            "123 bpf(BPF_PROG_LOAD, {prog_type=BPF_PROG_TYPE_TRACING, insn_cnt=298, prog_name=\"signal_generat\", x=1}, 148) = 9 <0.012500>",
        )
        .unwrap();
        assert_eq!(k, "bpf BPF_PROG_LOAD signal_generat");
        assert!((s - 0.0125).abs() < 1e-9);
        let (k, _) = parse_line("123 openat(AT_FDCWD, \"/sys/kernel/btf/vmlinux\", O_RDONLY) = 3 <0.000010>").unwrap();
        assert_eq!(k, "openat");
        assert_eq!(parse_line("123 <... bpf resumed>) = 0 <0.1>"), None);
        assert_eq!(parse_line("123 +++ exited with 0 +++"), None);
    }

    #[test]
    fn sums_the_calls_before_attached() {
        let text = concat!(
            "7 openat(AT_FDCWD, \"/sys/kernel/btf/vmlinux\", O_RDONLY) = 3 <0.002000>\n",
            "7 bpf(BPF_PROG_LOAD, {prog_name=\"a\"}, 148) = 9 <0.100000>\n",
            "7 write(2, \"crashtrace: attached in \", 24) = 24 <0.000003>\n",
            "7 write(2, \"123456 ns\\n\", 10) = 10 <0.000003>\n",
            "7 bpf(BPF_MAP_LOOKUP_ELEM, {map_fd=12}, 152) = 0 <0.500000>\n",
        );
        let (rows, total, reported) = summarise(text);
        assert_eq!(reported, Some(123456.0));
        assert!((total - 0.102).abs() < 1e-9, "{total}");
        assert_eq!(rows[0].0, "bpf BPF_PROG_LOAD a");
        assert_eq!(rows.len(), 2);
    }
}
