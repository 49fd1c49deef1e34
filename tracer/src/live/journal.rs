//! The journal lookup off the event loop. `journalctl` can take up to its
//! timeout (half a second) to answer, and anyone who can crash processes
//! can make the tracer ask it once per crash; run on the loop, that would
//! starve the ring-buffer reader. A worker thread runs one `journalctl` at a
//! time; the loop queues a request (never waiting) and picks the answers up
//! on later ticks. The queue is bounded: a request that does not fit is
//! counted and the lookup goes on without the journal's word.

use std::{
    sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError},
    time::Duration,
};

use crate::core_location::JournalCoredump;

/// Requests waiting for the worker, at most.
pub const QUEUE_MAX: usize = 16;

/// One chain's request: the crasher's pid, as the journal names it.
struct Ask {
    chain_id: u64,
    pid: u32,
}

/// The journal's entry for one chain's crasher, if it had one.
#[derive(Debug, PartialEq)]
pub struct Answer {
    pub chain_id: u64,
    pub entry: Option<JournalCoredump>,
}

/// The loop's handle on the journal thread.
pub struct JournalWorker {
    /// None when the thread could not be started or has ended.
    asks: Option<SyncSender<Ask>>,
    answers: Option<Receiver<Answer>>,
    /// Requests not queued (queue full, or no worker).
    pub dropped: u64,
}

impl Default for JournalWorker {
    fn default() -> JournalWorker {
        JournalWorker::new()
    }
}

impl JournalWorker {
    /// A worker running `journalctl` ([`super::enrich::journal_entry`]).
    pub fn new() -> JournalWorker {
        JournalWorker::with_lookup(super::enrich::journal_entry)
    }

    /// A worker answering with `lookup` (in tests, something slower).
    pub fn with_lookup(mut lookup: impl FnMut(u32) -> Option<JournalCoredump> + Send + 'static) -> JournalWorker {
        let (asks, ask_rx) = mpsc::sync_channel::<Ask>(QUEUE_MAX);
        let (answer_tx, answers) = mpsc::channel::<Answer>();
        let spawned = std::thread::Builder::new().name("crashtrace-journal".into()).spawn(move || {
            // One request at a time: at most one journalctl runs. Ends when
            // the loop drops its sender.
            for Ask { chain_id, pid } in ask_rx {
                if answer_tx.send(Answer { chain_id, entry: lookup(pid) }).is_err() {
                    return;
                }
            }
        });
        match spawned {
            Ok(_) => JournalWorker { asks: Some(asks), answers: Some(answers), dropped: 0 },
            Err(_) => JournalWorker { asks: None, answers: None, dropped: 0 },
        }
    }

    /// Queues a lookup of `pid`'s entry for chain `chain_id`, without
    /// waiting. False (and counted) when it could not be queued: the queue
    /// is full or the worker is gone.
    pub fn ask(&mut self, chain_id: u64, pid: u32) -> bool {
        let Some(asks) = &self.asks else {
            self.dropped += 1;
            return false;
        };
        match asks.try_send(Ask { chain_id, pid }) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.dropped += 1;
                false
            }
            Err(TrySendError::Disconnected(_)) => {
                self.asks = None;
                self.dropped += 1;
                false
            }
        }
    }

    /// The answers ready now, without waiting.
    pub fn ready(&mut self) -> Vec<Answer> {
        let mut out = Vec::new();
        let Some(answers) = &self.answers else { return out };
        loop {
            match answers.try_recv() {
                Ok(a) => out.push(a),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    self.answers = None;
                    break;
                }
            }
        }
        out
    }

    /// The next answer, waiting at most `timeout` (at shutdown, when no
    /// later tick will pick it up).
    pub fn wait(&mut self, timeout: Duration) -> Option<Answer> {
        match self.answers.as_ref()?.recv_timeout(timeout) {
            Ok(a) => Some(a),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => {
                self.answers = None;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

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
        let queued = (0..QUEUE_MAX as u64 + 5).filter(|&i| w.ask(i, 100 + i as u32)).count();
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
