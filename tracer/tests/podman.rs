//! Tier 2 with a real container runtime: Debian's podman, rootful.
//!
//! `podman_crash_is_named_filtered_and_its_core_found`: a static crasher,
//! packed into an image with `podman import` (the machine reaches no
//! registry), takes a real SIGSEGV as the container's init. crashtrace,
//! filtered with `--container`, must name the runtime, the full id and the
//! container's name, select it by name and by id prefix (live and in
//! `report` over the log), leave it out for another name, and say where
//! the core went: core_pattern is host-global, and a relative file pattern
//! is resolved in the crasher's mount namespace, so the core lands in the
//! container's root fs (its overlay upper layer on the host).
//!
//! Holds the machine's global lock (it sets core_pattern), runs each
//! tracer with a `--container` filter, and removes the container and the
//! image when it ends, also when it fails.

mod common;

use std::{
    path::Path,
    process::Command,
    time::Duration,
};

use common::{Exclusive, TempDir, Tracer, VERDICT_WAIT};
use serde_json::Value;

const PODMAN: &str = "podman";

/// `podman ARGS`, bounded; stdout on success, a failure naming the command
/// and podman's stderr otherwise.
fn podman(args: &[&str]) -> String {
    let mut cmd = Command::new(PODMAN);
    cmd.args(args);
    let done = common::run_bounded(cmd, Duration::from_secs(120));
    assert!(done.status.success(), "`podman {}` failed ({}):\n{}{}", args.join(" "), done.status, done.stdout, done.stderr);
    done.stdout.trim().to_string()
}

/// The OCI runtime to use, and why. crun (podman's default on Debian)
/// refuses a hybrid cgroup host whose cgroup2 hierarchy has any controller
/// ("cgroups in hybrid mode not supported, drop all controllers from
/// cgroupv2"); runc puts the container into the cgroup2 hierarchy as well,
/// which is where crashtrace reads its path.
fn runtime() -> Option<(&'static str, String)> {
    let unified = Path::new("/sys/fs/cgroup/unified/cgroup.controllers");
    let controllers = std::fs::read_to_string(unified).unwrap_or_default();
    (!controllers.trim().is_empty()).then(|| {
        ("runc", format!("hybrid cgroups with cgroup2 controllers ({}): crun refuses them, runc is used", controllers.trim()))
    })
}

/// The container and image, removed when dropped (also on failure).
struct Podman {
    name: String,
    image: String,
}

impl Drop for Podman {
    fn drop(&mut self) {
        for args in [vec!["rm", "--force", "--time", "0", self.name.as_str()], vec!["rmi", "--force", self.image.as_str()]] {
            let mut cmd = Command::new(PODMAN);
            cmd.args(&args);
            let done = common::run_bounded(cmd, Duration::from_secs(120));
            if !done.status.success() && !done.stderr.contains("no such") && !done.stderr.contains("image not known") {
                eprintln!("cleanup `podman {}` failed: {}", args.join(" "), done.stderr);
            }
        }
    }
}

/// The crasher, linked statically: the image holds nothing else.
fn static_crasher(dir: &Path) {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/crashers/crash.c");
    let out = Command::new("cc")
        .args(["-O0", "-static", "-o"])
        .arg(dir.join("crash"))
        .arg(&source)
        .output()
        .unwrap_or_else(|e| panic!("cannot run cc (install gcc and libc6-dev): {e}"));
    assert!(out.status.success(), "cc -static failed (libc6-dev has libc.a):\n{}", String::from_utf8_lossy(&out.stderr));
}

fn container_of(r: &Value) -> &Value {
    &r["container"]
}

fn verdict_in(records: &[Value], id: &str) -> Option<Value> {
    records.iter().find(|r| r["type"] == "verdict" && container_of(r)["id"] == id).cloned()
}

/// `crashtrace report --json --container WANT LOG`: the verdicts shown.
fn report(log: &str, want: &str) -> Vec<Value> {
    let mut cmd = Command::new(common::CRASHTRACE);
    cmd.args(["report", "--json", "--container", want, log]);
    let done = common::run_bounded(cmd, Duration::from_secs(120));
    assert_eq!(done.status.code(), Some(0), "report --container {want} failed:\n{}", done.stderr);
    done.stdout.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).filter(|r| r["type"] == "verdict").collect()
}

#[test]
#[ignore = "privileged: needs root, real BPF and podman; run with cargo xtask test"]
fn podman_crash_is_named_filtered_and_its_core_found() {
    let machine = Exclusive::take();
    let info = Command::new(PODMAN).args(["info", "--format", "{{.Host.CgroupsVersion}} {{.Store.GraphDriverName}} {{.Host.NetworkBackend}}"]).output();
    let info = match info {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        Ok(o) => panic!("`podman info` failed: {}", String::from_utf8_lossy(&o.stderr)),
        Err(e) => panic!("cannot run podman ({e}); install Debian's podman (cargo xtask setup)"),
    };
    let runtime = runtime();
    eprintln!("podman: {info}; {}", runtime.as_ref().map(|r| r.1.as_str()).unwrap_or("default OCI runtime"));

    let me = std::process::id();
    let guard = Podman { name: format!("crashtrace-test-{me}"), image: format!("localhost/crashtrace-test-{me}:latest") };
    let dir = TempDir::new("crashtrace-podman");
    static_crasher(dir.path());
    let tar = dir.path().join("rootfs.tar");
    let st = Command::new("tar").arg("-C").arg(dir.path()).arg("-cf").arg(&tar).arg("crash").status().expect("running tar");
    assert!(st.success(), "tar failed: {st}");
    let tar_arg = tar.display().to_string();
    podman(&["import", "--change", r#"ENTRYPOINT ["/crash"]"#, &tar_arg, &guard.image]);

    // The machine's hard limits are below podman's defaults for nofile and
    // nproc, and without CAP_SYS_RESOURCE they cannot be raised: ask for
    // limits within them. core=-1: the dump is not cut by RLIMIT_CORE.
    let mut create = vec!["create", "--name", guard.name.as_str(), "--network", "none", "--ulimit", "core=-1", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"];
    if let Some((rt, _)) = &runtime {
        create.extend(["--runtime", rt]);
    }
    create.extend([guard.image.as_str(), "segv"]);
    let id = podman(&create);
    assert_eq!(id.len(), 64, "podman create printed {id:?}, not an id");
    let other = format!("crashtrace-test-{me}-other");

    // The core goes where the host's pattern says, in the crasher's mount
    // namespace: relative to its cwd (/ in the container).
    machine.set_core_pattern("core.%P.%p");
    let log = dir.path().join("trace.jsonl");
    let log_arg = log.display().to_string();
    let mut by_name = Tracer::start(&["--json", "--container", &guard.name, "--log", &log_arg]);
    let mut by_prefix = Tracer::start(&["--json", "--container", &id[..12]]);
    let not_ours = Tracer::start(&["--json", "--container", &other]);

    let mut start = Command::new(PODMAN);
    start.args(["start", "--attach", &guard.name]);
    let ran = common::run_bounded(start, Duration::from_secs(120));
    // podman passes the container's death by SIGSEGV on as 128 + 11.
    assert_eq!(ran.status.code(), Some(139), "the container did not die of SIGSEGV:\n{}", ran.stderr);
    let upper = podman(&["inspect", "--format", "{{.GraphDriver.Data.UpperDir}}", &guard.name]);
    let inspected_id = podman(&["inspect", "--format", "{{.Id}}", &guard.name]);
    assert_eq!(inspected_id, id);

    let is_ours = |r: &Value| r["type"] == "verdict" && r["container"]["id"] == id.as_str();
    let at = by_name.wait_for("the container's verdict (--container NAME)", VERDICT_WAIT, is_ours);
    let v = by_name.records[at].clone();
    let at = by_prefix.wait_for("the container's verdict (--container ID-PREFIX)", VERDICT_WAIT, is_ours);
    let v_prefix = by_prefix.records[at].clone();
    let tgid = v["crasher"]["tgid"].as_u64().expect("a crasher tgid");

    assert_eq!(v["signal"], "SIGSEGV", "{v}");
    assert_eq!(v["container"]["runtime"], "podman", "{v}");
    assert_eq!(v["container"]["id"], id.as_str(), "{v}");
    assert_eq!(v["container"]["name"], guard.name.as_str(), "{v}");
    assert_eq!(v["ns_pid"], 1, "the crasher is the container's init: {v}");
    assert!(v["cgroup_path"].as_str().is_some_and(|p| p.contains(&format!("libpod-{id}"))), "{v}");
    assert_eq!(v_prefix["container"], v["container"], "both filters see the same container");

    // Where the core went: %P is the host pid, %p the container's (1).
    let want = format!("{}/core.{tgid}.1", upper.trim_end_matches('/'));
    let size = std::fs::metadata(&want).unwrap_or_else(|e| panic!("no core at {want} ({e}); the verdict says {v}")).len();
    assert_eq!(v["verdict"], "stored", "{v}");
    assert_eq!(v["core"]["path"], want.as_str(), "{v}");
    assert_eq!(v["core"]["size"], size, "{v}");
    assert_eq!(v["core"]["found_by"], "file-pattern", "{v}");
    assert!(v["core"]["note"].as_str().is_some_and(|n| n.contains("/core.") && n.contains("mount namespace")), "{v}");

    let stopped_name = by_name.stop();
    stopped_name.assert_clean_exit();
    let stopped_prefix = by_prefix.stop();
    stopped_prefix.assert_clean_exit();
    // The other name saw the same kernel events, and showed none of them.
    let stopped_other = not_ours.stop();
    stopped_other.assert_clean_exit();
    assert!(verdict_in(&stopped_other.records, &id).is_none(), "--container {other} showed our container");
    let mentions: Vec<String> = common::about(&stopped_other.records, tgid as u32);
    assert!(mentions.is_empty(), "--container {other} showed records of the crasher: {mentions:?}");

    // report over the log: the same selection.
    let by_name_report = report(&log_arg, &guard.name);
    let r = verdict_in(&by_name_report, &id).unwrap_or_else(|| panic!("report --container {} lost it: {by_name_report:?}", guard.name));
    assert_eq!(r["container"], v["container"]);
    assert_eq!(r["core"]["path"], want.as_str());
    assert!(verdict_in(&report(&log_arg, &id[..12]), &id).is_some(), "report --container {} lost it", &id[..12]);
    assert!(report(&log_arg, &other).is_empty(), "report --container {other} showed a verdict");
    eprintln!("podman container {} ({}) crashed as host pid {tgid}; core of {size} bytes at {want}; {}", guard.name, &id[..12], v["core"]["note"]);
    drop(guard);
}
