//! `--metrics-listen ADDR` and `--metrics-textfile PATH`: the tracer's
//! counts as Prometheus metrics, for a fleet.
//!
//! The metrics are kept in `prometheus-client` atomics ([`Metrics`]),
//! updated from the records every sink sees and from the loop's
//! [`Status`] on each tick. Two ways out, either or both:
//! - an HTTP endpoint (`GET /metrics`, OpenMetrics text) served by its own
//!   thread, so that a slow or hostile client never holds up the event loop
//!   (the thread only reads atomics; requests are bounded in size and time);
//! - a file for node_exporter's textfile collector, in the classic
//!   Prometheus text format, replaced atomically (temp file + rename) every
//!   interval and at exit.
//!
//! Labels never carry a pid, a comm or an exe path: a fleet's series must
//! stay few whatever crashes.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

use super::{Emitted, Sink, Status};
use crate::{
    hooks::{self, Rung},
    record::{HookState, Record},
    watched::State,
};

/// Largest request read before answering: a scrape is one short GET.
const MAX_REQUEST: usize = 8 * 1024;
/// How long one client may take to send its request or read the answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);
/// The OpenMetrics content type Prometheus asks for and understands.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CrashLabels {
    signal: String,
    verdict: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HookLabels {
    hook: String,
    rung: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

/// Every metric crashtrace exports, and the registry that encodes them.
pub struct Metrics {
    registry: Registry,
    crashes: Family<CrashLabels, Counter>,
    dumped_but_dropped: Counter,
    events_lost: Family<KindLabels, Counter>,
    decode_errors: Counter,
    log_write_failures: Counter,
    journal_failures: Counter,
    hook_attached: Family<HookLabels, Gauge>,
    watched_state: Family<StateLabels, Gauge>,
    open_chains: Gauge,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("crashtrace");
        let m = Metrics {
            registry: Registry::default(),
            crashes: Family::default(),
            dumped_but_dropped: Counter::default(),
            events_lost: Family::default(),
            decode_errors: Counter::default(),
            log_write_failures: Counter::default(),
            journal_failures: Counter::default(),
            hook_attached: Family::default(),
            watched_state: Family::default(),
            open_chains: Gauge::default(),
        };
        // Counters get `_total` from the encoder.
        registry.register("crashes", "Crash chains ended, by fatal signal and verdict", m.crashes.clone());
        registry.register(
            "kernel_said_dumped_but_dropped",
            "Crashes the kernel reported as \"core dumped\" whose core was dropped",
            m.dumped_but_dropped.clone(),
        );
        registry.register("events_lost", "Events the kernel could not deliver (ring buffer full), by kind", m.events_lost.clone());
        registry.register("decode_errors", "Ring-buffer records that could not be decoded", m.decode_errors.clone());
        registry.register("log_write_failures", "Records not written to the --log file", m.log_write_failures.clone());
        registry.register("journal_failures", "Verdicts not delivered to journald (--journal)", m.journal_failures.clone());
        registry.register("hook_attached", "1 if the hook is attached, 0 if not; rung is its dump-entry ladder rung", m.hook_attached.clone());
        registry.register("watched_state", "The --pid process's state, one-hot", m.watched_state.clone());
        registry.register("open_chains", "Crash chains still open, waiting for their end", m.open_chains.clone());
        Metrics { registry, ..m }
    }

    /// Takes what one record says.
    pub fn record(&self, record: &Record) {
        match record {
            Record::Header(h) => {
                for hook in &h.hooks {
                    let labels = HookLabels { hook: hook.name.clone(), rung: rung_of(&hook.name).into() };
                    self.hook_attached.get_or_create(&labels).set(i64::from(hook.state == HookState::Attached));
                }
            }
            Record::Verdict(chain) => {
                let verdict = chain.verdict.map_or("none", |v| v.as_str());
                let labels = CrashLabels { signal: chain.signal.clone(), verdict: verdict.into() };
                self.crashes.get_or_create(&labels).inc();
                if chain.misleading_core_dumped() {
                    self.dumped_but_dropped.inc();
                }
            }
            Record::Loss(loss) if loss.source == "kernel" => {
                for (kind, n) in &loss.counts {
                    self.events_lost.get_or_create(&KindLabels { kind: kind.clone() }).inc_by(*n);
                }
            }
            Record::Watched(w) => {
                for state in State::ALL {
                    let labels = StateLabels { state: state.as_str().into() };
                    self.watched_state.get_or_create(&labels).set(i64::from(state == w.state));
                }
            }
            _ => {}
        }
    }

    /// Takes the loop's running totals.
    pub fn status(&self, s: &Status) {
        raise(&self.decode_errors, s.decode_errors);
        raise(&self.log_write_failures, s.log_write_failures);
        raise(&self.journal_failures, s.journal_failures);
        self.open_chains.set(i64::try_from(s.open_chains).unwrap_or(i64::MAX));
    }

    /// The OpenMetrics text, as served over HTTP.
    pub fn openmetrics(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }

    /// The classic Prometheus text format, as node_exporter's textfile
    /// collector parses it: OpenMetrics names a counter's family without
    /// `_total` in `# HELP`/`# TYPE` and ends with `# EOF`, which that
    /// parser would take for a second, untyped family.
    pub fn prometheus_text(&self) -> String {
        to_prometheus_text(&self.openmetrics())
    }
}

/// Brings a counter up to a running total the loop keeps.
fn raise(counter: &Counter, total: u64) {
    let now = counter.get();
    if total > now {
        counter.inc_by(total - now);
    }
}

/// The rung a hook stands on in the dump-entry ladder, "none" for the
/// other hooks.
fn rung_of(hook: &str) -> &'static str {
    for spec in hooks::HOOKS {
        let Some(rung) = spec.rung else { continue };
        if hooks::DUMP_ENTRY.iter().any(|f| spec.name(f) == hook) {
            return match rung {
                Rung::Fentry => "fentry",
                Rung::Kprobe => "kprobe",
                Rung::Tracepoint => "tracepoint",
                Rung::Inferred => "inferred",
            };
        }
    }
    "none"
}

fn to_prometheus_text(openmetrics: &str) -> String {
    let mut counters = Vec::new();
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ")
            && let Some(name) = rest.strip_suffix(" counter")
        {
            counters.push(name.to_string());
        }
    }
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters.iter().any(|c| c == name).then(|| format!("{prefix}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

/// What to answer to one HTTP request: (status line, content type, body).
fn respond(request: &[u8], body: impl FnOnce() -> String) -> (&'static str, &'static str, String) {
    let head = request.split(|b| *b == b'\n').next().unwrap_or_default();
    let head = String::from_utf8_lossy(head);
    let mut parts = head.trim_end().split(' ');
    let (method, target) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    let path = target.split('?').next().unwrap_or_default();
    match (method, path) {
        ("GET", "/metrics") => ("200 OK", OPENMETRICS, body()),
        ("GET", _) => ("404 Not Found", "text/plain; charset=utf-8", "crashtrace serves only /metrics\n".into()),
        _ => ("405 Method Not Allowed", "text/plain; charset=utf-8", "only GET\n".into()),
    }
}

/// Reads one request head: up to the blank line, at most [`MAX_REQUEST`].
fn read_request(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while buf.len() < MAX_REQUEST && !buf.windows(4).any(|w| w == b"\r\n\r\n") && !buf.windows(2).any(|w| w == b"\n\n") {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(buf)
}

fn serve_one(mut stream: TcpStream, metrics: &Metrics) {
    // A client that stalls is dropped after the timeout; one request per
    // connection, so no client holds the thread longer than that.
    if stream.set_read_timeout(Some(CLIENT_TIMEOUT)).is_err() || stream.set_write_timeout(Some(CLIENT_TIMEOUT)).is_err() {
        return;
    }
    let Ok(request) = read_request(&mut stream) else { return };
    let (status, content_type, body) = if request.len() >= MAX_REQUEST {
        ("431 Request Header Fields Too Large", "text/plain; charset=utf-8", "request too large\n".to_string())
    } else {
        respond(&request, || metrics.openmetrics())
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).and_then(|_| stream.write_all(body.as_bytes()));
}

/// Errors opening the metrics outputs.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot listen on {addr} for --metrics-listen: {source}; pick a free port, e.g. 127.0.0.1:9477")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("cannot start the metrics server thread: {0}")]
    Thread(std::io::Error),
    #[error("cannot write --metrics-textfile {path}: {source}; check that its directory exists and is writable")]
    Textfile { path: PathBuf, source: std::io::Error },
}

/// Writes `text` to `path` atomically: a temp file beside it, then rename,
/// so node_exporter never reads half a file. The temp name ends in `.tmp`,
/// which the textfile collector ignores.
pub fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let result = std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(text.as_bytes()).and_then(|_| f.sync_data()))
        .and_then(|_| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Starts the HTTP endpoint on its own thread; returns the bound address
/// (a port of 0 picks a free one).
pub fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> Result<SocketAddr, MetricsError> {
    let listener = TcpListener::bind(addr).map_err(|source| MetricsError::Listen { addr, source })?;
    let bound = listener.local_addr().map_err(|source| MetricsError::Listen { addr, source })?;
    std::thread::Builder::new()
        .name("crashtrace-metrics".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                serve_one(stream, &metrics);
            }
        })
        .map_err(MetricsError::Thread)?;
    Ok(bound)
}

/// The metrics sink: updates [`Metrics`] and keeps the textfile current.
pub struct MetricsSink {
    metrics: Arc<Metrics>,
    textfile: Option<PathBuf>,
    interval_ns: u64,
    next_write_ns: u64,
    textfile_failures: u64,
}

impl MetricsSink {
    pub fn open(listen: Option<SocketAddr>, textfile: Option<PathBuf>, interval: Duration) -> Result<MetricsSink, MetricsError> {
        let metrics = Arc::new(Metrics::new());
        if let Some(addr) = listen {
            let bound = serve(addr, metrics.clone())?;
            // Said on stderr like "attached", for scripts that asked for port 0.
            eprintln!("crashtrace: metrics on http://{bound}/metrics");
        }
        if let Some(path) = &textfile {
            // Fail at start, with the reason, rather than at every interval.
            write_atomically(path, &metrics.prometheus_text())
                .map_err(|source| MetricsError::Textfile { path: path.clone(), source })?;
        }
        Ok(MetricsSink { metrics, textfile, interval_ns: interval.as_nanos() as u64, next_write_ns: 0, textfile_failures: 0 })
    }

    fn write_textfile(&mut self) {
        if let Some(path) = &self.textfile
            && let Err(e) = write_atomically(path, &self.metrics.prometheus_text())
        {
            self.textfile_failures += 1;
            if self.textfile_failures <= 3 {
                eprintln!("crashtrace: cannot write --metrics-textfile {}: {e}", path.display());
            }
        }
    }
}

impl Sink for MetricsSink {
    fn write(&mut self, out: &Emitted) {
        self.metrics.record(out.record());
        if let Record::Summary(s) = out.record() {
            // The final totals, then the file as the tracer leaves it.
            self.metrics.status(&Status {
                decode_errors: s.decode_errors,
                log_write_failures: s.log_write_failures,
                journal_failures: s.journal_failures,
                open_chains: 0,
                now_ns: 0,
            });
            self.write_textfile();
        }
    }

    fn status(&mut self, status: &Status) {
        self.metrics.status(status);
        if status.now_ns >= self.next_write_ns {
            self.write_textfile();
            self.next_write_ns = status.now_ns + self.interval_ns;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        chain::Chain,
        record::{Header, Hook, Loss, Watched},
        verdict::Verdict,
    };

    fn chain(signal: &str, verdict: Verdict, kernel_said_dumped: bool) -> Chain {
        let mut c = Chain::new(1, crate::event::Proc::default(), 11, 0);
        c.signal = signal.into();
        c.verdict = Some(verdict);
        c.kernel_said_dumped = kernel_said_dumped;
        c
    }

    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.split(' ').next()?.parse().ok())
    }

    #[test]
    fn crashes_are_counted_by_signal_and_verdict_without_pids() {
        let m = Metrics::new();
        m.record(&Record::Verdict(Box::new(chain("SIGSEGV", Verdict::Stored, true))));
        m.record(&Record::Verdict(Box::new(chain("SIGSEGV", Verdict::Stored, true))));
        m.record(&Record::Verdict(Box::new(chain("SIGABRT", Verdict::CorePatternDiscards, true))));
        let text = m.openmetrics();
        assert_eq!(sample(&text, r#"crashtrace_crashes_total{signal="SIGSEGV",verdict="stored"}"#), Some(2.0), "{text}");
        assert_eq!(
            sample(&text, r#"crashtrace_crashes_total{signal="SIGABRT",verdict="dropped:core-pattern-discards"}"#),
            Some(1.0),
            "{text}"
        );
        assert_eq!(sample(&text, "crashtrace_kernel_said_dumped_but_dropped_total"), Some(1.0), "{text}");
        assert!(!text.contains("pid"), "a label carries a pid: {text}");
    }

    #[test]
    fn hooks_loss_watched_state_and_status_are_exported() {
        let m = Metrics::new();
        let header: Header = serde_json::from_str(
            r#"{"tracer_version":"0","kernel":"k","hostname":"h","boot_id":"b","start_wall_ns":0,"start_mono_ns":0,
                "dump_mode":"inferred","dump_mode_reason":"r","hooks":[],"core_settings":null}"#,
        )
        .unwrap();
        let hooks = vec![
            Hook::new("tp_btf/signal_deliver", HookState::Attached, None),
            Hook::new("fentry/vfs_coredump", HookState::Unavailable, Some("refused".into())),
        ];
        m.record(&Record::Header(Header { hooks, ..header }));
        let counts = [("signal".to_string(), 3u64), ("exec".to_string(), 1)].into();
        m.record(&Record::Loss(Loss { ts_ns: 0, source: "kernel".into(), counts, total: 4 }));
        m.record(&Record::Watched(Watched { ts_ns: 0, pid: 1, state: State::FrozenInCrashHandler, evidence: vec![] }));
        m.status(&Status { decode_errors: 5, log_write_failures: 2, journal_failures: 1, open_chains: 3, now_ns: 0 });
        m.status(&Status { decode_errors: 6, log_write_failures: 2, journal_failures: 1, open_chains: 1, now_ns: 0 });
        let text = m.openmetrics();
        let want = [
            (r#"crashtrace_hook_attached{hook="tp_btf/signal_deliver",rung="none"}"#, 1.0),
            (r#"crashtrace_hook_attached{hook="fentry/vfs_coredump",rung="fentry"}"#, 0.0),
            (r#"crashtrace_events_lost_total{kind="signal"}"#, 3.0),
            (r#"crashtrace_watched_state{state="frozen-in-crash-handler"}"#, 1.0),
            (r#"crashtrace_watched_state{state="running"}"#, 0.0),
            ("crashtrace_decode_errors_total", 6.0),
            ("crashtrace_log_write_failures_total", 2.0),
            ("crashtrace_journal_failures_total", 1.0),
            ("crashtrace_open_chains", 1.0),
        ];
        for (series, value) in want {
            assert_eq!(sample(&text, series), Some(value), "{series} in:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn the_textfile_form_types_counters_by_their_sample_names() {
        let m = Metrics::new();
        m.record(&Record::Verdict(Box::new(chain("SIGSEGV", Verdict::Stored, false))));
        let text = m.prometheus_text();
        assert!(text.contains("# TYPE crashtrace_crashes_total counter\n"), "{text}");
        assert!(text.contains("# HELP crashtrace_crashes_total Crash chains"), "{text}");
        assert!(text.contains("# TYPE crashtrace_open_chains gauge\n"), "{text}");
        assert!(!text.contains("# EOF"), "{text}");
        assert_eq!(sample(&text, r#"crashtrace_crashes_total{signal="SIGSEGV",verdict="stored"}"#), Some(1.0));
    }

    #[test]
    fn only_get_metrics_is_served() {
        let body = || "metrics".to_string();
        assert_eq!(respond(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", body).0, "200 OK");
        assert_eq!(respond(b"GET /metrics?x=1 HTTP/1.1\r\n\r\n", body).2, "metrics");
        assert_eq!(respond(b"GET / HTTP/1.1\r\n\r\n", body).0, "404 Not Found");
        assert_eq!(respond(b"GET /metricsx HTTP/1.1\r\n\r\n", body).0, "404 Not Found");
        assert_eq!(respond(b"POST /metrics HTTP/1.1\r\n\r\n", body).0, "405 Method Not Allowed");
        assert_eq!(respond(b"\xff\xfe", body).0, "405 Method Not Allowed");
        assert_eq!(respond(b"", body).0, "405 Method Not Allowed");
    }

    #[test]
    fn the_server_answers_over_tcp_and_refuses_oversized_requests() {
        let m = Arc::new(Metrics::new());
        m.record(&Record::Verdict(Box::new(chain("SIGBUS", Verdict::NoDump, false))));
        let addr = serve("127.0.0.1:0".parse().unwrap(), m).unwrap();
        let get = |request: &[u8]| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            // The server may answer before reading all of an oversized request.
            let _ = s.write_all(request);
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            out
        };
        let ok = get(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains(r#"crashtrace_crashes_total{signal="SIGBUS",verdict="no-dump"} 1"#), "{ok}");
        assert!(get(b"GET /other HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
        let mut huge = b"GET /metrics HTTP/1.1\r\n".to_vec();
        huge.extend(std::iter::repeat_n(b'a', MAX_REQUEST * 2));
        assert!(get(&huge).starts_with("HTTP/1.1 431"));
    }

    #[test]
    fn the_textfile_is_replaced_whole() {
        let dir = std::env::temp_dir().join(format!("crashtrace-metrics-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("crashtrace.prom");
        write_atomically(&path, "a 1\n").unwrap();
        write_atomically(&path, "a 2\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a 2\n");
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left.len(), 1, "temp files left: {left:?}");
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(write_atomically(&dir.join("missing/x.prom"), "a 1\n").is_err());
    }

    #[test]
    fn rungs_come_from_the_hook_table() {
        assert_eq!(rung_of("fentry/vfs_coredump"), "fentry");
        assert_eq!(rung_of("kprobe/do_coredump"), "kprobe");
        assert_eq!(rung_of("tp_btf/signal_generate"), "none");
    }
}
