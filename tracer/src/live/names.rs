//! Container names, read off the event loop. The cgroup path names a
//! podman container by id only; its name (`podman run --name`) is in
//! containers/storage's `containers.json` (see
//! [`crate::container::PODMAN_CONTAINERS_JSON`]), a root-owned file of the
//! host that grows with the number of containers. A worker thread reads it,
//! one request at a time; the loop queues requests without waiting and
//! picks the answers up later. Only the system store is read, at a fixed
//! path, and only if root owns it: nothing the crasher controls decides
//! what is read, and its id is only compared with the file's.

use std::{
    io::Read,
    sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError},
    time::Duration,
};

use crate::container::{podman_name, PODMAN_CONTAINERS_JSON};

/// Requests waiting for the worker, at most.
pub const QUEUE_MAX: usize = 16;
/// The largest `containers.json` read: about 1 KiB a container.
const FILE_MAX: u64 = 16 << 20;

/// One container's name, if the runtime's records gave one.
#[derive(Debug, PartialEq)]
pub struct Answer {
    pub id: String,
    pub name: Option<String>,
}

/// The loop's handle on the names thread.
pub struct NameWorker {
    asks: Option<SyncSender<String>>,
    answers: Option<Receiver<Answer>>,
    /// Requests not queued (queue full, or no worker).
    pub dropped: u64,
}

impl NameWorker {
    /// A worker reading podman's system store.
    pub fn new() -> NameWorker {
        NameWorker::with_lookup(podman_name_of)
    }

    /// A worker answering with `lookup` (tests).
    pub fn with_lookup(lookup: impl Fn(&str) -> Option<String> + Send + 'static) -> NameWorker {
        let (asks, ask_rx) = mpsc::sync_channel::<String>(QUEUE_MAX);
        let (answer_tx, answers) = mpsc::channel::<Answer>();
        let spawned = std::thread::Builder::new().name("crashtrace-names".into()).spawn(move || {
            for id in ask_rx {
                let name = lookup(&id);
                if answer_tx.send(Answer { id, name }).is_err() {
                    return;
                }
            }
        });
        match spawned {
            Ok(_) => NameWorker { asks: Some(asks), answers: Some(answers), dropped: 0 },
            Err(_) => NameWorker { asks: None, answers: None, dropped: 0 },
        }
    }

    /// Queues a lookup of container `id`, without waiting; false (and
    /// counted) when it could not be queued.
    pub fn ask(&mut self, id: &str) -> bool {
        let Some(asks) = &self.asks else {
            self.dropped += 1;
            return false;
        };
        match asks.try_send(id.to_string()) {
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

    /// The next answer, waiting at most `timeout` (at shutdown).
    pub fn wait(&mut self, timeout: Duration) -> Option<Answer> {
        self.answers.as_ref()?.recv_timeout(timeout).ok()
    }
}

/// Container `id`'s name in podman's system store, if root owns the file
/// and it is not too large. Blocks on a file read: the worker's job.
pub fn podman_name_of(id: &str) -> Option<String> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    for path in PODMAN_CONTAINERS_JSON {
        let Ok(f) = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC).open(path) else {
            continue;
        };
        let Ok(meta) = f.metadata() else { continue };
        if !meta.is_file() || meta.uid() != 0 || meta.mode() & 0o022 != 0 || meta.len() > FILE_MAX {
            continue;
        }
        let mut text = String::new();
        if f.take(FILE_MAX).read_to_string(&mut text).is_err() {
            continue;
        }
        if let Some(name) = podman_name(&text, id) {
            return Some(name);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_come_back_off_the_loop() {
        let mut w = NameWorker::with_lookup(|id| (id == "abc").then(|| "web".to_string()));
        assert!(w.ask("abc") && w.ask("def"));
        let got: Vec<Answer> = (0..2).filter_map(|_| w.wait(Duration::from_secs(30))).collect();
        assert_eq!(got, vec![Answer { id: "abc".into(), name: Some("web".into()) }, Answer { id: "def".into(), name: None }]);
        assert_eq!(w.dropped, 0);
    }
}
