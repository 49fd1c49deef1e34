//! The watched pid (`--pid`) as the live tracer follows it: the crash its
//! own handler caught, and the state last reported, so that a `watched`
//! record is emitted only when the state changes. Pure: the facts are read
//! by [`super::enrich`], judged by [`crate::watched::assess`].

use crate::{chain::Chain, record::Watched, scope::is_handled_crash_of, watched};

#[derive(Clone, Debug)]
pub struct WatchedPid {
    pid: u32,
    /// The crash its own handler caught: (chain, signal).
    handled: Option<(u64, String)>,
    /// A chain linked to that crash (its crash child's) has ended.
    crash_child_ended: bool,
    /// The state and evidence last reported.
    reported: Option<(watched::State, Vec<String>)>,
}

impl WatchedPid {
    pub fn new(pid: u32) -> WatchedPid {
        WatchedPid { pid, handled: None, crash_child_ended: false, reported: None }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Learns from a finished chain whether it was a crash the pid's own
    /// handler caught.
    pub fn note_chain(&mut self, chain: &Chain) {
        if is_handled_crash_of(self.pid, chain) {
            self.handled = Some((chain.id, chain.signal.clone()));
            self.crash_child_ended = false;
        } else if chain.linked_to.is_some() && chain.linked_to == self.handled_crash() {
            // The child its handler forked (systemd's crash child) is done.
            self.crash_child_ended = true;
        }
    }

    pub fn crash_child_ended(&self) -> bool {
        self.crash_child_ended
    }

    pub fn handled_crash(&self) -> Option<u64> {
        self.handled.as_ref().map(|(id, _)| *id)
    }

    pub fn handled_signal(&self) -> Option<String> {
        self.handled.as_ref().map(|(_, sig)| sig.clone())
    }

    /// The record to emit if the facts show a new state, or the same state
    /// on new evidence (fds closing one by one while PID 1 freezes): the
    /// last record must say what holds now.
    pub fn observe(&mut self, now_ns: u64, facts: &watched::Facts) -> Option<Watched> {
        let (state, evidence) = watched::assess(facts);
        if self.reported.as_ref() == Some(&(state, evidence.clone())) {
            return None;
        }
        self.reported = Some((state, evidence.clone()));
        Some(Watched { ts_ns: now_ns, pid: self.pid, state, evidence })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PID 1 stays "handling-crash" while it closes its fds: the record that
    /// said "43 file descriptors open" must not be the last word once it has
    /// closed them.
    #[test]
    fn evidence_that_changes_is_reported_again() {
        let mut w = WatchedPid::new(1);
        let handling = watched::Facts {
            alive: true,
            handled_crash: Some(4),
            handled_signal: Some("SIGSEGV".into()),
            wchan: "do_wait".into(),
            open_fds: Some(43),
            socket_fds: 12,
            ..Default::default()
        };
        let first = w.observe(1, &handling).expect("first report");
        assert!(first.evidence.iter().any(|e| e.contains("43 file descriptors")), "{first:?}");
        assert_eq!(w.observe(2, &handling), None, "nothing changed");
        let fewer = watched::Facts { open_fds: Some(20), socket_fds: 5, ..handling.clone() };
        let second = w.observe(3, &fewer).expect("the fd count changed");
        assert_eq!(second.state, watched::State::HandlingCrash);
        assert!(second.evidence.iter().any(|e| e.contains("20 file descriptors")), "{second:?}");
    }

    /// The crash chain of the child the handler forked ends: the watched
    /// pid learns it, and with only stdio left and waitid forever, it is
    /// frozen.
    #[test]
    fn the_crash_childs_chain_ending_lets_pid1_be_frozen() {
        use crate::{chain::Chain, event::Proc, verdict::Verdict};
        let mut w = WatchedPid::new(1);
        let mut handled = Chain::new(4, Proc { pid: 1, tgid: 1, comm: "systemd".into() }, 11, 1);
        handled.verdict = Some(Verdict::Handled);
        w.note_chain(&handled);
        let mut child = Chain::new(5, Proc { pid: 900, tgid: 900, comm: "systemd".into() }, 11, 2);
        child.linked_to = Some(4);
        child.verdict = Some(Verdict::Stored);
        let facts = |w: &WatchedPid| watched::Facts {
            alive: true,
            handled_crash: w.handled_crash(),
            handled_signal: w.handled_signal(),
            crash_child_ended: w.crash_child_ended(),
            wchan: "do_wait".into(),
            syscall: Some(247),
            open_fds: Some(3),
            ..Default::default()
        };
        assert_eq!(w.observe(3, &facts(&w)).map(|r| r.state), Some(watched::State::HandlingCrash));
        w.note_chain(&child);
        let r = w.observe(4, &facts(&w)).expect("a new state");
        assert_eq!(r.state, watched::State::FrozenInCrashHandler, "{r:?}");
    }

    #[test]
    fn a_state_is_reported_once_until_it_changes() {
        let mut w = WatchedPid::new(9);
        let alive = watched::Facts { alive: true, ..Default::default() };
        let first = w.observe(1, &alive).expect("the first state is reported");
        assert_eq!((first.pid, first.state.as_str()), (9, "running"));
        assert_eq!(w.observe(2, &alive), None);
        let gone = w.observe(3, &watched::Facts::default()).expect("a change is reported");
        assert_eq!(gone.state, crate::watched::State::Exited);
        assert_eq!(gone.ts_ns, 3);
    }
}
