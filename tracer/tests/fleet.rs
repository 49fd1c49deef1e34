//! Tier 2: fleet export. The real crashtrace, real crashes, and
//! - a real Prometheus (Debian's `prometheus`) scraping `--metrics-listen`,
//!   asserted through Prometheus' own query API; the `--metrics-textfile`
//!   and the shipped alert rules checked by `promtool`;
//! - the `--journal` sink sending to a native-protocol socket the test
//!   binds itself (a real journald needs a systemd PID 1: the distro VM
//!   tier's job).
//!
//! Everything listens on loopback only; every wait is bounded.

mod common;

use std::{
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
    os::unix::net::UnixDatagram,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::{Crasher, Exclusive, RlimitCore, TempDir, Tracer};
use crashtrace::sink::journal::{message_id, parse_entry};
use serde_json::Value;

const PROMETHEUS: &str = "/usr/bin/prometheus";
const PROMTOOL: &str = "/usr/bin/promtool";
const RULES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../contrib/prometheus/crashtrace.rules.yml");

/// A free loopback port (bound, read, released: the server started next
/// takes it).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("binding 127.0.0.1:0").port()
}

/// GET http://127.0.0.1:port/path with a bounded wait: (status code, body).
fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let code = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    // Prometheus answers chunked; its JSON is one chunk, between size lines.
    let body = if text.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(&body) } else { body };
    Ok((code, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

fn url_encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A Prometheus server we started; killed and reaped when dropped.
struct Prometheus {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Prometheus {
    fn start(dir: &Path, target_port: u16) -> Prometheus {
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
                 scrape_configs:\n  - job_name: crashtrace\n    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n"
            ),
        )
        .expect("writing the Prometheus config");
        let port = free_port();
        let log = dir.join("prometheus.log");
        let child = Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("creating the Prometheus log"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {PROMETHEUS}: {e}; install Debian's prometheus (cargo xtask setup)"));
        let p = Prometheus { child, port, log };
        p.wait_ready();
        p
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if matches!(http_get(self.port, "/-/ready"), Ok((200, _))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("Prometheus did not become ready within 60 s; its log:\n{}", self.log_text());
    }

    /// An instant query: the result vector.
    fn query(&self, q: &str) -> Vec<Value> {
        let (code, body) = http_get(self.port, &format!("/api/v1/query?query={}", url_encode(q)))
            .unwrap_or_else(|e| panic!("querying Prometheus for {q}: {e}"));
        assert_eq!(code, 200, "Prometheus answered {code} to {q}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("Prometheus' answer to {q} is not JSON ({e}): {body}"));
        assert_eq!(v["status"], "success", "{q}: {v}");
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// Polls `q` until `pred` holds for its result (bounded): the result.
    fn wait_query(&self, q: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let result = self.query(q);
            if pred(&result) {
                return result;
            }
            assert!(Instant::now() < deadline, "Prometheus never showed what the test wants for {q}; last: {result:?}\nlog:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of a sample with these labels in a query result.
fn value(result: &[Value], labels: &[(&str, &str)]) -> Option<f64> {
    result
        .iter()
        .find(|s| labels.iter().all(|(k, v)| s["metric"][*k] == *v))
        .and_then(|s| s["value"][1].as_str()?.parse().ok())
}

/// The port crashtrace said it serves metrics on.
fn metrics_port(tracer: &Tracer) -> u16 {
    let stderr = tracer.stderr_text();
    stderr
        .lines()
        .find_map(|l| l.strip_prefix("crashtrace: metrics on http://127.0.0.1:")?.strip_suffix("/metrics")?.parse().ok())
        .unwrap_or_else(|| panic!("crashtrace did not say where it serves metrics; stderr:\n{stderr}"))
}

/// One crasher killed with SIGSEGV; its pid and wait status.
fn crash(dir: &Path) -> (u32, std::process::ExitStatus) {
    let mut c = Crasher::spawn("pause", RlimitCore::Unlimited, dir);
    c.wait_ready();
    c.kill(libc::SIGSEGV);
    let status = c.wait();
    assert_eq!(status.signal(), Some(libc::SIGSEGV), "the crasher did not die of SIGSEGV: {status}");
    (c.pid, status)
}

use std::os::unix::process::ExitStatusExt as _;

#[test]
#[ignore = "privileged: needs root and real BPF; run with cargo xtask test"]
fn prometheus_scrapes_crashes_hooks_and_drops() {
    let machine = Exclusive::take();
    let dir = TempDir::new("crashtrace-fleet");
    let textfile = dir.path().join("crashtrace.prom");
    let textfile_arg = textfile.display().to_string();
    let mut tracer =
        Tracer::start(&["--json", "--metrics-listen", "127.0.0.1:0", "--metrics-textfile", &textfile_arg, "--metrics-interval", "1"]);
    let port = metrics_port(&tracer);

    // What crashtrace serves by itself: only GET /metrics.
    let (code, body) = http_get(port, "/metrics").expect("GET /metrics");
    assert_eq!(code, 200, "{body}");
    // (A family with no series yet, like crashes, is not listed.)
    assert!(body.contains("# TYPE crashtrace_open_chains gauge") && body.ends_with("# EOF\n"), "{body}");
    assert!(body.contains(r#"crashtrace_hook_attached{hook="tp_btf/signal_deliver",rung="none"} 1"#), "{body}");
    assert_eq!(http_get(port, "/").expect("GET /").0, 404);

    let prometheus = Prometheus::start(dir.path(), port);
    prometheus.wait_query(r#"up{job="crashtrace"}"#, |r| value(r, &[]) == Some(1.0));

    // A stored core, then one core_pattern discards (the kernel still says
    // "core dumped").
    machine.set_core_pattern(&format!("{}/core.%p", dir.path().display()));
    let (stored, _) = crash(dir.path());
    let stored_chain = tracer.wait_verdict(stored);
    machine.set_core_pattern("|/bin/false");
    let (dropped, dropped_status) = crash(dir.path());
    let dropped_chain = tracer.wait_verdict(dropped);
    assert_eq!(stored_chain["verdict"], "stored", "{stored_chain}");
    assert_eq!(dropped_chain["verdict"], "dropped:core-pattern-discards", "{dropped_chain}");

    let stored_labels = [("signal", "SIGSEGV"), ("verdict", "stored"), ("job", "crashtrace")];
    let dropped_labels = [("signal", "SIGSEGV"), ("verdict", "dropped:core-pattern-discards"), ("job", "crashtrace")];
    let crashes = prometheus.wait_query("crashtrace_crashes_total", |r| {
        value(r, &stored_labels).is_some_and(|v| v >= 1.0) && value(r, &dropped_labels).is_some_and(|v| v >= 1.0)
    });
    // The kernel calls a piped dump "dumped" when it wrote the pipe, which
    // /bin/false may or may not have let it do.
    let least = if dropped_status.core_dumped() { 1.0 } else { 0.0 };
    let dumped_but_dropped =
        prometheus.wait_query("crashtrace_kernel_said_dumped_but_dropped_total", |r| value(r, &[]).is_some_and(|v| v >= least));
    let hooks = prometheus.query("crashtrace_hook_attached");
    let open = prometheus.query("crashtrace_open_chains");
    for sample in &crashes {
        let labels: Vec<&String> = sample["metric"].as_object().map(|m| m.keys().collect()).unwrap_or_default();
        assert!(
            labels.iter().all(|k| ["__name__", "instance", "job", "signal", "verdict"].contains(&k.as_str())),
            "crash series carry only signal and verdict: {sample}"
        );
    }
    assert_eq!(value(&hooks, &[("hook", "tp_btf/signal_deliver"), ("rung", "none")]), Some(1.0), "{hooks:?}");
    assert!(value(&open, &[]).is_some(), "no open_chains gauge: {open:?}");

    let textfile_text = std::fs::read_to_string(&textfile).expect("the textfile exists while tracing");
    let stopped = tracer.stop();
    let summary = stopped.assert_clean_exit().clone();

    // Prometheus saw at most what the tracer reported, and at least our crash.
    let reported = |verdict: &str| {
        stopped.records.iter().filter(|r| r["type"] == "verdict" && r["signal"] == "SIGSEGV" && r["verdict"] == verdict).count() as f64
    };
    let scraped_stored = value(&crashes, &stored_labels).unwrap_or(0.0);
    let scraped_dropped = value(&crashes, &dropped_labels).unwrap_or(0.0);
    assert!((1.0..=reported("stored")).contains(&scraped_stored), "scraped {scraped_stored} stored, reported {}", reported("stored"));
    assert!(
        (1.0..=reported("dropped:core-pattern-discards")).contains(&scraped_dropped),
        "scraped {scraped_dropped} dropped, reported {}",
        reported("dropped:core-pattern-discards")
    );
    let said = summary["kernel_said_dumped_but_dropped"].as_f64().unwrap_or(0.0);
    assert!((least..=said).contains(&value(&dumped_but_dropped, &[]).unwrap_or(-1.0)), "{dumped_but_dropped:?} vs {summary}");
    eprintln!(
        "scraped: crashes stored={scraped_stored} dropped={scraped_dropped} kernel_said_dumped_but_dropped={:?}; {} hook series",
        value(&dumped_but_dropped, &[]),
        hooks.len()
    );

    // The textfile: node_exporter's format, valid for promtool, and at exit
    // the final totals.
    let check = |text: &str| {
        let mut child = Command::new(PROMTOOL)
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running promtool");
        child.stdin.take().expect("piped").write_all(text.as_bytes()).expect("feeding promtool");
        let out = child.wait_with_output().expect("promtool");
        // Exit 0: parsable and free of lint problems (3 would be lint, 1 a
        // format error).
        assert!(out.status.success(), "promtool check metrics: {}\n{}\n{text}", out.status, String::from_utf8_lossy(&out.stderr));
    };
    check(&textfile_text);
    let final_text = std::fs::read_to_string(&textfile).expect("the textfile is left at exit");
    check(&final_text);
    let line = format!(r#"crashtrace_crashes_total{{signal="SIGSEGV",verdict="dropped:core-pattern-discards"}} {}"#, reported("dropped:core-pattern-discards"));
    assert!(final_text.contains(&line), "want {line} in:\n{final_text}");

    // The shipped alert rules parse and type-check.
    let out = Command::new(PROMTOOL).args(["check", "rules", RULES]).output().expect("running promtool");
    assert!(out.status.success(), "promtool check rules {RULES}:\n{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    drop(prometheus);
}

/// `--journal` against a socket bound here, parsed with the native
/// protocol: one entry per verdict with the documented fields. (A real
/// journald is checked in the distro VM tier, where systemd is PID 1.)
#[test]
#[ignore = "privileged: needs root and real BPF; run with cargo xtask test"]
fn journal_entries_for_each_verdict() {
    let machine = Exclusive::take();
    let dir = TempDir::new("crashtrace-journal");
    let socket_path = dir.path().join("journal.sock");
    let server = UnixDatagram::bind(&socket_path).expect("binding the journal socket");
    server.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
    // Drained all along, as journald does: other processes' verdicts on
    // this shared host are sent here too, and a unix datagram queue holds
    // only a few (net.unix.max_dgram_qlen), so a reader that stops early
    // makes the tracer's later sends fail.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let done = done.clone();
        let server = server.try_clone().expect("cloning the journal socket");
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 20];
            let mut entries = Vec::new();
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                let Ok(n) = server.recv(&mut buf) else { continue };
                let fields = parse_entry(&buf[..n]).unwrap_or_else(|| panic!("not the native protocol: {:?}", &buf[..n]));
                entries.push(fields);
            }
            // What is still queued after the tracer stopped.
            server.set_nonblocking(true).expect("nonblocking");
            while let Ok(n) = server.recv(&mut buf) {
                entries.push(parse_entry(&buf[..n]).unwrap_or_else(|| panic!("not the native protocol: {:?}", &buf[..n])));
            }
            entries
        })
    };
    let socket_arg = socket_path.display().to_string();
    let mut tracer = Tracer::start(&["--json", "--journal", "--journal-socket", &socket_arg]);
    machine.set_core_pattern("|/bin/false");
    let (pid, _) = crash(dir.path());
    let chain = tracer.wait_verdict(pid);
    let stopped = tracer.stop();
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let entries = reader.join().expect("the journal reader panicked");
    let mut ours = Vec::new();
    for fields in &entries {
        let get = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| String::from_utf8_lossy(v).into_owned());
        if get("CRASHTRACE_CRASHER_PID") == Some(pid.to_string()) {
            ours.push((get("MESSAGE_ID"), get("PRIORITY"), get("CRASHTRACE_VERDICT"), get("CRASHTRACE_SIGNAL"), get("SYSLOG_IDENTIFIER"), get("CRASHTRACE_CHAIN"), get("CRASHTRACE_CHAIN_UID")));
        }
    }
    let summary = stopped.assert_clean_exit();
    let verdicts = stopped.records.iter().filter(|r| r["type"] == "verdict").count();
    assert_eq!(summary.get("journal_failures"), None, "no failures, so none shown: {summary}");
    assert_eq!(entries.len(), verdicts, "one journal entry per verdict record");
    assert_eq!(ours.len(), 1, "want one journal entry for pid {pid}");
    let verdict = chain["verdict"].as_str().expect("a verdict");
    let parsed = crashtrace::chain::Verdict::parse(verdict).expect("a known verdict");
    let want = (
        Some(message_id(parsed).to_string()),
        Some("3".to_string()),
        Some(verdict.to_string()),
        Some("SIGSEGV".to_string()),
        Some("crashtrace".to_string()),
        Some(chain["id"].to_string()),
        // The same name for the chain as the verdict record's.
        Some(chain["chain_uid"].as_str().expect("the verdict record names its chain").to_string()),
    );
    assert_eq!(ours[0], want);

    // journald gone: the tracer carries on and counts it.
    drop(server);
    std::fs::remove_file(&socket_path).expect("removing the socket");
    let mut tracer = Tracer::start(&["--json", "--journal", "--journal-socket", &socket_arg]);
    let (pid, _) = crash(dir.path());
    tracer.wait_verdict(pid);
    let stopped = tracer.stop();
    let summary = stopped.assert_clean_exit();
    assert!(summary["journal_failures"].as_u64().is_some_and(|n| n >= 1), "{summary}");
    assert!(stopped.stderr.contains("not sent to the journal"), "{}", stopped.stderr);
}
