//! Reconciliation: for a chain whose dump was started, look for its core
//! where it should be, and at the end list cores that no chain accounts for.
//!
//! Where a core should be:
//! - a file pattern: the pattern's directory, the file name matched against
//!   the pattern with what the log knows expanded (%p %P %i %I %e %s %h %%)
//!   and everything else as a wildcard; with `core_uses_pid` the kernel's
//!   `.PID` suffix (fs/coredump.c format_corename);
//! - systemd-coredump's store, `core.COMM.UID.BOOTID.PID.USEC[.zst]`;
//! - each `--store DIR`: a file whose name holds the pid as a whole number.
//!
//! A core older than the crash (2 s of slack for clocks) is not its core.
//! `%p` is taken as the global pid; a crasher in a pid namespace writes its
//! namespace pid, whose core shows up as unaccounted plus orphaned.
//! A core is *orphaned* when it looks like a core (ELF ET_CORE, or a name
//! starting with "core"), is dated within the span of the logs read, and no
//! chain claims it. Listings are read once per directory and capped.
//!
//! The name matching here is shared with the live tracer's core lookup
//! ([`crate::live::enrich::locate_core`]), so both find the same file.

use std::{
    collections::HashMap,
    io::Read,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use serde::Serialize;

use crate::{chain::Chain, core_pattern::DumpMode, verdict::Verdict};

pub const SYSTEMD_COREDUMP_DIR: &str = "/var/lib/systemd/coredump";

/// Entries read per directory at most.
const MAX_DIR_ENTRIES: usize = 100_000;
/// Slack for a core's mtime against the crash's wall time.
pub(crate) const SLACK_NS: u64 = 2_000_000_000;

/// Where a chain's core is, as far as the stores tell.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum CoreStatus {
    Found { path: PathBuf },
    /// The verdict says stored, but no store holds the core.
    Unaccounted { searched: Vec<PathBuf> },
    /// The log does not say enough to know where to look.
    Unchecked { why: String },
}

/// What the log knows around one chain.
pub struct ChainContext<'a> {
    pub chain: &'a Chain,
    /// Wall-clock ns of the chain's first event; 0 if unknown.
    pub wall_start_ns: u64,
    pub hostname: Option<&'a str>,
    pub boot_id: Option<&'a str>,
    /// From the core settings in force; None if the log does not say.
    pub core_uses_pid: Option<bool>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Orphan {
    pub path: PathBuf,
    pub mtime_wall_ns: u64,
}

struct Entry {
    name: String,
    mtime_ns: u64,
    claimed: bool,
}

struct Listing {
    entries: Vec<Entry>,
    /// Why the directory could not be read, if it could not.
    error: Option<String>,
    truncated: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Pattern,
    Systemd,
    Store,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Token {
    Lit(String),
    Any,
}

pub struct Stores {
    systemd_dir: Option<PathBuf>,
    extra: Vec<PathBuf>,
    listings: HashMap<PathBuf, (Kind, Listing)>,
    /// Wall-clock span of the logs read, for orphans.
    span: Option<(u64, u64)>,
    /// Whether systemd's store is a directory, asked once: its listing is
    /// read once too, and a stat per chain was a cost of large reports.
    systemd_dir_exists: Option<bool>,
}

impl Stores {
    pub fn new(systemd_dir: Option<PathBuf>, extra: Vec<PathBuf>) -> Stores {
        Stores { systemd_dir, extra, listings: HashMap::new(), span: None, systemd_dir_exists: None }
    }

    /// Widens the span of time the logs cover.
    pub fn saw_wall(&mut self, wall_ns: u64) {
        if wall_ns == 0 {
            return;
        }
        self.span = Some(match self.span {
            None => (wall_ns, wall_ns),
            Some((a, b)) => (a.min(wall_ns), b.max(wall_ns)),
        });
    }

    /// Looks for the chain's core. None for a chain without a dump whose
    /// verdict does not claim a core.
    pub fn reconcile(&mut self, ctx: &ChainContext) -> Option<CoreStatus> {
        let chain = ctx.chain;
        let dump = chain.dump.as_ref()?;
        let stored = chain.verdict == Some(Verdict::Stored);
        let tgid = chain.crasher.tgid;
        let mut searched = Vec::new();
        let mut unchecked = None;
        let mut found = None;

        if let DumpMode::File { path } = &dump.mode {
            match pattern_location(path, ctx) {
                Ok((dir, names)) => {
                    searched.push(dir.clone());
                    found = self.claim(&dir, Kind::Pattern, ctx.wall_start_ns, |n| names.iter().any(|t| glob(t, n)));
                }
                Err(why) => unchecked = Some(why),
            }
        }
        if found.is_none()
            && let Some(dir) = self.systemd_dir.clone()
            && *self.systemd_dir_exists.get_or_insert_with(|| dir.is_dir())
        {
            let boot = ctx.boot_id.map(|b| b.replace('-', ""));
            searched.push(dir.clone());
            found = self.claim(&dir, Kind::Systemd, ctx.wall_start_ns, |n| systemd_name_matches(n, tgid, boot.as_deref()));
        }
        for dir in self.extra.clone() {
            if found.is_some() {
                break;
            }
            searched.push(dir.clone());
            found = self.claim(&dir, Kind::Store, ctx.wall_start_ns, |n| has_number(n, tgid));
        }
        match (found, stored) {
            (Some(path), _) => Some(CoreStatus::Found { path }),
            (None, false) => None,
            (None, true) => match unchecked {
                Some(why) if searched.is_empty() => Some(CoreStatus::Unchecked { why }),
                _ => Some(CoreStatus::Unaccounted { searched }),
            },
        }
    }

    /// Marks the first unclaimed entry of `dir` that `matches` and is not
    /// older than the crash as this chain's core.
    fn claim(&mut self, dir: &Path, kind: Kind, wall_start_ns: u64, matches: impl Fn(&str) -> bool) -> Option<PathBuf> {
        let (_, listing) = self.listings.entry(dir.to_path_buf()).or_insert_with(|| (kind, list(dir)));
        let not_before = wall_start_ns.saturating_sub(SLACK_NS);
        let entry = listing.entries.iter_mut().find(|e| !e.claimed && e.mtime_ns >= not_before && matches(&e.name))?;
        entry.claimed = true;
        Some(dir.join(&entry.name))
    }

    /// Cores in the stores that no chain claimed, dated within the logs'
    /// span (one minute after it, for slow collectors).
    pub fn orphans(&mut self) -> (Vec<Orphan>, Vec<String>) {
        let mut notes = Vec::new();
        let Some((from, to)) = self.span else { return (Vec::new(), notes) };
        let (from, to) = (from.saturating_sub(SLACK_NS), to.saturating_add(60_000_000_000));
        let mut always: Vec<(PathBuf, Kind)> = self.extra.iter().map(|d| (d.clone(), Kind::Store)).collect();
        if let Some(d) = &self.systemd_dir
            && d.is_dir()
        {
            always.push((d.clone(), Kind::Systemd));
        }
        for (dir, kind) in always {
            self.listings.entry(dir.clone()).or_insert_with(|| (kind, list(&dir)));
        }
        let mut out = Vec::new();
        let mut dirs: Vec<&PathBuf> = self.listings.keys().collect();
        dirs.sort();
        for dir in dirs {
            let (kind, listing) = &self.listings[dir];
            if let Some(e) = &listing.error {
                notes.push(format!("{}: {e}", dir.display()));
            }
            if listing.truncated {
                notes.push(format!("{}: more than {MAX_DIR_ENTRIES} entries; only the first were checked", dir.display()));
            }
            for e in &listing.entries {
                if e.claimed || e.mtime_ns < from || e.mtime_ns > to {
                    continue;
                }
                let path = dir.join(&e.name);
                let core_like = match kind {
                    Kind::Systemd => e.name.starts_with("core."),
                    Kind::Pattern | Kind::Store => e.name.starts_with("core") || is_elf_core(&path),
                };
                if core_like {
                    out.push(Orphan { path, mtime_wall_ns: e.mtime_ns });
                }
            }
        }
        out.sort_by(|a, b| a.mtime_wall_ns.cmp(&b.mtime_wall_ns).then(a.path.cmp(&b.path)));
        (out, notes)
    }
}

fn list(dir: &Path) -> Listing {
    let mut listing = Listing { entries: Vec::new(), error: None, truncated: false };
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) => {
            listing.error = Some(format!("cannot list: {e}"));
            return listing;
        }
    };
    for entry in rd.flatten() {
        if listing.entries.len() >= MAX_DIR_ENTRIES {
            listing.truncated = true;
            break;
        }
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        let Some(name) = entry.file_name().to_str().map(str::to_string) else { continue };
        let mtime_ns = (meta.mtime().max(0) as u64).saturating_mul(1_000_000_000).saturating_add(meta.mtime_nsec().max(0) as u64);
        listing.entries.push(Entry { name, mtime_ns, claimed: false });
    }
    listing
}

/// An ELF file of type ET_CORE.
fn is_elf_core(path: &Path) -> bool {
    let mut head = [0u8; 18];
    // The listing saw a regular file, but it may have been swapped for a
    // FIFO or symlink since: the open neither follows nor blocks.
    let ok = super::reader::open_log(path).ok().map(|mut f| f.read_exact(&mut head).is_ok()).unwrap_or(false);
    // e_type is at offset 16, in the byte order of EI_DATA (1 = little).
    ok && head[..4] == *b"\x7fELF" && {
        let e_type = if head[5] == 2 { u16::from_be_bytes([head[16], head[17]]) } else { u16::from_le_bytes([head[16], head[17]]) };
        e_type == 4
    }
}

/// The directory of a file pattern and the file-name patterns a core of this
/// chain would match.
pub(crate) fn pattern_location(pattern: &str, ctx: &ChainContext) -> Result<(PathBuf, Vec<Vec<Token>>), String> {
    if crate::core_pattern::is_discarding_file(pattern) {
        return Err(format!("the pattern writes to {pattern}"));
    }
    if !pattern.starts_with('/') {
        return Err(format!("pattern {pattern:?} is relative to the crasher's working directory, which the log does not hold"));
    }
    let (dir, name) = pattern.rsplit_once('/').unwrap_or(("", pattern));
    let dir_tokens = expand(if dir.is_empty() { "/" } else { dir }, ctx);
    let mut dir_path = String::new();
    for t in &dir_tokens {
        match t {
            Token::Lit(s) => dir_path.push_str(s),
            Token::Any => return Err(format!("the pattern's directory {dir:?} has a specifier the log cannot expand")),
        }
    }
    let tokens = expand(name, ctx);
    let has_pid = name.contains("%p") || name.contains("%P") || dir.contains("%p") || dir.contains("%P");
    let with_pid = || {
        let mut t = tokens.clone();
        // The kernel appends the pid as the crasher's own pid namespace
        // sees it (task_tgid_vnr): 1 for a container's init.
        t.push(Token::Lit(format!(".{}", ctx.chain.ns_pid.unwrap_or(ctx.chain.crasher.tgid))));
        t
    };
    let names = match (has_pid, ctx.core_uses_pid) {
        (true, _) | (false, Some(false)) => vec![tokens],
        (false, Some(true)) => vec![with_pid()],
        (false, None) => vec![with_pid(), tokens],
    };
    Ok((PathBuf::from(dir_path), names))
}

/// A pattern's text with what the log knows filled in; the rest wildcards.
fn expand(pattern: &str, ctx: &ChainContext) -> Vec<Token> {
    let chain = ctx.chain;
    let mut out: Vec<Token> = Vec::new();
    let mut lit = String::new();
    let mut chars = pattern.chars();
    let push_any = |lit: &mut String, out: &mut Vec<Token>| {
        if !lit.is_empty() {
            out.push(Token::Lit(std::mem::take(lit)));
        }
        if out.last() != Some(&Token::Any) {
            out.push(Token::Any);
        }
    };
    while let Some(c) = chars.next() {
        if c != '%' {
            lit.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => lit.push('%'),
            // %p and %i are the ids in the crasher's pid namespace (1 for a
            // container's init), %P and %I those in the initial one.
            Some('p') => lit.push_str(&chain.ns_pid.unwrap_or(chain.crasher.tgid).to_string()),
            Some('P') => lit.push_str(&chain.crasher.tgid.to_string()),
            // The thread's id inside a foreign namespace is not recorded.
            Some('i') if chain.ns_pid.is_some_and(|n| n != chain.crasher.tgid) => push_any(&mut lit, &mut out),
            Some('i') | Some('I') => lit.push_str(&chain.crasher.pid.to_string()),
            // The kernel writes comm with '/' made '!'.
            Some('e') if !chain.crasher.comm.is_empty() => lit.push_str(&chain.crasher.comm.replace('/', "!")),
            Some('s') => lit.push_str(&chain.sig.to_string()),
            Some('h') if ctx.hostname.is_some() => lit.push_str(ctx.hostname.unwrap_or_default()),
            // %t %u %g %d %c %E %f %C %F, unknown ones, and a trailing '%'.
            _ => push_any(&mut lit, &mut out),
        }
    }
    if !lit.is_empty() {
        out.push(Token::Lit(lit));
    }
    out
}

/// Whether `name` matches the tokens (literals and `*`-like wildcards).
pub(crate) fn glob(tokens: &[Token], name: &str) -> bool {
    match tokens.split_first() {
        None => name.is_empty(),
        Some((Token::Lit(l), rest)) => name.strip_prefix(l.as_str()).map(|n| glob(rest, n)).unwrap_or(false),
        Some((Token::Any, rest)) => {
            if rest.is_empty() {
                return true;
            }
            // Wildcards never follow one another (expand merges them), so
            // the next token is a literal: try each place it occurs.
            name.char_indices().map(|(i, _)| i).chain(std::iter::once(name.len())).any(|i| glob(rest, &name[i..]))
        }
    }
}

/// systemd-coredump's `core.COMM.UID.BOOTID.PID.USEC[.COMPRESSION]`, read
/// from the right since COMM may hold dots.
pub(crate) fn systemd_name_matches(name: &str, tgid: u32, boot: Option<&str>) -> bool {
    let Some(rest) = name.strip_prefix("core.") else { return false };
    let parts: Vec<&str> = rest.split('.').collect();
    let pid = tgid.to_string();
    parts.windows(2).any(|w| {
        let is_boot = match boot {
            Some(b) => w[0].eq_ignore_ascii_case(b),
            None => w[0].len() == 32 && w[0].bytes().all(|c| c.is_ascii_hexdigit()),
        };
        is_boot && w[1] == pid
    })
}

/// Whether `name` holds `n` as a whole number (not part of a longer one).
pub(crate) fn has_number(name: &str, n: u32) -> bool {
    name.split(|c: char| !c.is_ascii_digit()).any(|part| part == n.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{chain::Dump, event::{DumpHook, Proc}};

    fn chain(pattern: &str, verdict: Verdict) -> Chain {
        let mut c = Chain::new(1, Proc { pid: 4243, tgid: 4242, comm: "my/app".into() }, 11, 0);
        c.dump = Some(Dump {
            hook: DumpHook::Inferred,
            mode: crate::core_pattern::parse_core_pattern(pattern),
            core_pattern: pattern.into(),
            rlimit_core: None,
            dumpable: Some(1),
            helper_executable: None,
            over_pipe_limit: false,
        });
        c.verdict = Some(verdict);
        c
    }

    fn ctx(c: &Chain) -> ChainContext<'_> {
        ChainContext { chain: c, wall_start_ns: 0, hostname: Some("vm"), boot_id: None, core_uses_pid: Some(false) }
    }

    #[test]
    fn expands_what_the_log_knows() {
        let c = chain("/cores/core.%e.%p.%i.%s.%h.%t.%%", Verdict::Stored);
        let (dir, names) = pattern_location("/cores/core.%e.%p.%i.%s.%h.%t.%%", &ctx(&c)).unwrap();
        assert_eq!(dir, PathBuf::from("/cores"));
        assert!(glob(&names[0], "core.my!app.4242.4243.11.vm.1779307141.%"));
        assert!(!glob(&names[0], "core.my!app.4241.4243.11.vm.1779307141.%"));
        assert!(!glob(&names[0], "core.my!app.4242.4243.11.vm.1779307141.%x"));
    }

    #[test]
    fn core_uses_pid_suffix() {
        let c = chain("/cores/core", Verdict::Stored);
        let mut cx = ctx(&c);
        cx.core_uses_pid = Some(true);
        let (_, names) = pattern_location("/cores/core", &cx).unwrap();
        assert!(glob(&names[0], "core.4242") && !names.iter().any(|n| glob(n, "core")));
        cx.core_uses_pid = None;
        let (_, names) = pattern_location("/cores/core", &cx).unwrap();
        assert!(names.iter().any(|n| glob(n, "core")) && names.iter().any(|n| glob(n, "core.4242")));
    }

    #[test]
    fn pid_namespaces_give_p_and_i_the_crashers_own_view() {
        // A container's init: host tgid 4242, pid 1 in its namespace.
        let mut c = chain("/cores/core.%P.%p.%I", Verdict::Stored);
        c.ns_pid = Some(1);
        let (_, names) = pattern_location("/cores/core.%P.%p.%I", &ctx(&c)).unwrap();
        assert!(glob(&names[0], "core.4242.1.4243") && !glob(&names[0], "core.4242.4242.4243"));
        // %i inside a namespace is not recorded: any id matches.
        let (_, names) = pattern_location("/cores/core.%i", &ctx(&c)).unwrap();
        assert!(glob(&names[0], "core.7"));
        let mut cx = ctx(&c);
        cx.core_uses_pid = Some(true);
        let (_, names) = pattern_location("/cores/core", &cx).unwrap();
        assert!(glob(&names[0], "core.1") && !glob(&names[0], "core.4242"), "the kernel appends the namespace's pid");
    }

    #[test]
    fn unexpandable_and_relative_patterns() {
        let c = chain("core", Verdict::Stored);
        assert!(pattern_location("core", &ctx(&c)).unwrap_err().contains("relative"));
        assert!(pattern_location("/cores/%u/core", &ctx(&c)).unwrap_err().contains("directory"));
        assert!(pattern_location("/dev/null", &ctx(&c)).is_err());
        assert_eq!(pattern_location("/core.%p", &ctx(&c)).unwrap().0, PathBuf::from("/"));
    }

    #[test]
    fn glob_backtracks() {
        let t = vec![Token::Lit("a".into()), Token::Any, Token::Lit(".1".into()), Token::Any, Token::Lit("z".into())];
        assert!(glob(&t, "ab.1.1xz"));
        assert!(glob(&t, "a.1z"));
        assert!(!glob(&t, "a.1"));
        assert!(glob(&[Token::Any], ""));
    }

    #[test]
    fn systemd_names() {
        let boot = "0123456789abcdef0123456789abcdef";
        let n = format!("core.my.app.0.{boot}.4242.1779307141000000.zst");
        assert!(systemd_name_matches(&n, 4242, Some(boot)));
        assert!(systemd_name_matches(&n, 4242, None));
        assert!(!systemd_name_matches(&n, 424, None));
        assert!(!systemd_name_matches(&n, 4242, Some("ffffffffffffffffffffffffffffffff")));
        assert!(!systemd_name_matches("journal.4242", 4242, None));
    }

    #[test]
    fn store_names() {
        assert!(has_number("crash-4242.core", 4242));
        assert!(!has_number("crash-42421.core", 4242));
        assert!(!has_number("crash.core", 4242));
    }

    #[test]
    fn finds_unaccounted_and_orphans() {
        let dir = std::env::temp_dir().join(format!("crashtrace-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("cores")).unwrap();
        std::fs::create_dir_all(dir.join("store")).unwrap();
        std::fs::write(dir.join("cores/core.4242"), b"x").unwrap();
        // An ELF core with an unrelated name, and a file that is no core.
        let mut elf = b"\x7fELF\x02\x01\x01".to_vec();
        elf.resize(16, 0);
        elf.extend_from_slice(&4u16.to_le_bytes());
        std::fs::write(dir.join("store/dump-99.bin"), &elf).unwrap();
        std::fs::write(dir.join("store/notes.txt"), b"hello").unwrap();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;

        let mut stores = Stores::new(None, vec![dir.join("store")]);
        stores.saw_wall(now);
        let pattern = format!("{}/cores/core.%p", dir.display());
        let found = chain(&pattern, Verdict::Stored);
        let mut cx = ctx(&found);
        cx.wall_start_ns = now;
        assert_eq!(stores.reconcile(&cx), Some(CoreStatus::Found { path: dir.join("cores/core.4242") }));
        // A second chain of the same pid cannot claim the same core.
        match stores.reconcile(&cx) {
            Some(CoreStatus::Unaccounted { searched }) => assert_eq!(searched, vec![dir.join("cores"), dir.join("store")]),
            other => panic!("{other:?}"),
        }
        // A core older than the crash is not its core.
        let mut late = chain(&pattern, Verdict::Stored);
        late.crasher.tgid = 99;
        let mut cx = ctx(&late);
        cx.wall_start_ns = now + 3_600_000_000_000;
        assert!(matches!(stores.reconcile(&cx), Some(CoreStatus::Unaccounted { .. })));
        // A dropped chain with no core found needs nothing.
        let dropped = chain(&pattern, Verdict::RlimitCore);
        assert_eq!(stores.reconcile(&ctx(&dropped)), None);
        let (orphans, notes) = stores.orphans();
        assert!(notes.is_empty(), "{notes:?}");
        assert_eq!(orphans.iter().map(|o| o.path.clone()).collect::<Vec<_>>(), vec![dir.join("store/dump-99.bin")]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
