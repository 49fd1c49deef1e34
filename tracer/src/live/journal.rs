//! The journal lookup off the event loop. `journalctl` can take up to its
//! timeout (half a second) to answer, and anyone who can crash processes
//! can make the tracer ask it once per crash; run on the loop, that would
//! starve the ring-buffer reader. A worker thread runs one `journalctl` at a
//! time; the loop queues a request (never waiting) and picks the answers up
//! on later ticks. The queue is bounded: a request that does not fit is
//! counted and the lookup goes on without the journal's word.

use super::worker::Worker;
use crate::core_location::JournalCoredump;

/// Requests waiting for the worker, at most.
pub const QUEUE_MAX: usize = 16;

/// One chain's request: the crasher's pid, as the journal names it.
#[derive(Debug)]
pub struct Ask {
    pub chain_id: u64,
    pub pid: u32,
}

/// The journal's entry for one chain's crasher, if it had one.
#[derive(Debug, PartialEq)]
pub struct Answer {
    pub chain_id: u64,
    pub entry: Option<JournalCoredump>,
}

/// The loop's handle on the journal thread.
pub type JournalWorker = Worker<Ask, Answer>;

impl Default for Worker<Ask, Answer> {
    fn default() -> JournalWorker {
        JournalWorker::new()
    }
}

impl Worker<Ask, Answer> {
    /// A worker running `journalctl` ([`super::enrich::journal_entry`]).
    pub fn new() -> JournalWorker {
        JournalWorker::with_lookup(super::enrich::journal_entry)
    }

    /// A worker answering with `lookup` (in tests, something slower). One
    /// request at a time: at most one journalctl runs.
    pub fn with_lookup(mut lookup: impl FnMut(u32) -> Option<JournalCoredump> + Send + 'static) -> JournalWorker {
        Worker::spawn("crashtrace-journal", QUEUE_MAX, move |Ask { chain_id, pid }| Answer { chain_id, entry: lookup(pid) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{
        sync::{mpsc, Arc, Mutex},
        time::Duration,
    };

    #[test]
    fn a_full_queue_drops_and_counts_and_answers_come_back_in_order() {
        // The lookup blocks until the test lets it go: the queue fills.
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let go_rx = Arc::new(Mutex::new(go_rx));
        let mut w = JournalWorker::with_lookup(move |pid| {
            go_rx.lock().ok()?.recv().ok()?;
            Some(JournalCoredump { message: Some(format!("pid {pid}")), ..JournalCoredump::default() })
        });
        // One taken by the worker (blocked), QUEUE_MAX queued; the rest
        // dropped. The worker may not have taken the first yet, so one more
        // may be dropped.
        let queued = (0..QUEUE_MAX as u64 + 5).filter(|&i| w.ask(Ask { chain_id: i, pid: 100 + i as u32 })).count();
        assert!(queued == QUEUE_MAX || queued == QUEUE_MAX + 1, "{queued}");
        assert_eq!(w.dropped as usize, QUEUE_MAX + 5 - queued);
        assert_eq!(w.ready(), Vec::new());
        for _ in 0..queued {
            go_tx.send(()).unwrap();
        }
        let got: Vec<Answer> = (0..queued).filter_map(|_| w.wait(Duration::from_secs(60))).collect();
        let want: Vec<Answer> = (0..queued as u64)
            .map(|i| Answer { chain_id: i, entry: Some(JournalCoredump { message: Some(format!("pid {}", 100 + i)), ..JournalCoredump::default() }) })
            .collect();
        assert_eq!(got, want);
    }
}
