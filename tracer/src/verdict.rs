//! Verdicts: the rules that pick the stable identifier a chain ends with
//! from its evidence. Pure; see the README for the meaning of each
//! identifier. The identifiers ([`Verdict`]) are defined in [`crate::chain`],
//! beside the chain that carries one, so that this module depends on the
//! chain and not the other way round; they are re-exported here.

use tracer_common::signal::is_core_signal;

pub use crate::chain::Verdict;
use crate::{
    chain::{describe_exit, Chain, Disposition, Dump},
    core_pattern::{is_discarding_file, is_discarding_helper, DumpMode, SYSTEMD_COREDUMP_SOCKET},
    event::errno_name,
};

/// A verdict with the words that justify it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    pub reason: String,
    /// For `unknown`: the step of the chain whose evidence is missing.
    pub missing: Option<String>,
}

fn decided(verdict: Verdict, reason: impl Into<String>) -> Decision {
    Decision { verdict, reason: reason.into(), missing: None }
}

fn unknown(reason: impl Into<String>, missing: impl Into<String>) -> Decision {
    Decision { verdict: Verdict::Unknown, reason: reason.into(), missing: Some(missing.into()) }
}

/// The smallest RLIMIT_CORE for which the kernel writes a core file: the ELF
/// binfmt's min_coredump, one page.
pub const MIN_COREDUMP: u64 = 4096;

/// Picks the verdict for a chain from its evidence.
pub fn decide(chain: &Chain) -> Decision {
    match chain.disposition {
        Some(Disposition::Handler) => {
            return decided(
                Verdict::Handled,
                format!("a user handler at {:#x} caught {}", chain.handler.unwrap_or(0), chain.signal),
            );
        }
        Some(Disposition::Ignored) => return decided(Verdict::Handled, format!("{} is ignored (SIG_IGN)", chain.signal)),
        Some(Disposition::Default) => {}
        None => {
            // No signal_deliver seen. An exit by this signal still shows the
            // default action was taken; without it, evidence ran out.
            let killed_by_it = chain.exit_code.map(|c| c & 0x7f == chain.sig).unwrap_or(false);
            if let (false, Some(code)) = (killed_by_it, chain.exit_code) {
                return unknown(
                    format!(
                        "the process exited ({}) without acting on {}: it was blocked or still pending",
                        describe_exit(code),
                        chain.signal
                    ),
                    "signal-deliver",
                );
            }
            if !killed_by_it {
                return unknown(
                    format!("{} was generated but its delivery was not seen", chain.signal),
                    "signal-deliver",
                );
            }
        }
    }
    if !is_core_signal(chain.sig) {
        return decided(Verdict::NoDump, format!("the default action of {} terminates without a core dump", chain.signal));
    }
    let Some(dump) = &chain.dump else {
        if chain.kernel_said_dumped {
            return unknown("the kernel reported a core dump but the dump's settings were not recorded", "dump-start");
        }
        return unknown("no dump start was seen for a core-dumping signal", "dump-start");
    };
    if dump.dumpable == Some(0) {
        return decided(Verdict::NotDumpable, "the process is not dumpable (prctl PR_SET_DUMPABLE 0, or a setuid exec with suid_dumpable=0)");
    }
    match &dump.mode {
        DumpMode::Empty => decided(Verdict::CorePatternDiscards, "core_pattern is empty: the kernel writes no core"),
        DumpMode::File { path } => decide_file(chain, path, dump.rlimit_core),
        DumpMode::Socket { path, .. } => {
            if chain.kernel_said_dumped {
                located(chain, format!("the kernel sent the core to socket {path}"))
            } else if chain.exit_code.is_some() {
                decided(Verdict::SocketUnreachable, format!("the kernel could not hand the core to socket {path}"))
            } else {
                unknown(format!("the dump to socket {path} did not finish"), "process-exit")
            }
        }
        DumpMode::Pipe { helper, .. } => decide_pipe(chain, helper, dump),
    }
}

/// A core the kernel or the collector says it stored, against where it was
/// found: stored where a store holds it (or no store is known to check),
/// `dropped:collector-discarded` when a collector whose store is known kept
/// nothing. Without a lookup (an old log) the word of the kernel or the
/// collector stands.
fn located(chain: &Chain, said: String) -> Decision {
    let Some(core) = &chain.core else { return decided(Verdict::Stored, said) };
    if core.is_found() {
        let mut reason = match &core.path {
            Some(_) if core.known_store => format!("{said}; the core is {}", core.describe()),
            _ => said,
        };
        if let Some(note) = &core.note {
            reason.push_str(&format!(" ({note})"));
        }
        return decided(Verdict::Stored, reason);
    }
    let where_ = if core.searched.is_empty() { String::new() } else { format!(" (looked in {})", core.searched.join(", ")) };
    let pipe = matches!(chain.dump.as_ref().map(|d| &d.mode), Some(DumpMode::Pipe { .. }));
    if !pipe || !core.known_store {
        // A file the kernel wrote and that is gone since (removed, or a
        // relative pattern in an unknown directory): the kernel's word stands.
        return decided(Verdict::Stored, format!("{said}, but the core file was not found{where_}"));
    }
    let why = core.discarded.as_deref().map(|d| format!(": {d}")).unwrap_or_else(|| ": it gave no reason that could be read".into());
    decided(Verdict::CollectorDiscarded, format!("{said} but kept no core{where_}{why}"))
}

fn decide_file(chain: &Chain, path: &str, rlimit_core: Option<u64>) -> Decision {
    if is_discarding_file(path) {
        return decided(Verdict::CorePatternDiscards, format!("core_pattern writes cores to {path}"));
    }
    if let Some(limit) = rlimit_core
        && limit < MIN_COREDUMP {
            return decided(
                Verdict::RlimitCore,
                format!("RLIMIT_CORE is {limit} bytes, below the {MIN_COREDUMP}-byte minimum for a core file"),
            );
        }
    if chain.kernel_said_dumped {
        return located(chain, format!("the kernel wrote the core file ({path})"));
    }
    match chain.exit_code {
        Some(_) => unknown(
            format!("the kernel wrote no core file for pattern {path}: check that the directory exists, is writable, and has space"),
            "core-file-write",
        ),
        None => unknown("the crashing process's exit was not seen", "process-exit"),
    }
}

fn decide_pipe(chain: &Chain, helper: &str, dump: &Dump) -> Decision {
    let who_set = chain
        .core_pattern_set_by
        .as_ref()
        .map(|w| format!(" (set by {})", w.writer))
        .unwrap_or_default();
    if is_discarding_helper(helper) {
        return decided(Verdict::CorePatternDiscards, format!("core_pattern pipes cores to {helper}, which discards them{who_set}"));
    }
    if dump.rlimit_core == Some(1) {
        return decided(Verdict::RlimitCore, "RLIMIT_CORE is 1: the kernel refuses to pipe a core from such a process (recursion guard)");
    }
    let Some(collector) = &chain.collector else {
        if dump.helper_executable == Some(false) {
            return decided(
                Verdict::CorePatternDiscards,
                format!("core_pattern pipes to {helper}, which is missing or not executable{who_set}"),
            );
        }
        if dump.over_pipe_limit {
            return decided(Verdict::PipeLimit, "more dumps were in flight than core_pipe_limit allows");
        }
        return match chain.exit_code {
            Some(_) => unknown(format!("the kernel started no helper ({helper}) for this dump"), "helper-exec"),
            None => unknown("neither the helper's exec nor the crasher's exit was seen", "helper-exec"),
        };
    };
    if let Some(failed) = collector.connects.iter().rev().find(|c| c.ret < 0) {
        let err = errno_name(-failed.ret);
        if failed.path == SYSTEMD_COREDUMP_SOCKET {
            return decided(
                Verdict::CollectorUnreachablePid1,
                format!(
                    "{} could not connect to {} ({err}): PID 1 does not serve the coredump socket",
                    collector.name(), failed.path
                ),
            );
        }
        if collector.exit_failed() {
            return decided(
                Verdict::CollectorFailed,
                format!("{} failed to connect to {} ({err}) and exited with {}", collector.name(), failed.path, collector.exit_description()),
            );
        }
    }
    if chain.stalled {
        let handed_to_pid1 = collector.connects.iter().any(|c| c.ret == 0 && c.path == SYSTEMD_COREDUMP_SOCKET);
        if handed_to_pid1 {
            let handler = chain
                .linked_to
                .map(|id| format!(" (its crash handler, crash #{id}, waits for this process)"))
                .unwrap_or_default();
            return decided(
                Verdict::CollectorUnreachablePid1,
                format!(
                    "deadlock: {} handed the core to PID 1's socket {SYSTEMD_COREDUMP_SOCKET}, but PID 1 never accepts it{handler}; the dump cannot finish",
                    collector.name()
                ),
            );
        }
        return unknown(
            format!("the dump stalled: {} exited but the crasher is still writing its core", collector.name()),
            "process-exit",
        );
    }
    if chain.sigpipe_during_dump {
        return decided(Verdict::ReaderVanished, format!("{} stopped reading the core: the dumper got SIGPIPE", collector.name()));
    }
    match collector.exit_code {
        Some(_) if !collector.exit_failed() => located(chain, format!("{} took the core and exited 0", collector.name())),
        Some(_) => decided(Verdict::CollectorFailed, format!("{} exited with {}", collector.name(), collector.exit_description())),
        None => unknown(format!("{} did not exit while crashtrace watched", collector.name()), "helper-exit"),
    }
}
