//! What happens to each event the ring buffer gives: decode, enrich,
//! correlate, scope, and out to the sinks; and to each chain that ends.
//! Knows nothing of aya or tokio: the loop in [`super`] feeds it.

use crate::{
    chain::Chain,
    core_pattern::{CoreSettings, DumpMode},
    correlate::{Correlator, CORE_LOOKUP_WINDOW_NS},
    decode::DecodeError,
    event::{Body, Event, Proc},
    record::{EventRecord, Line, Record, Stamp, Summary},
    render::wall,
    scope::{Lookup, Scope},
    sink::{Emitted, Sink, SinkSpec, Status},
    symbolize::Pending,
};

use super::{
    enrich::{self, Enricher, JournalWord, Located},
    journal::{self, JournalWorker},
    names::{Found, NameWorker},
    symbolizer::{SymbolizeWorker, DEADLINE},
    watch::WatchedPid,
};

/// Working directories kept for crashers at most.
const CWDS_MAX: usize = 1024;
/// Container roots held open at most: each is a file descriptor, and a
/// burst of container crashes must not exhaust the tracer's.
const FOREIGN_MAX: usize = 64;
/// Container names remembered (id → name, or that there is none), at most.
const NAMES_MAX: usize = 256;
/// How long a chain's verdict waits for its container's name to be read.
const NAME_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
/// Undecodable records reported on stderr, at most; more are only counted.
const DECODE_ERRORS_PRINTED: u64 = 10;
/// How long the final flush waits, in all, for the journal's answers still
/// out (no later tick will pick them up).
const FLUSH_JOURNAL_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

pub struct Pipeline {
    pub correlator: Correlator,
    scope: Scope,
    watched: Option<WatchedPid>,
    enrich: Enricher,
    /// The maps and stack copies of captured stacks, until their chains end.
    pending: Pending,
    /// Names the frames of captured stacks when their chains end, on its
    /// own thread.
    symbolizer: SymbolizeWorker,
    /// Runs the journal lookups of core searches off the loop.
    journal: JournalWorker,
    /// Chains whose journal lookup is queued, not yet answered.
    journal_asked: std::collections::BTreeSet<u64>,
    /// The journal's answers, by chain, until the chain's core search ends.
    journal_answers: std::collections::BTreeMap<u64, Option<crate::core_location::JournalCoredump>>,
    sinks: Vec<Box<dyn Sink>>,
    /// The core settings the last settings record gave.
    settings: Option<CoreSettings>,
    /// Wall-clock ns minus monotonic ns, from the start.
    mono_to_wall: i128,
    /// Crashers' working directories, for a relative file pattern (bounded).
    cwds: std::collections::BTreeMap<u32, String>,
    /// The roots of crashers in other mount namespaces (containers), held
    /// open until their core lookup ends; at most [`FOREIGN_MAX`].
    foreign: std::collections::BTreeMap<u32, enrich::ForeignFs>,
    /// The cgroup2 mount, found the first time a cgroup is named by id.
    cgroup2_mount: std::cell::OnceCell<Option<std::path::PathBuf>>,
    /// Reads podman container names off the loop ([`super::names`]).
    names: NameWorker,
    /// What the runtime's records said of each container, oldest first.
    container_names: Vec<(String, Found)>,
    /// Ids asked about, not yet answered.
    names_asked: std::collections::BTreeSet<String>,
    /// Ended chains waiting (bounded in time) for their container's name.
    awaiting_name: Vec<(Chain, std::time::Instant)>,
    pub decode_errors: u64,
    /// Chains shown with a dropped:* verdict (`--fail-on-drop`).
    pub dropped: u64,
    /// The header and the latest core-settings event as they were emitted
    /// (stamped), for sinks opened later.
    preamble: Vec<Line>,
    /// What the sinks were shown, for the summary: the chains in scope.
    shown: Shown,
    /// The run's identity, stamped on every record; None in tests and
    /// replays, whose records carry none.
    stamp: Option<Stamp>,
}

/// Counts of the chains shown and of those left out by the scope.
#[derive(Clone, Debug, Default)]
struct Shown {
    chains: u64,
    verdicts: std::collections::BTreeMap<String, u64>,
    kernel_said_dumped_but_dropped: u64,
    out_of_scope: u64,
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
            pending: Pending::default(),
            symbolizer: SymbolizeWorker::new(DEADLINE),
            journal: JournalWorker::new(),
            journal_asked: Default::default(),
            journal_answers: Default::default(),
            sinks,
            settings: None,
            mono_to_wall,
            cwds: Default::default(),
            foreign: Default::default(),
            cgroup2_mount: std::cell::OnceCell::new(),
            names: NameWorker::new(),
            container_names: Vec::new(),
            names_asked: Default::default(),
            awaiting_name: Vec::new(),
            decode_errors: 0,
            dropped: 0,
            preamble: Vec::new(),
            shown: Shown::default(),
            stamp: None,
        }
    }

    /// Hands a record to every sink.
    pub fn emit(&mut self, record: Record) {
        let out = match &mut self.stamp {
            Some(stamp) => Emitted::from_line(stamp.line(record, super::realtime_ns())),
            None => Emitted::new(record),
        };
        // Kept as stamped: a sink opened later gets the very same lines.
        match out.record() {
            Record::Header(_) => self.preamble = vec![out.line().clone()],
            Record::Event(e) if matches!(e.event.body, Body::CoreSettings(_)) => {
                self.preamble.truncate(1);
                self.preamble.push(out.line().clone());
            }
            _ => {}
        }
        for sink in &mut self.sinks {
            sink.write(&out);
        }
    }

    /// SIGHUP: every sink reopens what was renamed away. The first error is
    /// returned; the other sinks reopen all the same.
    pub fn reopen_sinks(&mut self) -> Result<(), crate::log::LogError> {
        let mut first = Ok(());
        for sink in &mut self.sinks {
            if let Err(e) = sink.reopen()
                && first.is_ok()
            {
                first = Err(e);
            }
        }
        first
    }

    /// Moves from the sinks `old` describes (the ones open, in order) to
    /// `new`: an output in both is kept (reopened, and given its new
    /// settings), the others are opened and given the header and settings
    /// first. If a new one cannot be opened, nothing changes.
    pub fn reconfigure_sinks(&mut self, old: &[SinkSpec], new: &[SinkSpec]) -> Result<(), crate::sink::SinkError> {
        let plan = keep_plan(old, new);
        // Open first: a failure leaves every sink as it was.
        let mut fresh = Vec::new();
        for (spec, keep) in new.iter().zip(&plan) {
            if keep.is_none() {
                fresh.push(spec.open()?);
            }
        }
        let mut current: Vec<Option<Box<dyn Sink>>> = std::mem::take(&mut self.sinks).into_iter().map(Some).collect();
        let mut fresh = fresh.into_iter();
        let preamble: Vec<Emitted> = self.preamble.iter().cloned().map(Emitted::from_line).collect();
        for (spec, keep) in new.iter().zip(plan) {
            let sink = match keep.and_then(|j| current.get_mut(j).and_then(Option::take)) {
                Some(mut sink) => {
                    sink.reconfigure(spec);
                    if let Err(e) = sink.reopen() {
                        crate::sink::warn(&format!("crashtrace: reopening an output: {e}"));
                    }
                    sink
                }
                None => {
                    let Some(mut sink) = fresh.next() else { continue };
                    for p in &preamble {
                        sink.prime(p);
                    }
                    sink
                }
            };
            self.sinks.push(sink);
        }
        Ok(())
    }

    /// Tracing began.
    /// Kernel frames are coming (`--kernel-stack`): load their symbols now.
    pub fn warm_kernel_symbols(&mut self) {
        self.symbolizer.warm_kernel();
    }

    pub fn started(&mut self, attach_ns: u64) {
        for sink in &mut self.sinks {
            sink.started(attach_ns);
        }
    }

    /// Records the sinks could not write.
    pub fn sink_failures(&self) -> u64 {
        self.sinks.iter().fold(0u64, |n, s| n.saturating_add(s.failures()))
    }

    /// Stamps every record from now on with the run's identity and a
    /// sequence number (see [`Stamp`]).
    pub fn set_stamp(&mut self, stamp: Stamp) {
        self.stamp = Some(stamp);
    }

    /// Why the tracer must stop, if a sink says so (`--log-full=stop`).
    pub fn fatal(&self) -> Option<String> {
        self.sinks.iter().find_map(|s| s.fatal())
    }

    /// Journal lookups of core searches not queued (the queue was full).
    pub fn journal_lookups_dropped(&self) -> u64 {
        self.journal.dropped
    }

    pub fn journal_failures(&self) -> u64 {
        self.sinks.iter().map(|s| s.journal_failures()).sum()
    }

    /// Hands the running totals to every sink (for the metrics).
    fn status(&mut self, now_ns: u64) {
        let status = Status {
            decode_errors: self.decode_errors,
            log_write_failures: self.sink_failures(),
            journal_failures: self.journal_failures(),
            open_chains: self.correlator.open_chains(),
            now_ns,
        };
        for sink in &mut self.sinks {
            sink.status(&status);
        }
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
                    crate::sink::warn(&format!("crashtrace: undecodable event ({e}); counted in the summary"));
                }
                return;
            }
        };
        self.enrich.event(&mut ev);
        match &ev.body {
            // The thread is acting on its fatal signal: its maps are still
            // there to read, and may not be by the time its chain ends.
            Body::StackCapture { .. } => self.pending.remember_maps(ev.task.tgid, enrich::maps(ev.task.tgid)),
            Body::StackCopy { sp, data } => self.pending.remember_stack_copy(ev.task.tgid, *sp, data.clone()),
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
            // The crasher is still alive here (it is acting on the signal),
            // unless the loop is behind: name its cgroup now, from /proc,
            // else from the path the group's mkdir event gave, else from the
            // group's id while the group exists.
            let path = enrich::cgroup_v2_path(ev.task.tgid)
                .or_else(|| self.correlator.cgroup_path(ev.cgroup_id).map(str::to_string))
                .or_else(|| {
                    let mount = self.cgroup2_mount.get_or_init(crate::loader::cgroup2_mount).as_deref()?;
                    enrich::cgroup_v2_path_by_id(ev.cgroup_id, mount)
                });
            if let Some(path) = path {
                // A podman container's name is read now, off the loop, so
                // it is there when the chain ends.
                if let Some(c) = crate::container::parse(&path).container
                    && c.runtime == crate::container::Runtime::Podman
                {
                    self.ask_name(&c.id);
                }
                self.correlator.learn_cgroup_path(ev.cgroup_id, path);
            }
            // A relative file pattern is relative to the crasher's working
            // directory, which is only to be read while it lives.
            let relative = self.settings.as_ref().map(|s| matches!(s.mode(), DumpMode::File { path } if !path.starts_with('/'))).unwrap_or(false);
            // A crasher in a container: the kernel writes a file-pattern
            // core in its mount namespace; hold its root for the lookup.
            let file = self.settings.as_ref().map(|s| matches!(s.mode(), DumpMode::File { .. })).unwrap_or(false);
            if file && let Some(f) = enrich::ForeignFs::of(ev.task.tgid) {
                if self.foreign.len() >= FOREIGN_MAX {
                    self.foreign.pop_first();
                }
                self.foreign.insert(ev.task.tgid, f);
            }
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
        self.event_of_chain(ev, None);
    }

    /// An event, if in scope, that belongs to `chain` if given (a core
    /// lookup's result), else to the chain the correlator says (a crashed
    /// process's cgroup teardown), if any.
    fn event_of_chain(&mut self, ev: &Event, chain: Option<u64>) {
        if !self.scope.event(ev, &Known(&self.correlator)) {
            return;
        }
        let wall_ns = wall(ev.ts_ns, self.mono_to_wall);
        let chain = chain.or_else(|| self.correlator.chain_of_cgroup_event(ev));
        self.emit(Record::Event(EventRecord { wall_ns, chain, event: ev.clone() }));
    }

    /// Queues a lookup of a podman container's name, unless it is known
    /// or asked already.
    fn ask_name(&mut self, id: &str) {
        if self.names_asked.contains(id) || self.container_names.iter().any(|(i, _)| i == id) {
            return;
        }
        if self.names.ask(id.to_string()) {
            self.names_asked.insert(id.to_string());
        }
    }

    /// Takes the names read so far; `wait`: how long to wait for the ones
    /// still asked (at shutdown).
    fn collect_names(&mut self, wait: Option<std::time::Duration>) {
        let mut answers = self.names.ready();
        if let Some(wait) = wait {
            let deadline = std::time::Instant::now() + wait;
            while self.names_asked.len() > answers.len() {
                let Some(a) = self.names.wait(deadline.saturating_duration_since(std::time::Instant::now())) else { break };
                answers.push(a);
            }
        }
        for a in answers {
            self.names_asked.remove(&a.id);
            if let Some(name) = &a.found.name {
                self.scope.learn_container_name(&a.id, name);
            }
            if self.container_names.len() >= NAMES_MAX {
                self.container_names.remove(0);
            }
            self.container_names.push((a.id, a.found));
        }
    }

    /// Shows the chains whose container name came, or waited long enough.
    fn release_awaiting(&mut self, all: bool) {
        self.collect_names(None);
        let now = std::time::Instant::now();
        let (go, stay): (Vec<_>, Vec<_>) = std::mem::take(&mut self.awaiting_name).into_iter().partition(|(chain, since)| {
            all || now.duration_since(*since) >= NAME_WAIT || !chain.container.as_ref().is_some_and(|c| self.names_asked.contains(&c.id))
        });
        self.awaiting_name = stay;
        for (chain, _) in go {
            self.show_verdict(chain);
        }
    }

    /// A chain that ended: shown now, or once its container's name is read
    /// (at most [`NAME_WAIT`] later).
    pub fn verdict(&mut self, mut chain: Chain) {
        chain.learn_context();
        if chain.container.as_ref().is_some_and(|c| self.names_asked.contains(&c.id)) {
            self.collect_names(None);
        }
        if chain.container.as_ref().is_some_and(|c| self.names_asked.contains(&c.id)) {
            self.awaiting_name.push((chain, std::time::Instant::now()));
            return;
        }
        self.show_verdict(chain);
    }

    /// A chain that ended, if in scope.
    fn show_verdict(&mut self, mut chain: Chain) {
        chain.learn_context();
        if let Some(c) = chain.container.as_mut()
            && let Some((_, found)) = self.container_names.iter().find(|(i, _)| *i == c.id)
        {
            c.name = found.name.clone();
        }
        self.scope.note_chain(&chain);
        if let Some(w) = self.watched.as_mut() {
            w.note_chain(&chain);
        }
        if chain.stalled {
            self.enrich.stall_evidence(&mut chain, self.scope.watched_pid());
        }
        if !self.scope.chain(&chain) {
            self.shown.out_of_scope += 1;
            return;
        }
        self.shown.chains += 1;
        *self.shown.verdicts.entry(chain.verdict.unwrap_or(crate::verdict::Verdict::Unknown).as_str().to_string()).or_default() += 1;
        if chain.misleading_core_dumped() {
            self.shown.kernel_said_dumped_but_dropped += 1;
        }
        if let Some(stack) = chain.stack.as_mut() {
            // On the worker thread, waiting at most its deadline: the chain
            // is over, its maps were read at delivery.
            let taken = self.pending.take(chain.crasher.tgid);
            self.symbolizer.symbolize(chain.crasher.tgid, stack, taken);
        }
        if chain.verdict.is_some_and(|v| v.is_dropped()) {
            self.dropped += 1;
        }
        self.emit(Record::Verdict(Box::new(chain)));
    }

    /// Re-checks the watched pid and reports a state change.
    pub fn check_watched(&mut self, now_ns: u64) {
        let Some(w) = self.watched.as_mut() else { return };
        let facts = enrich::watched_facts(w.pid(), w.handled_crash(), w.handled_signal(), w.crash_child_ended());
        if let Some(record) = w.observe(now_ns, &facts) {
            self.emit(Record::Watched(record));
        }
    }

    /// Ends every open chain.
    pub fn flush(&mut self) {
        self.locate_cores(0, true);
        // No later tick: wait (bounded in all) for the journal's answers
        // still out, then end the searches with what there is.
        let deadline = std::time::Instant::now() + FLUSH_JOURNAL_WAIT;
        while !self.journal_asked.is_empty() {
            let Some(answer) = self.journal.wait(deadline.saturating_duration_since(std::time::Instant::now())) else { break };
            if self.journal_asked.remove(&answer.chain_id) {
                self.journal_answers.insert(answer.chain_id, answer.entry);
            }
        }
        for id in std::mem::take(&mut self.journal_asked) {
            self.journal_answers.insert(id, None);
        }
        self.locate_cores(0, true);
        if self.journal.dropped > 0 {
            eprintln!(
                "crashtrace: {} core lookups went without the journal (too many were waiting for journalctl); `journalctl COREDUMP_PID=<pid>` shows what it kept",
                self.journal.dropped
            );
        }
        for chain in self.correlator.flush() {
            self.verdict(chain);
        }
        // No later tick: the names still out get a last, bounded wait.
        self.collect_names(Some(NAME_WAIT));
        self.release_awaiting(true);
    }

    /// Looks for the cores of chains whose dump is over (retrying on each
    /// tick for a while: a collector may write after it exits), and records
    /// each result as a `core-located` event, so the chain, the log and
    /// `report` all have it. `all_last`: the final attempt for every chain.
    /// The journal's part runs on [`JournalWorker`]: a search that needs it
    /// queues a request and ends on a later tick, with the answer.
    fn locate_cores(&mut self, now_ns: u64, all_last: bool) {
        for answer in self.journal.ready() {
            // Only for searches still waiting: a chain may have ended meanwhile.
            if self.journal_asked.remove(&answer.chain_id) {
                self.journal_answers.insert(answer.chain_id, answer.entry);
            }
        }
        let requests = self.correlator.core_requests();
        // Bounded: only answers for chains still searching are kept.
        let searching: std::collections::BTreeSet<u64> = requests.iter().map(|r| r.chain_id).collect();
        self.journal_answers.retain(|id, _| searching.contains(id));
        self.journal_asked.retain(|id| searching.contains(id));
        for req in requests {
            let last = all_last || now_ns >= req.complete_at_ns.saturating_add(CORE_LOOKUP_WINDOW_NS);
            let wall_start = wall(req.chain.first_ts_ns, self.mono_to_wall);
            let cwd = self.cwds.get(&req.chain.crasher.tgid).map(String::as_str);
            let journal = match self.journal_answers.get(&req.chain_id) {
                Some(entry) => JournalWord::Answered(entry.as_ref()),
                None => JournalWord::Unasked,
            };
            // The crasher's root as read at delivery or, when it was gone
            // by then, its container's upper layer from the runtime's records.
            // A root read at delivery without its cwd (the crasher exited
            // between the two reads) cannot place a relative pattern; the
            // runtime's records (upper layer and the spec's cwd) can.
            // Read only when they can add something: this runs on every
            // tick until the lookup ends.
            let read_whole = self.foreign.get(&req.chain.crasher.tgid).is_some_and(|f| !f.needs_records());
            let from_store = if read_whole { None } else { self.store_root(&req.chain) };
            if let (Some(read), Some(store)) = (self.foreign.get_mut(&req.chain.crasher.tgid), from_store.as_ref()) {
                read.complete_from(store);
            }
            let foreign = enrich::ForeignFs::best(self.foreign.get(&req.chain.crasher.tgid), from_store.as_ref());
            let loc = match enrich::locate_core(&req.chain, wall_start, cwd, foreign, last, journal) {
                Located::Done(loc) => loc,
                Located::Later => continue,
                Located::AskJournal => {
                    if !self.journal_asked.contains(&req.chain_id) {
                        if self.journal.ask(journal::Ask { chain_id: req.chain_id, pid: req.chain.crasher.tgid }) {
                            self.journal_asked.insert(req.chain_id);
                        } else {
                            // Not queued: the next look goes on without the journal.
                            if self.journal.dropped == 1 {
                                eprintln!(
                                    "crashtrace: too many core lookups waiting for journalctl; some cores are looked for without the journal (the count is given at exit)"
                                );
                            }
                            self.journal_answers.insert(req.chain_id, None);
                        }
                    }
                    continue;
                }
            };
            self.cwds.remove(&req.chain.crasher.tgid);
            self.foreign.remove(&req.chain.crasher.tgid);
            let ev = Event {
                ts_ns: now_ns.max(req.chain.last_ts_ns),
                cpu: 0,
                task: req.chain.crasher.clone(),
                cgroup_id: req.chain.cgroup_id,
                body: Body::CoreLocated(loc),
            };
            self.correlator.feed(&ev);
            self.event_of_chain(&ev, Some(req.chain_id));
        }
    }

    /// A podman container's root file system as its store names it, for a
    /// crasher whose own root could not be read while it lived.
    fn store_root(&self, chain: &Chain) -> Option<enrich::ForeignFs> {
        let file = matches!(chain.dump.as_ref().map(|d| &d.mode), Some(DumpMode::File { .. }));
        let c = crate::container::parse(chain.cgroup_path.as_deref()?).container.filter(|c| c.runtime == crate::container::Runtime::Podman)?;
        if !file {
            return None;
        }
        let (_, found) = self.container_names.iter().find(|(i, _)| *i == c.id)?;
        enrich::ForeignFs::from_store(found.upper.as_deref()?, found.cwd.clone())
    }

    /// The chains the idle timeouts end at `now_ns`.
    pub fn tick(&mut self, now_ns: u64) {
        self.release_awaiting(false);
        self.locate_cores(now_ns, false);
        for chain in self.correlator.tick(now_ns) {
            self.verdict(chain);
        }
        self.status(now_ns);
    }

    /// The last record. Its chains and verdicts are the ones shown (in
    /// scope), with a count of those the scope left out.
    pub fn summary(&mut self, mut summary: Summary) {
        let stats = self.correlator.stats();
        summary.events = stats.events;
        summary.chains = self.shown.chains;
        summary.verdicts = self.shown.verdicts.clone();
        summary.kernel_said_dumped_but_dropped = self.shown.kernel_said_dumped_but_dropped;
        summary.chains_out_of_scope = self.shown.out_of_scope;
        summary.decode_errors = self.decode_errors;
        summary.log_write_failures = self.sink_failures();
        summary.journal_failures = self.journal_failures();
        summary.log_sync_failures = self.sinks.iter().fold(0u64, |n, s| n.saturating_add(s.sync_failures()));
        self.emit(Record::Summary(summary));
    }
}

/// For each new sink, the old one it keeps, if any: the same output with
/// the same settings, or a log at the same path (which takes new settings
/// in place).
pub fn keep_plan(old: &[SinkSpec], new: &[SinkSpec]) -> Vec<Option<usize>> {
    let mut taken = vec![false; old.len()];
    new.iter()
        .map(|spec| {
            let j = old.iter().enumerate().position(|(j, o)| {
                !taken[j] && (o == spec || (matches!(spec, SinkSpec::Log { .. }) && o.same_output(spec)))
            })?;
            taken[j] = true;
            Some(j)
        })
        .collect()
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
            crate::schema_check::check_line(out.json());
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
        run_events(fixture_events(name), scope)
    }

    fn run_events(events: Vec<Event>, scope: Scope) -> Vec<Record> {
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
        let mut events = events.into_iter();
        let Some(Event { body: Body::CoreSettings(s), ts_ns, .. }) = events.next() else { panic!("the events start with the settings") };
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
    fn the_journal_lookup_runs_off_the_loop_and_its_answer_lands_on_a_later_tick() {
        use std::{sync::mpsc, time::Duration};
        // A systemd-coredump crash whose collector exited 0 (verdict
        // `stored`) and whose core is not in the store: the last look asks
        // the journal.
        let events: Vec<Event> = fixture_events("systemd-no-pid1")
            .into_iter()
            .filter(|e| !matches!(e.body, Body::HelperConnect { .. }) && !matches!(e.body, Body::SignalGenerate { sig: 13, .. }))
            .map(|mut e| {
                if let Body::ProcessExit { exit_code, .. } = &mut e.body
                    && *exit_code == 256
                {
                    *exit_code = 0;
                }
                e
            })
            .collect();
        let tgid = 14707;
        let core = std::env::temp_dir().join(format!("crashtrace-journal-{}.zst", std::process::id()));
        std::fs::write(&core, [1u8; 10]).unwrap();
        let got = Rc::new(RefCell::new(Vec::new()));
        let mut p = Pipeline::new(Correlator::new(Config::default()), Scope::default(), None, Enricher::new(true), vec![Box::new(Recording(got.clone()))], 0);
        // The fake journal says it was asked, then blocks until the test
        // lets it answer. If the loop waited for it, the ticks below would
        // come back only after its give-up time, with a location already
        // recorded.
        let (asked_tx, asked_rx) = mpsc::channel::<u32>();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let file = core.display().to_string();
        p.journal = JournalWorker::with_lookup(move |pid| {
            asked_tx.send(pid).ok()?;
            go_rx.recv_timeout(Duration::from_secs(60)).ok()?;
            Some(crate::core_location::JournalCoredump { filename: Some(file.clone()), truncated: true, message: None })
        });
        let mut events = events.into_iter();
        let Some(Event { body: Body::CoreSettings(s), ts_ns, .. }) = events.next() else { panic!("the events start with the settings") };
        p.initial_settings(Some(s), ts_ns);
        let mut last_ts = 0;
        for ev in events {
            last_ts = ev.ts_ns;
            p.decoded(Ok(ev));
        }
        let located = |got: &Rc<RefCell<Vec<Record>>>| -> Vec<crate::core_location::CoreLocation> {
            got.borrow()
                .iter()
                .filter_map(|r| match r {
                    Record::Event(e) => match &e.event.body {
                        Body::CoreLocated(l) => Some(l.clone()),
                        _ => None,
                    },
                    _ => None,
                })
                .collect()
        };
        // Within the window only the store is looked at.
        p.tick(last_ts + 200_000_000);
        assert_eq!(p.correlator.core_requests().len(), 1);
        // The last look asks the journal and returns without its answer.
        let after_window = last_ts + CORE_LOOKUP_WINDOW_NS + 200_000_000;
        p.tick(after_window);
        assert_eq!(asked_rx.recv_timeout(Duration::from_secs(60)), Ok(tgid));
        // The worker is now inside the (blocked) lookup; ticks still return.
        p.tick(after_window + 100_000_000);
        p.tick(after_window + 200_000_000);
        assert_eq!(located(&got), Vec::new());
        assert_eq!(p.correlator.core_requests().len(), 1);
        // Answered: a later tick picks it up.
        go_tx.send(()).unwrap();
        for _ in 0..6000 {
            p.tick(after_window + 300_000_000);
            if !located(&got).is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let found = located(&got);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!((found[0].path.as_deref(), found[0].found_by, found[0].truncated), (Some(core.display().to_string().as_str()), Some(crate::core_location::FoundBy::Journal), true));
        assert!(p.correlator.core_requests().is_empty());
        // Asked once only, although several ticks looked.
        assert!(asked_rx.try_recv().is_err());
        assert_eq!(p.journal_lookups_dropped(), 0);
        let _ = std::fs::remove_file(&core);
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
        // The lookup's record names the chain it is about, as the verdict does.
        let looked_up = records.iter().find_map(|r| match r {
            Record::Event(e) if matches!(e.event.body, Body::CoreLocated(_)) => Some(e.chain),
            _ => None,
        });
        let id = records.iter().find_map(|r| if let Record::Verdict(c) = r { Some(c.id) } else { None });
        assert_eq!(looked_up, Some(id));
        let Some(Record::Summary(s)) = records.last() else { panic!("the summary comes last: {records:?}") };
        assert_eq!((s.chains, s.decode_errors), (1, 1));
        assert_eq!(s.events as usize, events);
    }

    const SYSTEMD_PATTERN: &str = "|/lib/systemd/systemd-coredump %P %u %g %s %t 9223372036854775808 %h";

    /// One event from its JSON form (as a log has it), at `ms` milliseconds.
    fn event(ms: u64, pid: u32, comm: &str, body: serde_json::Value) -> Event {
        let mut v = serde_json::json!({ "ts_ns": ms * 1_000_000, "cpu": 0, "task": { "pid": pid, "tgid": pid, "comm": comm }, "cgroup_id": 1 });
        if let (Some(o), serde_json::Value::Object(b)) = (v.as_object_mut(), body) {
            o.extend(b);
        }
        serde_json::from_value(v).expect("a valid event")
    }

    fn segv(ms: u64, from: (u32, &str), to: (u32, &str), ppid: u32, handler: u64) -> Event {
        event(ms, from.0, from.1, serde_json::json!({ "event": "signal-generate", "sig": 11, "code": 0, "errno": 0, "group": 1, "result": 0,
            "info": "full", "target": { "pid": to.0, "tgid": to.0, "comm": to.1 }, "target_ppid": ppid, "target_handler": handler, "si_pid": from.0, "si_uid": 0 }))
    }

    fn deliver(ms: u64, who: (u32, &str), ppid: u32, handler: u64) -> Event {
        event(ms, who.0, who.1, serde_json::json!({ "event": "signal-deliver", "sig": 11, "code": 0, "errno": 0, "info": "full",
            "sa_handler": handler, "sa_flags": 0, "rlimit_core": null, "ppid": ppid, "dumpable": 1 }))
    }

    fn exit(ms: u64, who: (u32, &str), code: i32, ppid: u32, role: &str) -> Event {
        event(ms, who.0, who.1, serde_json::json!({ "event": "process-exit", "exit_code": code, "ppid": ppid, "roles": [role] }))
    }

    fn helper(ms: u64, who: (u32, &str), argv: &[&str]) -> Event {
        event(ms, who.0, who.1, serde_json::json!({ "event": "helper-exec", "filename": argv[0], "argv": argv, "args_truncated": false }))
    }

    /// As on Debian bookworm with systemd 252 as PID 1: PID 1 catches
    /// SIGSEGV, its crash child dumps, systemd-coredump handling that child
    /// writes `|/bin/false` to core_pattern (PID 1 cannot take cores any
    /// more), and the next crash on the host is discarded by it. An
    /// unrelated SIGKILL before all that is not PID 1's story.
    fn pid1_crash_then_discard() -> Vec<Event> {
        let settings = CoreSettings {
            core_pattern: SYSTEMD_PATTERN.into(),
            core_pipe_limit: 0,
            core_uses_pid: false,
            helper_executable: Some(true),
            set_by: None,
        };
        let systemd = (1, "systemd");
        let child = (900, "systemd");
        let coredump = (901, "systemd-coredum");
        vec![
            Event { ts_ns: 0, cpu: 0, task: Proc::default(), cgroup_id: 0, body: Body::CoreSettings(settings) },
            event(5, 4242, "bash", serde_json::json!({ "event": "signal-generate", "sig": 9, "code": 0, "errno": 0, "group": 1, "result": 0,
                "info": "full", "target": { "pid": 2500, "tgid": 2500, "comm": "sleep" }, "target_ppid": 4242, "target_handler": 0, "si_pid": 4242, "si_uid": 0 })),
            exit(6, (2500, "sleep"), 9, 4242, "crasher"),
            segv(1000, (4242, "bash"), systemd, 0, 0x55d0_1000),
            deliver(1001, systemd, 0, 0x55d0_1000),
            event(1002, 1, "systemd", serde_json::json!({ "event": "process-fork", "child": 900 })),
            segv(1003, child, child, 1, 0),
            deliver(1004, child, 1, 0),
            helper(1005, coredump, &["/lib/systemd/systemd-coredump", "900", "0", "0", "11", "1", "9223372036854775808", "host"]),
            event(1006, 901, "systemd-coredum", serde_json::json!({ "event": "sysctl-write", "name": "kernel/core_pattern",
                "old_value": SYSTEMD_PATTERN, "new_value": "|/bin/false" })),
            exit(1007, coredump, 0, 2, "helper"),
            exit(1008, child, 0x8b, 1, "crasher"),
            segv(5000, (3000, "app"), (3000, "app"), 77, 0),
            deliver(5001, (3000, "app"), 77, 0),
            helper(5002, (3001, "false"), &["/bin/false"]),
            exit(5003, (3001, "false"), 1 << 8, 2, "helper"),
            exit(5004, (3000, "app"), 0x8b, 77, "crasher"),
        ]
    }

    #[test]
    fn pid1s_scope_includes_the_discard_its_crash_caused_and_counts_what_it_showed() {
        let records = run_events(pid1_crash_then_discard(), Scope::new(Some(1), true, None));
        let shown: Vec<(u32, Option<Verdict>)> =
            records.iter().filter_map(|r| if let Record::Verdict(c) = r { Some((c.crasher.tgid, c.verdict)) } else { None }).collect();
        assert!(shown.contains(&(3000, Some(Verdict::CorePatternDiscards))), "the |/bin/false discard PID 1's crash caused: {shown:?}");
        assert!(shown.iter().any(|(p, _)| *p == 1) && shown.iter().any(|(p, _)| *p == 900), "{shown:?}");
        assert!(!shown.iter().any(|(p, _)| *p == 2500), "an unrelated SIGKILL is not PID 1's story: {shown:?}");
        assert!(
            records.iter().any(|r| matches!(r, Record::Event(e) if e.event.body.name() == "sysctl-write")),
            "the write of |/bin/false by the crash child's collector is shown"
        );
        let Some(Record::Summary(s)) = records.last() else { panic!("the summary comes last: {records:?}") };
        assert_eq!(s.chains as usize, shown.len(), "the summary counts the chains shown: {s:?}");
        assert_eq!(s.verdicts.values().sum::<u64>() as usize, shown.len(), "{s:?}");
        assert_eq!(s.chains_out_of_scope, 1, "{s:?}");
    }

    /// `report` replays the logged events and found "systemd-coredump did
    /// not exit" for PID 1's crash child, while the verdict record's
    /// timeline showed the exit: with `--pid 1` the collector's exit was
    /// never logged. Every event a recorded verdict rests on must be logged,
    /// so that the replay agrees with the record.
    #[test]
    fn a_logged_pid1_run_replays_to_the_verdicts_it_recorded() {
        let records = run_events(pid1_crash_then_discard(), Scope::new(Some(1), true, None));
        let logged: Vec<Event> =
            records.iter().filter_map(|r| if let Record::Event(e) = r { Some(e.event.clone()) } else { None }).collect();
        assert!(
            logged.iter().any(|e| e.task.tgid == 901 && e.body.name() == "process-exit"),
            "the crash child's collector's exit is logged: {:?}",
            logged.iter().map(|e| (e.task.tgid, e.body.name())).collect::<Vec<_>>()
        );
        let mut replay = Correlator::new(Config::default());
        let mut rebuilt = Vec::new();
        for ev in &logged {
            rebuilt.extend(replay.feed(ev));
        }
        rebuilt.extend(replay.flush());
        // The chains of PID 1 and its crash child; the discard PID 1's crash
        // caused is known to be in scope only when its chain ends, after
        // its first events went by.
        for r in &records {
            let Record::Verdict(recorded) = r else { continue };
            if ![1, 900].contains(&recorded.crasher.tgid) {
                continue;
            }
            let again = rebuilt
                .iter()
                .find(|c| c.crasher.tgid == recorded.crasher.tgid)
                .unwrap_or_else(|| panic!("no replayed chain for {}", recorded.crasher));
            assert_eq!(again.verdict, recorded.verdict, "{}: replayed {:?} ({}) vs recorded", recorded.crasher, again.verdict, again.reason);
        }
    }

    #[test]
    fn out_of_scope_leaves_only_the_settings() {
        let records = run("kill-segv", Scope::new(Some(4_000_000), false, None));
        assert!(!records.iter().any(|r| matches!(r, Record::Verdict(_))), "{records:?}");
        let kinds: Vec<&str> =
            records.iter().filter_map(|r| if let Record::Event(e) = r { Some(e.event.body.name()) } else { None }).collect();
        assert_eq!(kinds, vec!["core-settings"]);
    }

    /// Records of each line of a log file, by type.
    fn types_in(path: &std::path::Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["type"].as_str().unwrap().to_string())
            .collect()
    }

    fn pipeline_with(sinks: Vec<Box<dyn Sink>>) -> Pipeline {
        Pipeline::new(Correlator::new(Config::default()), Scope::default(), None, Enricher::new(true), sinks, 0)
    }

    fn header() -> Record {
        Record::Header(crate::record::Header {
            tracer_version: "0.1.0".into(),
            kernel: "6.18".into(),
            hostname: "vm".into(),
            boot_id: "b".into(),
            start_wall_ns: 1,
            start_mono_ns: 1,
            dump_mode: "inferred".into(),
            dump_mode_reason: "test".into(),
            hooks: vec![],
            core_settings: None,
            watched_pid: None,
        })
    }

    struct Dir(PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    fn dir(name: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("crashtrace-pipeline-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }

    #[test]
    fn a_log_renamed_away_is_reopened_at_its_path_with_the_header() {
        let d = dir("reopen");
        let path = d.0.join("ct.jsonl");
        let spec = SinkSpec::Log { path: path.clone(), options: crate::log::LogOptions::default() };
        let mut p = pipeline_with(vec![spec.open().unwrap()]);
        p.emit(header());
        p.emit(Record::Summary(Summary::default()));
        // Nothing moved: reopening keeps the same file, and adds nothing.
        p.reopen_sinks().unwrap();
        assert_eq!(types_in(&path), ["header", "summary"]);
        // logrotate: rename, then SIGHUP.
        let rotated = d.0.join("ct.jsonl.1");
        std::fs::rename(&path, &rotated).unwrap();
        p.emit(Record::Summary(Summary::default()));
        p.reopen_sinks().unwrap();
        p.emit(Record::Summary(Summary { events: 7, ..Summary::default() }));
        assert_eq!(types_in(&rotated), ["header", "summary", "summary"], "records before the SIGHUP go to the renamed file");
        assert_eq!(types_in(&path), ["header", "summary"], "the new file starts with the header");
    }

    #[test]
    fn reconfiguring_keeps_a_log_at_the_same_path_and_opens_a_new_one_with_the_header() {
        let d = dir("reconfigure");
        let (a, b) = (d.0.join("a.jsonl"), d.0.join("b.jsonl"));
        let log = |path: &PathBuf, keep| SinkSpec::Log { path: path.clone(), options: crate::log::LogOptions { keep, ..Default::default() } };
        let old = vec![log(&a, 5)];
        let mut p = pipeline_with(vec![old[0].open().unwrap()]);
        p.emit(header());
        // Same path, other settings: the same writer, no second header.
        let same = vec![log(&a, 2)];
        p.reconfigure_sinks(&old, &same).unwrap();
        p.emit(Record::Summary(Summary::default()));
        assert_eq!(types_in(&a), ["header", "summary"]);
        // Another path: a new file that reads on its own.
        let moved = vec![log(&b, 2)];
        p.reconfigure_sinks(&same, &moved).unwrap();
        p.emit(Record::Summary(Summary::default()));
        assert_eq!(types_in(&b), ["header", "summary"]);
        assert_eq!(types_in(&a), ["header", "summary"], "the old log gets nothing more");
        // A log that cannot be opened changes nothing.
        let bad = vec![log(&d.0.join("missing-dir/c.jsonl"), 2)];
        assert!(p.reconfigure_sinks(&moved, &bad).is_err());
        p.emit(Record::Summary(Summary::default()));
        assert_eq!(types_in(&b), ["header", "summary", "summary"]);
    }

    #[test]
    fn a_log_opened_by_a_reload_starts_with_the_header_as_stamped() {
        let d = dir("reload-stamp");
        let (a, b) = (d.0.join("a.jsonl"), d.0.join("b.jsonl"));
        let log = |path: &PathBuf| SinkSpec::Log { path: path.clone(), options: crate::log::LogOptions::default() };
        let mut p = pipeline_with(vec![log(&a).open().unwrap()]);
        p.set_stamp(Stamp::new("12".repeat(16), crate::record::Host { name: "vm".into(), boot: "b".into(), machine: "m".into() }));
        p.emit(header());
        p.emit(Record::Summary(Summary::default()));
        p.reconfigure_sinks(&[log(&a)], &[log(&b)]).unwrap();
        p.emit(Record::Summary(Summary::default()));
        let first: Vec<Line> = std::fs::read_to_string(&a).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let second: Vec<Line> = std::fs::read_to_string(&b).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        // The very header the first log has: same run, sequence number and time.
        assert_eq!(second[0], first[0]);
        assert_eq!((second[0].run.as_deref(), second[0].seq), (Some("12121212121212121212121212121212"), Some(0)));
        assert_eq!(second[1].seq, Some(2), "the run's records go on counting");
    }

    #[test]
    fn keep_plan_keeps_equal_outputs_and_logs_by_path() {
        use crate::render::Style;
        let text = |color| SinkSpec::Text { style: Style { color }, verdicts_only: false };
        let log = |p: &str, keep| SinkSpec::Log { path: p.into(), options: crate::log::LogOptions { keep, ..Default::default() } };
        assert_eq!(keep_plan(&[log("/a", 1), text(false)], &[log("/a", 2), text(false)]), [Some(0), Some(1)]);
        assert_eq!(keep_plan(&[log("/a", 1), text(false)], &[log("/b", 1), text(true)]), [None, None]);
        assert_eq!(keep_plan(&[log("/a", 1), text(false)], &[SinkSpec::JsonLines]), [None]);
        assert_eq!(keep_plan(&[text(false)], &[log("/a", 1), text(false)]), [None, Some(0)]);
    }
}
