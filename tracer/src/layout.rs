//! Kernel struct layouts, read at run time from the running kernel's BTF and
//! from tracepoint `format` files, and handed to the eBPF programs as globals.
//! Nothing here is baked in for one kernel version.

use std::path::Path;

use btf_rs::{Btf, Type};
use tracer_common::config::KernelOffsets;

#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("cannot read kernel BTF at {path}: {source}; crashtrace needs a kernel built with CONFIG_DEBUG_INFO_BTF=y")]
    Btf { path: String, source: btf_rs::Error },
    #[error("kernel BTF has no struct {0}")]
    NoStruct(String),
    #[error("kernel BTF: struct {strukt} has no member {member}")]
    NoMember { strukt: String, member: String },
    #[error("tracepoint format {path}: no field {field}")]
    NoField { path: String, field: String },
    #[error("cannot read {path}: {source}")]
    Io { path: String, source: std::io::Error },
}

pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// The kernel's BTF, with the look-ups crashtrace needs.
pub struct KernelBtf {
    btf: Btf,
}

impl KernelBtf {
    /// Maps the BTF rather than indexing all of it: crashtrace needs a few
    /// dozen look-ups, and a full index of the kernel's types costs ~30 MB at
    /// start-up. Kernels that cannot mmap /sys/kernel/btf/vmlinux (before
    /// 6.16) get the indexed parse.
    pub fn open(path: &Path) -> Result<Self, LayoutError> {
        let btf = Btf::from_file_with_backend(path, btf_rs::Backend::Mmap)
            .or_else(|_| Btf::from_file(path))
            .map_err(|source| LayoutError::Btf { path: path.display().to_string(), source })?;
        Ok(KernelBtf { btf })
    }

    fn strukt(&self, name: &str) -> Result<btf_rs::Struct, LayoutError> {
        let types = self.btf.resolve_types_by_name(name).map_err(|_| LayoutError::NoStruct(name.into()))?;
        types
            .into_iter()
            .find_map(|t| match t {
                Type::Struct(s) if !s.members.is_empty() => Some(s),
                _ => None,
            })
            .ok_or_else(|| LayoutError::NoStruct(name.into()))
    }

    /// Byte offset of `member` in struct `strukt`, looking through anonymous
    /// structs and unions the way C does (task_struct and mm_struct nest
    /// their fields in them).
    pub fn member_offset(&self, strukt: &str, member: &str) -> Result<u32, LayoutError> {
        let s = self.strukt(strukt)?;
        self.find_member(&s, member).map(|bits| bits / 8).ok_or_else(|| LayoutError::NoMember {
            strukt: strukt.into(),
            member: member.into(),
        })
    }

    fn find_member(&self, s: &btf_rs::Struct, member: &str) -> Option<u32> {
        for m in &s.members {
            let name = self.btf.resolve_name(m).unwrap_or_default();
            if name == member {
                return Some(m.bit_offset());
            }
            if name.is_empty()
                && let Some(inner) = self.anonymous_aggregate(m)
                    && let Some(bits) = self.find_member(&inner, member) {
                        return Some(m.bit_offset() + bits);
                    }
        }
        None
    }

    fn anonymous_aggregate(&self, m: &btf_rs::Member) -> Option<btf_rs::Struct> {
        let mut t = self.btf.resolve_chained_type(m).ok()?;
        // Skip qualifiers and typedefs down to the aggregate.
        for _ in 0..8 {
            match t {
                Type::Struct(s) | Type::Union(s) => return Some(s),
                Type::Typedef(_) | Type::Volatile(_) | Type::Const(_) | Type::Restrict(_) | Type::TypeTag(_) => {
                    let inner = t.as_btf_type()?;
                    t = self.btf.resolve_chained_type(inner).ok()?;
                }
                _ => return None,
            }
        }
        None
    }

    pub fn struct_size(&self, strukt: &str) -> Result<u32, LayoutError> {
        Ok(self.strukt(strukt)?.size() as u32)
    }

    /// Whether the kernel has a function of this name (for fentry/kprobe).
    pub fn has_function(&self, name: &str) -> bool {
        self.btf
            .resolve_types_by_name(name)
            .map(|types| types.iter().any(|t| matches!(t, Type::Func(_))))
            .unwrap_or(false)
    }

    /// All offsets the programs need. mm_struct's flags word was renamed
    /// `__mm_flags` in 6.18; both names are tried.
    pub fn kernel_offsets(&self) -> Result<KernelOffsets, LayoutError> {
        // 7.2 moved dumpability from mm->flags to task->exec_state->dumpable.
        let (task_exec_state, exec_state_dumpable) =
            match (self.member_offset("task_struct", "exec_state"), self.member_offset("task_exec_state", "dumpable")) {
                (Ok(a), Ok(b)) => (a, b),
                _ => (0, 0),
            };
        let mm_flags = self
            .member_offset("mm_struct", "flags")
            .or_else(|_| self.member_offset("mm_struct", "__mm_flags"))?;
        Ok(KernelOffsets {
            task_pid: self.member_offset("task_struct", "pid")?,
            task_tgid: self.member_offset("task_struct", "tgid")?,
            task_comm: self.member_offset("task_struct", "comm")?,
            task_real_parent: self.member_offset("task_struct", "real_parent")?,
            task_signal: self.member_offset("task_struct", "signal")?,
            task_sighand: self.member_offset("task_struct", "sighand")?,
            task_mm: self.member_offset("task_struct", "mm")?,
            task_exit_code: self.member_offset("task_struct", "exit_code")?,
            signal_rlim: self.member_offset("signal_struct", "rlim")?,
            sighand_action: self.member_offset("sighand_struct", "action")?,
            k_sigaction_size: self.struct_size("k_sigaction")?,
            sigaction_handler: self.member_offset("k_sigaction", "sa")? + self.member_offset("sigaction", "sa_handler")?,
            sigaction_flags: self.member_offset("k_sigaction", "sa")? + self.member_offset("sigaction", "sa_flags")?,
            mm_flags,
            mm_arg_start: self.member_offset("mm_struct", "arg_start")?,
            mm_arg_end: self.member_offset("mm_struct", "arg_end")?,
            bprm_filename: self.member_offset("linux_binprm", "filename")?,
            connect_enter_uservaddr: 0,
            connect_exit_ret: 0,
            cgroup_root: self.member_offset("cgroup", "root")?,
            cgroup_root_hierarchy_id: self.member_offset("cgroup_root", "hierarchy_id")?,
            cgroup_kn: self.member_offset("cgroup", "kn")?,
            kernfs_node_id: self.member_offset("kernfs_node", "id")?,
            cgroup_level: self.member_offset("cgroup", "level")?,
            task_group_leader: self.member_offset("task_struct", "group_leader")?,
            task_thread_pid: self.member_offset("task_struct", "thread_pid")?,
            pid_level: self.member_offset("pid", "level")?,
            pid_numbers: self.member_offset("pid", "numbers")?,
            upid_size: self.struct_size("upid")?,
            upid_nr: self.member_offset("upid", "nr")?,
            upid_ns: self.member_offset("upid", "ns")?,
            pidns_inum: self.member_offset("pid_namespace", "ns")? + self.member_offset("ns_common", "inum")?,
            task_exec_state,
            exec_state_dumpable,
            // Filled in from the tracepoint's format file when it exists.
            coredump_tp_sig: 0,
            task_blocked: self.member_offset("task_struct", "blocked")?,
            task_real_blocked: self.member_offset("task_struct", "real_blocked")?,
            valid: 1,
        })
    }
}

/// Offset of `field` in a tracepoint's `format` file text, e.g.
/// `field:struct sockaddr * uservaddr;    offset:24;    size:8;    signed:0;`.
pub fn format_field_offset(format: &str, field: &str) -> Option<u32> {
    for line in format.lines() {
        let line = line.trim();
        let Some(rest) = line.strip_prefix("field:") else { continue };
        let mut parts = rest.split(';');
        let decl = parts.next()?.trim();
        let name = decl.rsplit(|c: char| c.is_whitespace() || c == '*').next()?.trim();
        let name = name.split('[').next()?;
        if name != field {
            continue;
        }
        for part in parts {
            if let Some(off) = part.trim().strip_prefix("offset:") {
                return off.trim().parse().ok();
            }
        }
    }
    None
}

pub fn tracepoint_field_offset(tracefs: &Path, category: &str, name: &str, field: &str) -> Result<u32, LayoutError> {
    let path = tracefs.join("events").join(category).join(name).join("format");
    let text = std::fs::read_to_string(&path).map_err(|source| LayoutError::Io { path: path.display().to_string(), source })?;
    format_field_offset(&text, field).ok_or_else(|| LayoutError::NoField { path: path.display().to_string(), field: field.into() })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Recorded from /sys/kernel/tracing/events/syscalls/sys_enter_connect/format on 6.18.
    const ENTER_CONNECT: &str = "name: sys_enter_connect
ID: 1234
format:
	field:unsigned short common_type;	offset:0;	size:2;	signed:0;
	field:unsigned char common_flags;	offset:2;	size:1;	signed:0;
	field:unsigned char common_preempt_count;	offset:3;	size:1;	signed:0;
	field:int common_pid;	offset:4;	size:4;	signed:1;

	field:int __syscall_nr;	offset:8;	size:4;	signed:1;
	field:int fd;	offset:16;	size:8;	signed:0;
	field:struct sockaddr * uservaddr;	offset:24;	size:8;	signed:0;
	field:int addrlen;	offset:32;	size:8;	signed:0;
";

    #[test]
    fn finds_pointer_field_offset() {
        assert_eq!(format_field_offset(ENTER_CONNECT, "uservaddr"), Some(24));
        assert_eq!(format_field_offset(ENTER_CONNECT, "fd"), Some(16));
        assert_eq!(format_field_offset(ENTER_CONNECT, "addrlen"), Some(32));
    }

    #[test]
    fn missing_field_is_none() {
        assert_eq!(format_field_offset(ENTER_CONNECT, "ret"), None);
        assert_eq!(format_field_offset("", "ret"), None);
        assert_eq!(format_field_offset("field:garbage", "ret"), None);
    }

    #[test]
    fn array_field_name() {
        let f = "\tfield:char comm[16];\toffset:8;\tsize:16;\tsigned:0;";
        assert_eq!(format_field_offset(f, "comm"), Some(8));
    }
}
