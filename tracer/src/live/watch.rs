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
    reported: Option<watched::State>,
}

impl WatchedPid {
    pub fn new(pid: u32) -> WatchedPid {
        WatchedPid { pid, handled: None, reported: None }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Learns from a finished chain whether it was a crash the pid's own
    /// handler caught.
    pub fn note_chain(&mut self, chain: &Chain) {
        if is_handled_crash_of(self.pid, chain) {
            self.handled = Some((chain.id, chain.signal.clone()));
        }
    }

    pub fn handled_crash(&self) -> Option<u64> {
        self.handled.as_ref().map(|(id, _)| *id)
    }

    pub fn handled_signal(&self) -> Option<String> {
        self.handled.as_ref().map(|(_, sig)| sig.clone())
    }

    /// The record to emit if the facts show a new state.
    pub fn observe(&mut self, now_ns: u64, facts: &watched::Facts) -> Option<Watched> {
        let (state, evidence) = watched::assess(facts);
        if self.reported == Some(state) {
            return None;
        }
        self.reported = Some(state);
        Some(Watched { ts_ns: now_ns, pid: self.pid, state, evidence })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
