//! `rxdskctl export`, `unexport` and `exports`: rxdsk devices served to other machines by the
//! kernel's NVMe-over-Fabrics target (nvmet), configured through configfs the way nvmetcli
//! does: a subsystem per device with the device as namespace 1, hosts allowed by NQN, and a
//! port (TCP or loop) the subsystem is linked into. The serial number and the namespace's
//! UUID and NGUID are derived from the subsystem's NQN ([`identity`]), so that they are the
//! same on every export.

use crate::device::device_path;
use std::fs;
use std::path::{Path, PathBuf};

pub mod identity;

/// The namespace id of the device in its subsystem.
pub const NSID: u32 = 1;

/// Where nvmet's configfs tree is.
pub const NVMET: &str = "/sys/kernel/config/nvmet";

/// `--transport`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Loop,
}

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Loop => "loop",
        }
    }

    fn module(self) -> &'static str {
        match self {
            Transport::Tcp => "nvmet-tcp",
            Transport::Loop => "nvme-loop",
        }
    }
}

/// What `export` is asked for.
#[derive(Debug)]
pub struct Request {
    pub id: u32,
    pub transport: Transport,
    pub address: Option<String>,
    /// The TCP port; 4420 (NVMe/TCP's) if `None`.
    pub port: Option<u16>,
    pub nqn: Option<String>,
    pub allow_hosts: Vec<String>,
    pub allow_any_host: bool,
}

/// NVMe/TCP's port (IANA), the default.
pub const DEFAULT_PORT: u16 = 4420;

/// Where a TCP port listens, as nvmet's configfs takes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listen {
    /// `addr_adrfam`: ipv4 or ipv6.
    pub family: &'static str,
    /// `addr_traddr`: the address in its canonical form, with `%interface` for a link-local
    /// IPv6 address.
    pub address: String,
    pub port: u16,
}

/// The address and port a request listens on (`None` for loop), checked before anything is
/// changed: an IPv4 or IPv6 address, a link-local IPv6 one with the `%interface` the kernel
/// needs to bind it (an interface that exists), a port from 1.
pub fn listen_address(r: &Request) -> Result<Option<Listen>, String> {
    if r.transport == Transport::Loop {
        if r.address.is_some() || r.port.is_some() {
            return Err("--address and --port are for --transport tcp, not loop".into());
        }
        return Ok(None);
    }
    let given = r
        .address
        .as_deref()
        .ok_or("--address is needed with --transport tcp")?;
    let invalid = |why: String| format!("invalid --address \"{given}\": {why}");
    let (ip, scope) = match given.split_once('%') {
        Some((ip, scope)) => (ip, Some(scope)),
        None => (given, None),
    };
    let ip: std::net::IpAddr = ip
        .parse()
        .map_err(|_| invalid("not an IPv4 or IPv6 address".into()))?;
    let link_local = matches!(ip, std::net::IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80);
    let address = match (scope, link_local) {
        (None, true) => {
            return Err(invalid(format!(
                "a link-local address needs its interface ({ip}%eth0, say)"
            )))
        }
        (Some(_), false) => {
            return Err(invalid(
                "only a link-local address (fe80::/10) takes %interface".into(),
            ))
        }
        (Some(iface), true) => {
            let known = !iface.is_empty()
                && !iface.contains('/')
                && iface != "."
                && iface != ".."
                && Path::new("/sys/class/net").join(iface).exists();
            if !known {
                return Err(invalid(format!("no network interface \"{iface}\"")));
            }
            format!("{ip}%{iface}")
        }
        (None, false) => ip.to_string(),
    };
    let port = r.port.unwrap_or(DEFAULT_PORT);
    if port == 0 {
        return Err(format!("invalid --port {port}: a TCP port is 1 to 65535"));
    }
    Ok(Some(Listen {
        family: if ip.is_ipv4() { "ipv4" } else { "ipv6" },
        address,
        port,
    }))
}

/// The default subsystem NQN of device `id`.
pub fn default_nqn(id: u32) -> String {
    format!("nqn.2026-12.io.rxdsk:rxd{id}")
}

/// An NQN as the NVMe specification allows: `nqn.` and at most 223 bytes, nothing that would
/// make it a path.
pub fn check_nqn(nqn: &str) -> Result<(), String> {
    if !nqn.starts_with("nqn.")
        || nqn.len() > 223
        || nqn.contains('/')
        || nqn.chars().any(char::is_whitespace)
    {
        return Err(format!("invalid NQN {nqn:?}: it starts with \"nqn.\", has at most 223 bytes and no '/' or spaces"));
    }
    Ok(())
}

fn write(path: &Path, value: &str) -> Result<(), String> {
    fs::write(path, value).map_err(|e| format!("{}: cannot write {value:?}: {e}", path.display()))
}

fn read(path: &Path) -> String {
    fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn mkdir(path: &Path) -> Result<(), String> {
    match fs::create_dir(path) {
        Ok(()) => {
            // What configfs creates with the group, in the tests' tree.
            #[cfg(test)]
            tests::kernel_made(path);
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(format!("{}: cannot create: {e}", path.display())),
    }
}

/// Removes a configfs group (its attributes and default groups go with it).
fn rmdir(path: &Path) -> std::io::Result<()> {
    #[cfg(test)]
    tests::kernel_unmade(path);
    fs::remove_dir(path)
}

/// A symlink at `at` to `target`, unless there is one.
fn symlink_once(target: &Path, at: &Path) -> std::io::Result<()> {
    if at.exists() {
        return Ok(());
    }
    std::os::unix::fs::symlink(target, at)
}

fn link(target: &Path, at: &Path) -> Result<(), String> {
    symlink_once(target, at).map_err(|e| format!("{}: cannot link: {e}", at.display()))
}

/// Links subsystem `target` into a port at `at`: nvmet enables the port then (binds its
/// address), and says why not with the link's errno.
fn enable_port(target: &Path, at: &Path, listen: Option<&Listen>) -> Result<(), String> {
    symlink_once(target, at).map_err(|e| port_failure(at, &e, listen))
}

/// Why a port could not be enabled: the errno, and what it means for an address and port.
fn port_failure(at: &Path, e: &std::io::Error, listen: Option<&Listen>) -> String {
    let hint = match (e.raw_os_error().map(nix::errno::Errno::from_raw), listen) {
        (Some(nix::errno::Errno::EADDRINUSE), Some(l)) => format!(
            " (another program listens on {} port {})",
            l.address, l.port
        ),
        (Some(nix::errno::Errno::EADDRNOTAVAIL), Some(l)) => {
            format!(" (no interface of this machine has {})", l.address)
        }
        _ => String::new(),
    };
    // The io::Error's text without its " (os error N)".
    let text = e.to_string();
    let cause = text.split(" (os error").next().unwrap_or_default();
    format!("{}: cannot enable the port: {cause}{hint}", at.display())
}

/// Loads `module` unless its configfs tree or driver is there (as zramctl loads zram).
fn modprobe(module: &str) -> Result<(), String> {
    let out = std::process::Command::new("modprobe")
        .arg(module)
        .output()
        .map_err(|e| format!("cannot run modprobe {module}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "the NVMe target module {module} is not available: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// nvmet's configfs tree, loading nvmet and the transport's module as needed.
fn nvmet_root(root: &Path, transport: Option<Transport>) -> Result<PathBuf, String> {
    let config = root.parent().unwrap_or(root);
    if !config.is_dir() || fs::read_dir(config).is_err() {
        return Err(format!(
            "configfs is not mounted at {} (mount -t configfs none {})",
            config.display(),
            config.display()
        ));
    }
    // Modules are the system's: another tree (the tests') is taken as it is.
    let system = root == Path::new(NVMET);
    if system && !root.is_dir() {
        modprobe("nvmet")?;
    }
    if let Some(t) = transport.filter(|t| {
        system
            && !Path::new("/sys/module")
                .join(t.module().replace('-', "_"))
                .exists()
    }) {
        modprobe(t.module())?;
    }
    if !root.is_dir() {
        return Err(format!("{} missing after loading nvmet", root.display()));
    }
    Ok(root.to_path_buf())
}

/// One export as configfs holds it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Export {
    pub nqn: String,
    pub device: String,
    pub transport: String,
    pub address: String,
    /// The TCP port; `None` for a transport without ports (loop).
    pub port: Option<u16>,
    #[serde(rename = "allow-any-host")]
    pub allow_any_host: bool,
    #[serde(rename = "allowed-hosts")]
    pub allowed_hosts: Vec<String>,
    /// The subsystem's serial number, the namespace's UUID and NGUID, as configfs has them.
    pub serial: String,
    pub uuid: String,
    pub nguid: String,
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Every subsystem whose namespace 1 is an rxdsk device, with its first port.
pub fn exports(root: &Path) -> Vec<Export> {
    let mut out = Vec::new();
    for nqn in names(&root.join("subsystems")) {
        let subsys = root.join("subsystems").join(&nqn);
        let ns = subsys.join("namespaces").join(NSID.to_string());
        let device = read(&ns.join("device_path"));
        if !device.starts_with("/dev/rxd") {
            continue;
        }
        let port = names(&root.join("ports")).into_iter().find(|p| {
            root.join("ports")
                .join(p)
                .join("subsystems")
                .join(&nqn)
                .exists()
        });
        let (transport, address, svc) = match &port {
            Some(p) => {
                let p = root.join("ports").join(p);
                (
                    read(&p.join("addr_trtype")),
                    read(&p.join("addr_traddr")),
                    read(&p.join("addr_trsvcid")),
                )
            }
            None => Default::default(),
        };
        out.push(Export {
            allow_any_host: read(&subsys.join("attr_allow_any_host")) == "1",
            allowed_hosts: names(&subsys.join("allowed_hosts")),
            nqn,
            device,
            transport,
            address,
            port: svc.parse().ok(),
            serial: read(&subsys.join("attr_serial")),
            uuid: read(&ns.join("device_uuid")),
            nguid: read(&ns.join("device_nguid")),
        });
    }
    out
}

/// The export of device `id`, if any.
pub fn export_of(root: &Path, id: u32) -> Option<Export> {
    exports(root)
        .into_iter()
        .find(|e| e.device == device_path(id))
}

/// Creates (or updates) the export: subsystem, namespace, allowed hosts, port, link. Every
/// argument is checked before anything changes; a new export that fails half-way is taken
/// down again.
pub fn export(root: &Path, r: &Request) -> Result<Export, String> {
    let nqn = r.nqn.clone().unwrap_or_else(|| default_nqn(r.id));
    check_nqn(&nqn)?;
    for h in &r.allow_hosts {
        check_nqn(h)?;
    }
    if !r.allow_any_host && r.allow_hosts.is_empty() {
        return Err("no host may connect: give --allow-host HOSTNQN (or --allow-any-host)".into());
    }
    let listen = listen_address(r)?;
    let root = nvmet_root(root, Some(r.transport))?;
    let existing = export_of(&root, r.id);
    if let Some(e) = existing.as_ref().filter(|e| e.nqn != nqn) {
        return Err(format!("already exported as {}", e.nqn));
    }
    let built = build(&root, r, &nqn, listen.as_ref());
    if built.is_err() && existing.is_none() {
        remove_subsystem(&root, &nqn);
    }
    built?;
    export_of(&root, r.id).ok_or_else(|| format!("{}: the export did not take", device_path(r.id)))
}

fn build(root: &Path, r: &Request, nqn: &str, listen: Option<&Listen>) -> Result<(), String> {
    let subsys = root.join("subsystems").join(nqn);
    let id = identity::derive(nqn, NSID);
    let new = !subsys.exists();
    mkdir(&subsys)?;
    // Only until a host has seen it (the first Identify Controller): then it stays.
    if new {
        write(&subsys.join("attr_serial"), &id.serial)?;
    }
    write(
        &subsys.join("attr_allow_any_host"),
        if r.allow_any_host { "1" } else { "0" },
    )?;
    // Exporting again states the whole list: hosts allowed before and not now are revoked.
    let allowed = subsys.join("allowed_hosts");
    for h in names(&allowed) {
        if !r.allow_hosts.contains(&h) {
            fs::remove_file(allowed.join(&h))
                .map_err(|e| format!("{}: cannot remove: {e}", allowed.join(&h).display()))?;
            remove_orphan_host(root, &h);
        }
    }
    for h in &r.allow_hosts {
        let host = root.join("hosts").join(h);
        mkdir(&host)?;
        link(&host, &allowed.join(h))?;
    }
    let ns = subsys.join("namespaces").join(NSID.to_string());
    mkdir(&ns)?;
    // The UUID and NGUID too can change only while the namespace is disabled.
    if read(&ns.join("enable")) != "1" {
        write(&ns.join("device_path"), &device_path(r.id))?;
        write(&ns.join("device_uuid"), &id.uuid)?;
        write(&ns.join("device_nguid"), &id.nguid)?;
        write(&ns.join("enable"), "1")?;
    }
    // A port with the same address is shared; else the lowest free id.
    let ports = root.join("ports");
    let same = names(&ports).into_iter().find(|p| {
        let p = ports.join(p);
        read(&p.join("addr_trtype")) == r.transport.name()
            && listen.is_none_or(|l| {
                read(&p.join("addr_traddr")) == l.address
                    && read(&p.join("addr_trsvcid")) == l.port.to_string()
            })
    });
    let (port, created) = match same {
        Some(p) => (ports.join(p), false),
        None => {
            let used = names(&ports);
            let id = (1..)
                .find(|i: &u32| !used.contains(&i.to_string()))
                .unwrap_or(1);
            let p = ports.join(id.to_string());
            mkdir(&p)?;
            (p, true)
        }
    };
    let linked = (|| {
        if created {
            write(&port.join("addr_trtype"), r.transport.name())?;
            if let Some(l) = listen {
                write(&port.join("addr_adrfam"), l.family)?;
                write(&port.join("addr_traddr"), &l.address)?;
                write(&port.join("addr_trsvcid"), &l.port.to_string())?;
            }
        }
        enable_port(&subsys, &port.join("subsystems").join(nqn), listen)
    })();
    if linked.is_err() && created {
        let _ = rmdir(&port);
    }
    linked
}

/// Best effort, for a failed new export: whatever of subsystem `nqn` exists goes.
fn remove_subsystem(root: &Path, nqn: &str) {
    let ports = root.join("ports");
    for p in names(&ports) {
        if fs::remove_file(ports.join(&p).join("subsystems").join(nqn)).is_ok()
            && names(&ports.join(&p).join("subsystems")).is_empty()
        {
            let _ = rmdir(&ports.join(&p));
        }
    }
    let subsys = root.join("subsystems").join(nqn);
    let ns = subsys.join("namespaces/1");
    let _ = fs::write(ns.join("enable"), "0");
    let _ = rmdir(&ns);
    let allowed = subsys.join("allowed_hosts");
    for h in names(&allowed) {
        let _ = fs::remove_file(allowed.join(&h));
        remove_orphan_host(root, &h);
    }
    let _ = rmdir(&subsys);
}

/// Removes host `h` from nvmet unless a subsystem still allows it.
fn remove_orphan_host(root: &Path, h: &str) {
    let still = names(&root.join("subsystems")).iter().any(|s| {
        root.join("subsystems")
            .join(s)
            .join("allowed_hosts")
            .join(h)
            .symlink_metadata()
            .is_ok()
    });
    if !still {
        let _ = rmdir(&root.join("hosts").join(h));
    }
}

/// Removes the export of device `id`: its port links (and ports left empty), namespace,
/// allowed-host links and subsystem; hosts no other subsystem allows go too.
pub fn unexport(root: &Path, id: u32) -> Result<(), String> {
    let e = export_of(root, id).ok_or("not exported")?;
    let subsys = root.join("subsystems").join(&e.nqn);
    let ports = root.join("ports");
    for p in names(&ports) {
        let l = ports.join(&p).join("subsystems").join(&e.nqn);
        if l.exists() || l.symlink_metadata().is_ok() {
            fs::remove_file(&l).map_err(|err| format!("{}: {err}", l.display()))?;
            if names(&ports.join(&p).join("subsystems")).is_empty() {
                let _ = rmdir(&ports.join(&p));
            }
        }
    }
    let ns = subsys.join("namespaces/1");
    write(&ns.join("enable"), "0")?;
    rmdir(&ns).map_err(|err| format!("{}: {err}", ns.display()))?;
    for h in &e.allowed_hosts {
        let l = subsys.join("allowed_hosts").join(h);
        fs::remove_file(&l).map_err(|err| format!("{}: {err}", l.display()))?;
    }
    rmdir(&subsys).map_err(|err| format!("{}: {err}", subsys.display()))?;
    for h in &e.allowed_hosts {
        remove_orphan_host(root, h);
    }
    Ok(())
}

/// After a grow: the hosts see the new size (namespace revalidation, an AEN to each).
pub fn revalidate(root: &Path, id: u32) {
    if let Some(e) = export_of(root, id) {
        let _ = fs::write(
            root.join("subsystems")
                .join(&e.nqn)
                .join("namespaces/1/revalidate_size"),
            "1",
        );
    }
}

/// `exports -J`: `{"exports": [...]}`.
pub fn render_json(exports: &[Export]) -> String {
    // Serializing strings, numbers and booleans cannot fail.
    let mut text = serde_json::to_string_pretty(&serde_json::json!({ "exports": exports }))
        .unwrap_or_default();
    text.push('\n');
    text
}

/// `exports` as text: one line per export.
pub fn render(exports: &[Export]) -> String {
    let mut s = String::new();
    for e in exports {
        let hosts = if e.allow_any_host {
            "any host".to_string()
        } else {
            e.allowed_hosts.join(",")
        };
        s += &format!(
            "{} {} {} {} {} {} {} {}\n",
            e.device,
            e.nqn,
            e.transport,
            if e.address.is_empty() {
                "-"
            } else {
                &e.address
            },
            e.port.map_or("-".to_string(), |p| p.to_string()),
            hosts,
            e.serial,
            e.uuid
        );
    }
    s
}

#[cfg(test)]
mod tests;
