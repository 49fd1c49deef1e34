//! Container names, read off the event loop. The cgroup path names a
//! podman container by id only; its name (`podman run --name`) is in
//! containers/storage's `containers.json` (see
//! [`crate::container::PODMAN_CONTAINERS_JSON`]), a root-owned file of the
//! host that grows with the number of containers. A worker thread reads it,
//! one request at a time; the loop queues requests without waiting and
//! picks the answers up later. Only the system store is read, at a fixed
//! path, and only if root owns it: nothing the crasher controls decides
//! what is read, and its id is only compared with the file's.

use std::io::Read;

use super::worker::Worker;

use crate::container::{oci_cwd, podman_record, PODMAN_CONTAINERS_JSON};

/// Requests waiting for the worker, at most.
pub const QUEUE_MAX: usize = 16;
/// The largest `containers.json` read: about 1 KiB a container.
const FILE_MAX: u64 = 16 << 20;

/// What the runtime's records say of one container.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Found {
    pub name: Option<String>,
    /// Its overlay upper directory on the host: its root file system's
    /// own files, kept until the container is removed.
    pub upper: Option<String>,
    /// Its process's working directory, from its OCI spec.
    pub cwd: Option<String>,
}

/// One container's answer.
#[derive(Debug, PartialEq)]
pub struct Answer {
    pub id: String,
    pub found: Found,
}

/// The loop's handle on the names thread: container ids in, answers out.
pub type NameWorker = Worker<String, Answer>;

impl Default for Worker<String, Answer> {
    fn default() -> NameWorker {
        NameWorker::new()
    }
}

impl Worker<String, Answer> {
    /// A worker reading podman's system store.
    pub fn new() -> NameWorker {
        NameWorker::with_lookup(podman_lookup)
    }

    /// A worker answering with `lookup` (tests).
    pub fn with_lookup(lookup: impl Fn(&str) -> Found + Send + 'static) -> NameWorker {
        Worker::spawn("crashtrace-names", QUEUE_MAX, move |id: String| {
            let found = lookup(&id);
            Answer { id, found }
        })
    }
}

/// A root-owned, not group- or world-writable regular file of at most
/// [`FILE_MAX`] bytes, read without following a symlink.
fn read_trusted(path: &str) -> Option<String> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let f = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC).open(path).ok()?;
    let meta = f.metadata().ok()?;
    if !meta.is_file() || meta.uid() != 0 || meta.mode() & 0o022 != 0 || meta.len() > FILE_MAX {
        return None;
    }
    let mut text = String::new();
    f.take(FILE_MAX).read_to_string(&mut text).ok()?;
    Some(text)
}

/// Container `id` in podman's system store: its name, its upper layer and
/// its working directory. Blocks on file reads: the worker's job.
pub fn podman_lookup(id: &str) -> Found {
    for path in PODMAN_CONTAINERS_JSON {
        let Some(text) = read_trusted(path) else { continue };
        let Some(record) = podman_record(&text, id) else { continue };
        // `<graph root>/<driver>-containers/containers.json`: the layer is
        // under `<graph root>/<driver>/`; only overlay's has an upper dir.
        let root = path.rsplit_once("/overlay-containers/").map(|(root, _)| root);
        let upper = root.zip(record.layer.as_deref()).map(|(root, layer)| format!("{root}/overlay/{layer}/diff"));
        let spec = path.rsplit_once('/').map(|(dir, _)| format!("{dir}/{id}/userdata/config.json"));
        let cwd = spec.as_deref().and_then(read_trusted).as_deref().and_then(oci_cwd);
        return Found { name: record.name, upper, cwd };
    }
    Found::default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn answers_come_back_off_the_loop() {
        let mut w = NameWorker::with_lookup(|id| Found { name: (id == "abc").then(|| "web".to_string()), ..Found::default() });
        assert!(w.ask("abc".into()) && w.ask("def".into()));
        let got: Vec<Answer> = (0..2).filter_map(|_| w.wait(Duration::from_secs(30))).collect();
        let web = Found { name: Some("web".into()), ..Found::default() };
        assert_eq!(got, vec![Answer { id: "abc".into(), found: web }, Answer { id: "def".into(), found: Found::default() }]);
        assert_eq!(w.dropped, 0);
    }
}
