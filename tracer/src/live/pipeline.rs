//! What happens to each event the ring buffer gives: decode, enrich,
//! correlate, scope, and out to the sinks; and to each chain that ends.
//! Knows nothing of aya or tokio: the loop in [`super`] feeds it.

use crate::{
    chain::Chain,
    core_pattern::{CoreSettings, DumpMode},
    correlate::{Correlator, CORE_LOOKUP_WINDOW_NS},
    decode::DecodeError,
    event::{Body, Event, Proc},
    record::{EventRecord, Record, Summary},
    render::wall,
    scope::{Lookup, Scope},
    sink::{Emitted, Sink},
    symbolize::Symbolizer,
};

use super::{enrich::{self, Enricher}, watch::WatchedPid};

/// Working directories kept for crashers at most.
const CWDS_MAX: usize = 1024;
/// Undecodable records reported on stderr, at most; more are only counted.
const DECODE_ERRORS_PRINTED: u64 = 10;

pub struct Pipeline {
    pub correlator: Correlator,
    scope: Scope,
    watched: Option<WatchedPid>,
    enrich: Enricher,
    /// Names the frames of captured stacks when their chains end.
    symbolizer: Symbolizer,
    sinks: Vec<Box<dyn Sink>>,
    /// The core settings the last settings record gave.
    settings: Option<CoreSettings>,
    /// Wall-clock ns minus monotonic ns, from the start.
    mono_to_wall: i128,
    /// Crashers' working directories, for a relative file pattern (bounded).
    cwds: std::collections::BTreeMap<u32, String>,
    pub decode_errors: u64,
}

/// What the scope asks, answered from the correlator, else from /proc.
struct Known<'a>(&'a Correlator);

impl Lookup for Known<'_> {
    fn cgroup_path(&self, ev: &Event) -> Option<String> {
        self.0.cgroup_path(ev.cgroup_id).map(str::to_string).or_else(|| enrich::cgroup_v2_path(ev.task.tgid))
    }

    fn helper_chain(&self, tgid: u32) -> Option<&Chain> {
        self.0.helper_chain(tgid)
    }
}

fn settings_event(s: CoreSettings, ts_ns: u64) -> Event {
    Event { ts_ns, cpu: 0, task: Proc::default(), cgroup_id: 0, body: Body::CoreSettings(s) }
}

impl Pipeline {
    pub fn new(
        correlator: Correlator,
        scope: Scope,
        watched: Option<WatchedPid>,
        enrich: Enricher,
        sinks: Vec<Box<dyn Sink>>,
        mono_to_wall: i128,
    ) -> Pipeline {
        Pipeline {
            correlator,
            scope,
            watched,
            enrich,
            symbolizer: Symbolizer::new(),
            sinks,
            settings: None,
            mono_to_wall,
            cwds: Default::default(),
            decode_errors: 0,
        }
    }

    /// Hands a record to every sink.
    pub fn emit(&mut self, record: Record) {
        let out = Emitted::new(record);
        for sink in &mut self.sinks {
            sink.write(&out);
        }
    }

    /// Tracing began.
    pub fn started(&mut self, attach_ns: u64) {
        for sink in &mut self.sinks {
            sink.started(attach_ns);
        }
    }

    /// Records the sinks could not write.
    pub fn sink_failures(&self) -> u64 {
        self.sinks.iter().map(|s| s.failures()).sum()
    }

    /// The settings read at start: correlated, and also an event record, so a
    /// log replays on its own.
    pub fn initial_settings(&mut self, settings: Option<CoreSettings>, ts_ns: u64) {
        if let Some(s) = &settings {
            let sev = settings_event(s.clone(), ts_ns);
            self.correlator.feed(&sev);
            self.event(&sev);
        }
        self.settings = settings;
    }

    /// One ring-buffer record, decoded (the ring's slot is already free).
    pub fn decoded(&mut self, decoded: Result<Event, DecodeError>) {
        let mut ev = match decoded {
            Ok(ev) => ev,
            Err(e) => {
                self.decode_errors += 1;
                if self.decode_errors <= DECODE_ERRORS_PRINTED {
                    crate::diag::line(format_args!("crashtrace: undecodable event ({e}); counted in the summary"));
                }
                return;
            }
        };
        self.enrich.event(&mut ev);
        match &ev.body {
            // The thread is acting on its fatal signal: its maps are still
            // there to read, and may not be by the time its chain ends.
            Body::StackCapture { .. } => self.symbolizer.remember_maps(ev.task.tgid, enrich::maps(ev.task.tgid)),
            Body::StackCopy { sp, data } => self.symbolizer.remember_stack_copy(ev.task.tgid, *sp, data.clone()),
            _ => {}
        }
        // Record the settings whenever they change, so the chain (and the
        // log) has the ones a dump used.
        let changed = self.enrich.settings_after(&ev, self.settings.as_ref());
        if let Some(now) = changed.filter(|now| self.settings.as_ref() != Some(now)) {
            let sev = settings_event(now.clone(), ev.ts_ns);
            self.correlator.feed(&sev);
            self.event(&sev);
            self.settings = Some(now);
        }
        let ended = self.correlator.feed(&ev);
        if let Body::SignalDeliver { .. } = &ev.body {
            // The crasher is still alive here (it is acting on the signal):
            // name its cgroup now, before the group can be removed.
            if let Some(path) = enrich::cgroup_v2_path(ev.task.tgid) {
                self.correlator.learn_cgroup_path(ev.cgroup_id, path);
            }
            // A relative file pattern is relative to the crasher's working
            // directory, which is only to be read while it lives.
            let relative = self.settings.as_ref().map(|s| matches!(s.mode(), DumpMode::File { path } if !path.starts_with('/'))).unwrap_or(false);
            if relative && let Some(cwd) = enrich::cwd(ev.task.tgid) {
                if self.cwds.len() >= CWDS_MAX {
                    self.cwds.pop_first();
                }
                self.cwds.insert(ev.task.tgid, cwd);
            }
        }
        self.event(&ev);
        for chain in ended {
            self.verdict(chain);
        }
    }

    /// An event, if in scope.
    fn event(&mut self, ev: &Event) {
        if !self.scope.event(ev, &Known(&self.correlator)) {
            return;
        }
        let wall_ns = wall(ev.ts_ns, self.mono_to_wall);
        let chain = self.correlator.chain_of_cgroup_event(ev);
        self.emit(Record::Event(EventRecord { wall_ns, chain, event: ev.clone() }));
    }

    /// A chain that ended, if in scope.
    pub fn verdict(&mut self, mut chain: Chain) {
        self.scope.note_chain(&chain);
        if let Some(w) = self.watched.as_mut() {
            w.note_chain(&chain);
        }
        if chain.stalled {
            self.enrich.stall_evidence(&mut chain, self.scope.watched_pid());
        }
        if !self.scope.chain(&chain) {
            return;
        }
        if let Some(stack) = chain.stack.as_mut() {
            // Off the event path: the chain is over, its maps were read at delivery.
            self.symbolizer.symbolize(chain.crasher.tgid, stack);
        }
        self.emit(Record::Verdict(Box::new(chain)));
    }

    /// Re-checks the watched pid and reports a state change.
    pub fn check_watched(&mut self, now_ns: u64) {
        let Some(w) = self.watched.as_mut() else { return };
        let facts = enrich::watched_facts(w.pid(), w.handled_crash(), w.handled_signal());
        if let Some(record) = w.observe(now_ns, &facts) {
            self.emit(Record::Watched(record));
        }
    }

    /// Ends every open chain.
    pub fn flush(&mut self) {
        self.locate_cores(0, true);
        for chain in self.correlator.flush() {
            self.verdict(chain);
        }
    }

    /// Looks for the cores of chains whose dump is over (retrying on each
    /// tick for a while: a collector may write after it exits), and records
    /// each result as a `core-located` event, so the chain, the log and
    /// `report` all have it. `all_last`: the final attempt for every chain.
    fn locate_cores(&mut self, now_ns: u64, all_last: bool) {
        for req in self.correlator.core_requests() {
            let last = all_last || now_ns >= req.complete_at_ns.saturating_add(CORE_LOOKUP_WINDOW_NS);
            let wall_start = wall(req.chain.first_ts_ns, self.mono_to_wall);
            let cwd = self.cwds.get(&req.chain.crasher.tgid).map(String::as_str);
            let Some(loc) = enrich::locate_core(&req.chain, wall_start, cwd, last) else { continue };
            self.cwds.remove(&req.chain.crasher.tgid);
            let ev = Event {
                ts_ns: now_ns.max(req.chain.last_ts_ns),
                cpu: 0,
                task: req.chain.crasher.clone(),
                cgroup_id: req.chain.cgroup_id,
                body: Body::CoreLocated(loc),
            };
            self.correlator.feed(&ev);
            self.event(&ev);
        }
    }

    /// The chains the idle timeouts end at `now_ns`.
    pub fn tick(&mut self, now_ns: u64) {
        self.locate_cores(now_ns, false);
        for chain in self.correlator.tick(now_ns) {
            self.verdict(chain);
        }
    }

    /// The last record.
    pub fn summary(&mut self, mut summary: Summary) {
        let stats = self.correlator.stats();
        summary.events = stats.events;
        summary.chains = stats.chains_opened;
        summary.verdicts = stats.verdicts.clone();
        summary.kernel_said_dumped_but_dropped = stats.kernel_said_dumped_but_dropped;
        summary.decode_errors = self.decode_errors;
        summary.log_write_failures = self.sink_failures();
        self.emit(Record::Summary(summary));
    }
}

#[cfg(test)]
mod tests {
    use std::{cell::RefCell, path::PathBuf, rc::Rc};

    use super::*;
    use crate::{correlate::Config, record::Line, verdict::Verdict};

    /// Keeps what it is given.
    struct Recording(Rc<RefCell<Vec<Record>>>);

    impl Sink for Recording {
        fn write(&mut self, out: &Emitted) {
            self.0.borrow_mut().push(out.record().clone());
        }
    }

    /// The fixture's events (the settings one first), as the ring buffer
    /// would have given them.
    fn fixture_events(name: &str) -> Vec<Event> {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(format!("{name}.jsonl"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        text.lines()
            .filter_map(|l| match serde_json::from_str::<Line>(l).unwrap().record {
                Record::Event(e) => Some(e.event),
                _ => None,
            })
            .collect()
    }

    fn run(name: &str, scope: Scope) -> Vec<Record> {
        let got = Rc::new(RefCell::new(Vec::new()));
        // Settings follow writes: no re-read of this host's settings mid-test.
        let mut p = Pipeline::new(
            Correlator::new(Config::default()),
            scope,
            None,
            Enricher::new(true),
            vec![Box::new(Recording(got.clone()))],
            0,
        );
        let mut events = fixture_events(name).into_iter();
        let Some(Event { body: Body::CoreSettings(s), ts_ns, .. }) = events.next() else { panic!("{name} starts with its settings") };
        p.initial_settings(Some(s), ts_ns);
        for ev in events {
            p.decoded(Ok(ev));
        }
        // A record too short to decode is counted, not fatal.
        p.decoded(crate::decode::decode(&[1, 2]));
        p.flush();
        p.summary(Summary::default());
        got.take()
    }

    #[test]
    fn a_fixture_replayed_gives_its_events_its_verdict_and_a_summary() {
        let records = run("kill-segv", Scope::default());
        let events = records.iter().filter(|r| matches!(r, Record::Event(_))).count();
        // Plus the lookup of the core at the flush: the fixture's core file
        // is long gone, so it was searched for and not found.
        assert_eq!(events, fixture_events("kill-segv").len() + 1);
        let located: Vec<&crate::core_location::CoreLocation> = records
            .iter()
            .filter_map(|r| match r {
                Record::Event(e) => match &e.event.body {
                    Body::CoreLocated(l) => Some(l),
                    _ => None,
                },
                _ => None,
            })
            .collect();
        assert_eq!(located.len(), 1);
        assert_eq!((located[0].path.as_deref(), located[0].searched.clone()), (None, vec!["/tmp/tmp.IStF75IVD9".to_string()]));
        let verdicts: Vec<(Option<Verdict>, String)> =
            records.iter().filter_map(|r| if let Record::Verdict(c) = r { Some((c.verdict, c.reason.clone())) } else { None }).collect();
        assert_eq!(verdicts.len(), 1);
        // A file the kernel wrote and that is gone since: its word stands.
        assert_eq!(verdicts[0].0, Some(Verdict::Stored));
        assert!(verdicts[0].1.contains("the core file was not found"), "{}", verdicts[0].1);
        let Some(Record::Summary(s)) = records.last() else { panic!("the summary comes last: {records:?}") };
        assert_eq!((s.chains, s.decode_errors), (1, 1));
        assert_eq!(s.events as usize, events);
    }

    #[test]
    fn out_of_scope_leaves_only_the_settings() {
        let records = run("kill-segv", Scope::new(Some(4_000_000), false, None));
        assert!(!records.iter().any(|r| matches!(r, Record::Verdict(_))), "{records:?}");
        let kinds: Vec<&str> =
            records.iter().filter_map(|r| if let Record::Event(e) = r { Some(e.event.body.name()) } else { None }).collect();
        assert_eq!(kinds, vec!["core-settings"]);
    }
}
