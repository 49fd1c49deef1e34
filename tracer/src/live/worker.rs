//! One worker thread behind a bounded request queue, for lookups that may
//! block (running `journalctl`, reading a runtime's records) and so must
//! stay off the event loop. The loop queues a request without waiting and
//! picks the answers up on later ticks; a request that does not fit, or
//! finds the worker gone, is counted in [`Worker::dropped`], never waited
//! for. The worker answers one request at a time, in order.

use std::{
    sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError},
    time::Duration,
};

/// The loop's handle on a worker answering `Q` requests with `A`s.
pub struct Worker<Q, A> {
    /// None when the thread could not be started or has ended.
    asks: Option<SyncSender<Q>>,
    answers: Option<Receiver<A>>,
    /// Requests not queued (queue full, or no worker).
    pub dropped: u64,
}

impl<Q: Send + 'static, A: Send + 'static> Worker<Q, A> {
    /// Starts thread `name`, answering each request with `answer`; at most
    /// `queue` requests wait for it. Without a thread (the spawn failed)
    /// every request is dropped and counted.
    pub fn spawn(name: &str, queue: usize, mut answer: impl FnMut(Q) -> A + Send + 'static) -> Worker<Q, A> {
        let (asks, ask_rx) = mpsc::sync_channel::<Q>(queue);
        let (answer_tx, answers) = mpsc::channel::<A>();
        let spawned = std::thread::Builder::new().name(name.into()).spawn(move || {
            // Ends when the loop drops its sender, or its receiver.
            for q in ask_rx {
                if answer_tx.send(answer(q)).is_err() {
                    return;
                }
            }
        });
        match spawned {
            Ok(_) => Worker { asks: Some(asks), answers: Some(answers), dropped: 0 },
            Err(_) => Worker { asks: None, answers: None, dropped: 0 },
        }
    }

    /// Queues `q` without waiting. False (and counted) when it could not be
    /// queued: the queue is full or the worker is gone.
    pub fn ask(&mut self, q: Q) -> bool {
        let Some(asks) = &self.asks else {
            self.dropped += 1;
            return false;
        };
        match asks.try_send(q) {
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
    pub fn ready(&mut self) -> Vec<A> {
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
    pub fn wait(&mut self, timeout: Duration) -> Option<A> {
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
