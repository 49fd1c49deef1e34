//! Symbolisation off the event loop: a worker thread owns the
//! [`Symbolizer`] (its caches, its open module files) and names each stack
//! when its chain ends; the loop waits for the answer at most
//! [`DEADLINE`].
//!
//! Why the verdict waits (bounded) rather than going out raw and being
//! followed by the names: a verdict is one record that readers, the text
//! sink and `report` take whole, and symbolising a stack normally takes
//! milliseconds. What must never happen is the loop waiting without bound
//! on a file the crasher controls; [`crate::modfile`] already refuses FIFOs,
//! devices and replaced files, and the deadline covers whatever is left
//! (a slow disk, a hung network file system). A stack not named in time
//! goes out with its raw frames (addresses, build-ids, file offsets) and a
//! note saying so; the worker, possibly stuck, is abandoned and a fresh one
//! started, so one bad module costs one deadline, not every later verdict.

use std::{
    sync::mpsc::{self, Receiver, RecvTimeoutError, Sender},
    time::Duration,
};

use crate::{
    stack::Stack,
    symbolize::{Symbolizer, Taken},
};

/// How long a verdict waits for its stack's names.
pub const DEADLINE: Duration = Duration::from_secs(5);
/// An address in the kernel's text (its usual start on x86-64), looked up
/// once to load the kernel's symbols.
const KERNEL_TEXT: u64 = 0xffff_ffff_8100_0000;
/// Workers abandoned (stuck past their deadline) before symbolisation is
/// given up for the run: each may hold a thread blocked in the kernel.
const ABANDONED_MAX: u32 = 8;

struct Job {
    id: u64,
    tgid: u32,
    stack: Stack,
    taken: Taken,
}

struct Done {
    id: u64,
    stack: Stack,
}

struct Worker {
    jobs: Sender<Job>,
    done: Receiver<Done>,
}

/// What the worker does with a job: [`Symbolizer::symbolize_taken`], or in
/// tests something slower.
type Handler = fn(&mut Symbolizer, u32, &mut Stack, Taken);

fn spawn(handler: Handler) -> Option<Worker> {
    let (jobs, job_rx) = mpsc::channel::<Job>();
    let (done_tx, done) = mpsc::channel::<Done>();
    std::thread::Builder::new()
        .name("crashtrace-symbolize".into())
        .spawn(move || {
            let mut symbolizer = Symbolizer::new();
            // Ends when the loop drops (or abandons) its sender.
            for Job { id, tgid, mut stack, taken } in job_rx {
                handler(&mut symbolizer, tgid, &mut stack, taken);
                if done_tx.send(Done { id, stack }).is_err() {
                    return;
                }
            }
        })
        .ok()?;
    Some(Worker { jobs, done })
}

/// The loop's handle on the symbolising thread.
pub struct SymbolizeWorker {
    worker: Option<Worker>,
    next_id: u64,
    deadline: Duration,
    abandoned: u32,
    handler: Handler,
}

impl SymbolizeWorker {
    pub fn new(deadline: Duration) -> SymbolizeWorker {
        SymbolizeWorker::with_handler(deadline, Symbolizer::symbolize_taken)
    }

    fn with_handler(deadline: Duration, handler: Handler) -> SymbolizeWorker {
        SymbolizeWorker { worker: spawn(handler), next_id: 0, deadline, abandoned: 0, handler }
    }

    /// Loads the kernel's symbols now, in the background, rather than at the
    /// first crash: a parse of /proc/kallsyms is the one slow step (about
    /// 0.1 s of CPU and several MiB), and the first verdict should not spend
    /// its deadline on it. Only worth it when stacks have kernel frames
    /// (`--kernel-stack`); otherwise kallsyms is never read. Nothing waits
    /// for the answer: `symbolize` skips it as an earlier job's.
    pub fn warm_kernel(&mut self) {
        if let Some(worker) = self.worker.as_ref() {
            let stack = Stack { kernel: vec![crate::stack::Frame::raw(KERNEL_TEXT)], ..Stack::default() };
            self.next_id += 1;
            let _ = worker.jobs.send(Job { id: self.next_id, tgid: 0, stack, taken: Taken::default() });
        }
    }

    /// Names `stack`'s frames, of process `tgid`, with what was kept for it;
    /// waits at most the deadline, else leaves the frames raw and says why.
    pub fn symbolize(&mut self, tgid: u32, stack: &mut Stack, taken: Taken) {
        if self.worker.is_none() && self.abandoned < ABANDONED_MAX {
            self.worker = spawn(self.handler);
        }
        let Some(worker) = self.worker.as_ref() else {
            stack.notes.push(format!(
                "not symbolised: symbolisation is off for this run ({} workers got stuck past {:?})",
                self.abandoned, self.deadline
            ));
            return;
        };
        self.next_id += 1;
        let id = self.next_id;
        if worker.jobs.send(Job { id, tgid, stack: stack.clone(), taken }).is_err() {
            self.worker = None;
            stack.notes.push("not symbolised: the symbolising thread had ended; a new one starts".into());
            return;
        }
        let outcome = loop {
            match worker.done.recv_timeout(self.deadline) {
                Ok(done) if done.id == id => break Ok(done.stack),
                // An answer for an earlier stack cannot come from this worker
                // (a late one leaves with its abandoned worker); skip it.
                Ok(_) => continue,
                Err(e) => break Err(e),
            }
        };
        match outcome {
            Ok(named) => *stack = named,
            Err(RecvTimeoutError::Timeout) => {
                // Possibly blocked in the kernel: leave it, start afresh.
                self.worker = None;
                self.abandoned += 1;
                stack.notes.push(format!(
                    "not symbolised: naming the frames took longer than {:?} (a module file slow to read?); raw frames kept",
                    self.deadline
                ));
            }
            Err(RecvTimeoutError::Disconnected) => {
                self.worker = None;
                stack.notes.push("not symbolised: the symbolising thread ended; raw frames kept".into());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        stack::Frame,
        symbolize::{parse_maps, Pending},
    };

    #[test]
    fn names_come_back_from_the_worker() {
        let mut pending = Pending::default();
        pending.set_maps(1, parse_maps(&std::fs::read_to_string("/proc/self/maps").unwrap()));
        let addr = names_come_back_from_the_worker as *const () as u64;
        let mut stack = Stack { user: vec![Frame::raw(addr)], ..Stack::default() };
        let mut w = SymbolizeWorker::new(Duration::from_secs(30));
        w.symbolize(1, &mut stack, pending.take(1));
        let name = stack.user[0].function.clone().unwrap_or_default();
        assert!(name.ends_with("names_come_back_from_the_worker"), "{stack:?}");
    }

    #[test]
    fn a_stack_past_the_deadline_keeps_its_raw_frames_and_says_why() {
        // A worker stuck (as in an open() that never returns) far longer
        // than the deadline.
        fn stuck(_: &mut Symbolizer, _: u32, _: &mut Stack, _: Taken) {
            std::thread::sleep(Duration::from_secs(3600));
        }
        let mut w = SymbolizeWorker::with_handler(Duration::from_millis(20), stuck);
        let mut stack = Stack { user: vec![Frame::raw(0x1234)], ..Stack::default() };
        w.symbolize(1, &mut stack, Taken::default());
        assert_eq!(stack.user, vec![Frame::raw(0x1234)]);
        assert!(stack.notes.iter().any(|n| n.contains("took longer than")), "{:?}", stack.notes);
        // Each stuck worker is replaced, up to a limit; then it says so.
        for _ in 0..ABANDONED_MAX {
            let mut s = Stack::default();
            w.symbolize(1, &mut s, Taken::default());
        }
        let mut last = Stack::default();
        w.symbolize(1, &mut last, Taken::default());
        assert!(last.notes.iter().any(|n| n.contains("symbolisation is off")), "{:?}", last.notes);
    }
}
