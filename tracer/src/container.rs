//! Container, pod and systemd-unit context from a cgroup v2 path.
//!
//! Pure: the path in, what its components say out. Container runtimes and
//! the kubelet name cgroups by convention, in two styles each: the systemd
//! driver (`…/docker-<id>.scope`, `kubepods-burstable-pod<uid>.slice`) and
//! the cgroupfs driver (`/docker/<id>`, `/kubepods/burstable/pod<uid>/<id>`).
//! Nothing here reads the host; an unknown shape gives no context rather
//! than a guess.

use serde::{Deserialize, Serialize};

tracer_common::named_enum! {
    serde
    /// Which runtime made the container, as its cgroup's name tells.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Runtime {
        Docker => "docker",
        /// containerd, through its CRI plugin (Kubernetes) or nerdctl.
        Containerd => "containerd",
        CriO => "cri-o",
        Podman => "podman",
        /// A systemd-nspawn or machinectl machine; the id is its name.
        Nspawn => "systemd-nspawn",
    }
}

tracer_common::named_enum! {
    serde
    /// A Kubernetes pod's QoS class, from its cgroup's parent.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Qos {
        Guaranteed => "guaranteed",
        Burstable => "burstable",
        BestEffort => "besteffort",
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Container {
    pub runtime: Runtime,
    /// The runtime's id (64 hex digits for the OCI runtimes), or the
    /// machine's name for systemd-nspawn.
    pub id: String,
    /// The container's name (`podman run --name`), when the live tracer
    /// could read it from the runtime's own records ([`podman_name`]); the
    /// cgroup path does not carry it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pod {
    /// The pod's UID, with dashes (the systemd driver writes underscores).
    pub uid: String,
    pub qos: Qos,
}

/// What a cgroup path says about where a process runs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Context {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub container: Option<Container>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub pod: Option<Pod>,
    /// The innermost systemd unit (a `.service` or `.scope`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub unit: Option<String>,
}

fn is_hex_id(s: &str) -> bool {
    // Full ids are 64; some tools show 12, but cgroups carry full ones.
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `<prefix><id>.scope` (systemd driver) or `<prefix><id>` (cgroupfs).
fn scoped_id<'a>(component: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = component.strip_prefix(prefix)?;
    let id = rest.strip_suffix(".scope").unwrap_or(rest);
    is_hex_id(id).then_some(id)
}

/// The container one cgroup component names, if it is a container's.
fn container_of(component: &str, parent: Option<&str>) -> Option<Container> {
    let oci = |runtime, id: &str| Some(Container { runtime, id: id.to_string(), name: None });
    if let Some(id) = scoped_id(component, "docker-") {
        return oci(Runtime::Docker, id);
    }
    if let Some(id) = scoped_id(component, "cri-containerd-") {
        return oci(Runtime::Containerd, id);
    }
    // conmon's own scope is CRI-O's monitor, not the container.
    if !component.starts_with("crio-conmon-")
        && let Some(id) = scoped_id(component, "crio-")
    {
        return oci(Runtime::CriO, id);
    }
    if !component.starts_with("libpod-conmon-")
        && let Some(id) = scoped_id(component, "libpod-")
    {
        return oci(Runtime::Podman, id);
    }
    // systemd-nspawn: `systemd-nspawn@NAME.service`; machinectl/machined:
    // `machine-NAME.scope` under machine.slice.
    if let Some(name) = component.strip_prefix("systemd-nspawn@").and_then(|r| r.strip_suffix(".service"))
        && !name.is_empty()
    {
        return Some(Container { runtime: Runtime::Nspawn, id: unescape(name), name: None });
    }
    if parent == Some("machine.slice")
        && let Some(name) = component.strip_prefix("machine-").and_then(|r| r.strip_suffix(".scope"))
        && !name.is_empty()
    {
        return Some(Container { runtime: Runtime::Nspawn, id: unescape(name), name: None });
    }
    // cgroupfs drivers: a bare id under the runtime's directory, or under
    // a pod's (the runtime is then unknown from the path: CRI says which;
    // containerd is the common one and the one whose bare ids these are).
    if is_hex_id(component) {
        return match parent {
            Some("docker") => oci(Runtime::Docker, component),
            Some(p) if p.starts_with("pod") => oci(Runtime::Containerd, component),
            _ => None,
        };
    }
    None
}

/// systemd's `\x2d`-style escapes in unit names, undone.
fn unescape(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find("\\x") {
        out.push_str(&rest[..at]);
        let hex = rest.get(at + 2..at + 4).and_then(|h| u8::from_str_radix(h, 16).ok());
        match hex {
            Some(b) if b.is_ascii() => {
                out.push(b as char);
                rest = &rest[at + 4..];
            }
            _ => {
                out.push_str("\\x");
                rest = &rest[at + 2..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The pod a component names: `kubepods-<qos>-pod<uid>.slice` (systemd)
/// or `pod<uid>` under `kubepods[/<qos>]` (cgroupfs).
fn pod_of(component: &str, parents: &[&str]) -> Option<Pod> {
    let valid_uid = |u: &str| u.len() == 36 && u.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    if let Some(slice) = component.strip_prefix("kubepods-").and_then(|r| r.strip_suffix(".slice")) {
        let (qos, uid) = match slice.split_once("-pod") {
            Some((q, uid)) => (parse_qos(q)?, uid),
            None => (Qos::Guaranteed, slice.strip_prefix("pod")?),
        };
        let uid = uid.replace('_', "-");
        return valid_uid(&uid).then_some(Pod { uid, qos });
    }
    let uid = component.strip_prefix("pod")?;
    if !valid_uid(uid) || !parents.contains(&"kubepods") {
        return None;
    }
    let qos = match parents.last() {
        Some(&"kubepods") => Qos::Guaranteed,
        Some(q) => parse_qos(q)?,
        None => return None,
    };
    Some(Pod { uid: uid.to_string(), qos })
}

fn parse_qos(s: &str) -> Option<Qos> {
    match s {
        "burstable" => Some(Qos::Burstable),
        "besteffort" => Some(Qos::BestEffort),
        _ => None,
    }
}

/// The context a cgroup v2 path (as `/proc/PID/cgroup` shows it) gives.
pub fn parse(path: &str) -> Context {
    let components: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    let mut ctx = Context::default();
    for (i, component) in components.iter().enumerate() {
        let parents = &components[..i];
        if let Some(c) = container_of(component, parents.last().copied()) {
            // The innermost container wins (podman in a pod, nested runtimes).
            ctx.container = Some(c);
        }
        if ctx.pod.is_none() {
            ctx.pod = pod_of(component, parents);
        }
        if component.ends_with(".service") || component.ends_with(".scope") {
            ctx.unit = Some(component.to_string());
        }
    }
    ctx
}

/// Whether `ctx` matches `--container ID|NAME`: the full id, a prefix of
/// it of at least 12 characters (as `docker ps` shows), the container's
/// name when known, or an nspawn machine's name.
pub fn matches_container(ctx: &Context, wanted: &str) -> bool {
    let Some(c) = &ctx.container else { return false };
    if c.name.as_deref() == Some(wanted) {
        return true;
    }
    if c.runtime == Runtime::Nspawn {
        return c.id == wanted;
    }
    c.id == wanted || (wanted.len() >= 12 && c.id.starts_with(wanted))
}

/// Where rootful podman (containers/storage) keeps its containers' records:
/// `<graph root>/<driver>-containers/containers.json`, for the drivers
/// Debian's podman uses. Only the system store: a rootless user's is in
/// their home, a place the crasher's owner controls.
pub const PODMAN_CONTAINERS_JSON: &[&str] = &[
    "/var/lib/containers/storage/overlay-containers/containers.json",
    "/var/lib/containers/storage/vfs-containers/containers.json",
    "/var/lib/containers/storage/btrfs-containers/containers.json",
];

/// What containers/storage's `containers.json` says of one container.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodmanRecord {
    /// Its first name, if it is a valid podman name.
    pub name: Option<String>,
    /// The id of its read-write layer (its overlay upper directory is
    /// `<graph root>/overlay/<layer>/diff`), if it is a plain id.
    pub layer: Option<String>,
}

/// Container `id`'s record in containers/storage's `containers.json` (a
/// JSON array of `{"id": ..., "names": [...], "layer": ...}`). None when
/// the text is not that or does not list the id.
pub fn podman_record(containers_json: &str, id: &str) -> Option<PodmanRecord> {
    #[derive(Deserialize)]
    struct Record {
        id: String,
        #[serde(default)]
        names: Vec<String>,
        #[serde(default)]
        layer: Option<String>,
    }
    let records: Vec<Record> = serde_json::from_str(containers_json).ok()?;
    let r = records.into_iter().find(|r| r.id == id)?;
    // A layer id becomes a path: only a plain hex id is taken.
    let layer = r.layer.filter(|l| !l.is_empty() && l.len() <= 128 && l.bytes().all(|b| b.is_ascii_hexdigit()));
    Some(PodmanRecord { name: r.names.into_iter().next().and_then(valid_name), layer })
}

/// The name of container `id` in `containers.json`, if it has a valid one.
pub fn podman_name(containers_json: &str, id: &str) -> Option<String> {
    podman_record(containers_json, id)?.name
}

/// The process's working directory in an OCI runtime spec (`config.json`):
/// where a relative core pattern lands when the crasher never changed it.
pub fn oci_cwd(config_json: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(config_json).ok()?;
    let cwd = v.get("process")?.get("cwd")?.as_str()?;
    (cwd.starts_with('/') && !cwd.contains('\0') && cwd.len() <= 4096).then(|| cwd.to_string())
}

fn valid_name(name: String) -> Option<String> {
    // Names are podman's `[a-zA-Z0-9][a-zA-Z0-9_.-]*`; anything else is not
    // shown (it would go into terminals and logs).
    let valid = name.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && name.len() <= 253
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    valid.then_some(name)
}

/// Whether `ctx` matches `--unit NAME`; a name without a suffix means the
/// `.service`.
pub fn matches_unit(ctx: &Context, wanted: &str) -> bool {
    let Some(unit) = &ctx.unit else { return false };
    unit == wanted || (!wanted.contains('.') && unit.strip_suffix(".service") == Some(wanted))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f4e1b8a9c2d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f";
    const UID: &str = "8d5a2b9e-7c3f-4e1a-9b6d-2f0e8c4a1d7b";

    fn container(runtime: Runtime, id: &str) -> Option<Container> {
        Some(Container { runtime, id: id.into(), name: None })
    }

    #[test]
    fn docker_in_both_drivers() {
        let c = parse(&format!("/system.slice/docker-{ID}.scope"));
        assert_eq!(c.container, container(Runtime::Docker, ID));
        assert_eq!(c.unit, Some(format!("docker-{ID}.scope")));
        assert_eq!(c.pod, None);
        assert_eq!(parse(&format!("/docker/{ID}")).container, container(Runtime::Docker, ID));
    }

    #[test]
    fn kubernetes_pods_with_containerd_and_cri_o() {
        let underscored = UID.replace('-', "_");
        let c = parse(&format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{underscored}.slice/cri-containerd-{ID}.scope"
        ));
        assert_eq!(c.container, container(Runtime::Containerd, ID));
        assert_eq!(c.pod, Some(Pod { uid: UID.into(), qos: Qos::Burstable }));
        let c = parse(&format!("/kubepods.slice/kubepods-pod{underscored}.slice/crio-{ID}.scope"));
        assert_eq!(c.container, container(Runtime::CriO, ID));
        assert_eq!(c.pod, Some(Pod { uid: UID.into(), qos: Qos::Guaranteed }));
        let c = parse(&format!(
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{underscored}.slice/crio-conmon-{ID}.scope"
        ));
        assert_eq!(c.container, None, "conmon is not the container");
        assert_eq!(c.pod.map(|p| p.qos), Some(Qos::BestEffort));
        // cgroupfs driver.
        let c = parse(&format!("/kubepods/besteffort/pod{UID}/{ID}"));
        assert_eq!(c.pod, Some(Pod { uid: UID.into(), qos: Qos::BestEffort }));
        assert_eq!(c.container, container(Runtime::Containerd, ID));
        assert_eq!(parse(&format!("/kubepods/pod{UID}/{ID}")).pod.map(|p| p.qos), Some(Qos::Guaranteed));
    }

    #[test]
    fn podman_rootful_rootless_and_nested() {
        assert_eq!(parse(&format!("/machine.slice/libpod-{ID}.scope")).container, container(Runtime::Podman, ID));
        let rootless = format!("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope");
        assert_eq!(parse(&rootless).container, container(Runtime::Podman, ID));
        // --cgroups=split / a systemd container: the payload's sub-cgroup.
        let nested = parse(&format!("/machine.slice/libpod-{ID}.scope/container"));
        assert_eq!(nested.container, container(Runtime::Podman, ID));
        assert_eq!(parse(&format!("/libpod_parent/libpod-{ID}")).container, container(Runtime::Podman, ID));
        assert_eq!(parse(&format!("/machine.slice/libpod-conmon-{ID}.scope")).container, None);
    }

    #[test]
    fn nspawn_machines_by_name() {
        let c = parse("/machine.slice/systemd-nspawn@debian\\x2dtest.service/payload/system.slice/cron.service");
        assert_eq!(c.container, container(Runtime::Nspawn, "debian-test"));
        assert_eq!(c.unit.as_deref(), Some("cron.service"), "the innermost unit");
        assert_eq!(parse("/machine.slice/machine-web1.scope").container, container(Runtime::Nspawn, "web1"));
        assert_eq!(parse("/system.slice/machine-web1.scope").container, None, "only under machine.slice");
    }

    #[test]
    fn units_without_containers() {
        let c = parse("/system.slice/nginx.service");
        assert_eq!((c.container, c.pod, c.unit.as_deref()), (None, None, Some("nginx.service")));
        let c = parse("/user.slice/user-1000.slice/user@1000.service/app.slice/app-gnome-firefox-4242.scope");
        assert_eq!(c.unit.as_deref(), Some("app-gnome-firefox-4242.scope"));
        assert_eq!(parse("/").unit, None);
        assert_eq!(parse("").unit, None);
        assert_eq!(parse("/system.slice").unit, None);
    }

    #[test]
    fn look_alikes_are_not_containers() {
        assert_eq!(parse("/system.slice/docker.service").container, None);
        assert_eq!(parse("/system.slice/docker-abc.scope").container, None, "not a full id");
        assert_eq!(parse(&format!("/other/{ID}")).container, None, "a bare id under an unknown parent");
        assert_eq!(parse("/kubepods.slice/kubepods-pod1234.slice").pod, None, "not a UID");
        assert_eq!(parse(&format!("/somewhere/pod{UID}")).pod, None, "not under kubepods");
        assert_eq!(parse("/machine.slice/systemd-nspawn@.service").container, None);
        assert_eq!(unescape("a\\x2db\\xzz\\x"), "a-b\\xzz\\x");
    }

    #[test]
    fn filters_take_ids_prefixes_names_and_bare_services() {
        let c = parse(&format!("/system.slice/docker-{ID}.scope"));
        assert!(matches_container(&c, ID));
        assert!(matches_container(&c, &ID[..12]));
        assert!(!matches_container(&c, &ID[..6]), "too short a prefix is ambiguous");
        assert!(!matches_container(&parse("/system.slice/nginx.service"), ID));
        let m = parse("/machine.slice/machine-web1.scope");
        assert!(matches_container(&m, "web1") && !matches_container(&m, "web"));
        let s = parse("/system.slice/nginx.service");
        assert!(matches_unit(&s, "nginx.service") && matches_unit(&s, "nginx"));
        assert!(!matches_unit(&s, "nginx.scope") && !matches_unit(&s, "ngin"));
    }

    #[test]
    fn podman_names_come_from_containers_json() {
        let json = format!(
            r#"[{{"id":"{}","names":["other"],"image":"x"}},{{"id":"{ID}","names":["web-1","alias"],"layer":"l","created":"2026-01-01T00:00:00Z"}}]"#,
            "0".repeat(64)
        );
        assert_eq!(podman_name(&json, ID).as_deref(), Some("web-1"));
        assert_eq!(podman_name(&json, &"1".repeat(64)), None);
        assert_eq!(podman_name("not json", ID), None);
        assert_eq!(podman_name(&format!(r#"[{{"id":"{ID}","names":[]}}]"#), ID), None);
        let r = podman_record(&format!(r#"[{{"id":"{ID}","names":["a"],"layer":"0123abcd"}}]"#), ID).unwrap();
        assert_eq!((r.name.as_deref(), r.layer.as_deref()), (Some("a"), Some("0123abcd")));
        let r = podman_record(&format!(r#"[{{"id":"{ID}","names":["a"],"layer":"../../etc"}}]"#), ID).unwrap();
        assert_eq!(r.layer, None, "a layer that is not an id is no path");
        assert_eq!(oci_cwd(r#"{"ociVersion":"1.0.2","process":{"args":["/crash"],"cwd":"/work"}}"#).as_deref(), Some("/work"));
        assert_eq!(oci_cwd(r#"{"process":{"cwd":"rel"}}"#), None);
        assert_eq!(oci_cwd("nope"), None);
        assert_eq!(podman_name(&format!(r#"[{{"id":"{ID}","names":["bad[31m"]}}]"#), ID), None, "control characters are refused");
        let mut c = parse(&format!("/libpod_parent/libpod-{ID}"));
        assert!(!matches_container(&c, "web-1"), "no name known yet");
        if let Some(k) = c.container.as_mut() {
            k.name = Some("web-1".into());
        }
        assert!(matches_container(&c, "web-1") && matches_container(&c, &ID[..12]) && !matches_container(&c, "web"));
    }

    #[test]
    fn the_context_round_trips_through_json() {
        let c = parse(&format!("/kubepods/burstable/pod{UID}/{ID}"));
        let json = serde_json::to_string(&c).unwrap();
        assert!(json.contains(r#""runtime":"containerd""#) && json.contains(r#""qos":"burstable""#), "{json}");
        assert_eq!(serde_json::from_str::<Context>(&json).unwrap(), c);
        assert_eq!(serde_json::to_string(&Context::default()).unwrap(), "{}");
    }
}
