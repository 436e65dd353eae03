//! `rxdskctl export`, `unexport` and `exports`: rxdsk devices served to other machines by the
//! kernel's NVMe-over-Fabrics target (nvmet), configured through configfs the way nvmetcli
//! does: a subsystem per device with the device as namespace 1, hosts allowed by NQN, and a
//! port (TCP or loop) the subsystem is linked into. An allowed host may have to authenticate
//! (DH-HMAC-CHAP, with a secret of its own and optionally one of the controller's: nvmet
//! keeps them per host, for every subsystem that allows it). The serial number and the namespace's
//! UUID and NGUID are derived from the subsystem's NQN ([`identity`]), so that they are the
//! same on every export.

use crate::device::device_path;
use crate::dhchap::{DhGroup, Hash, Secret};
use std::fs;
use std::path::{Path, PathBuf};

pub mod identity;

/// The namespace id of the device in its subsystem.
pub const NSID: u32 = 1;

/// Where nvmet's configfs tree is.
pub const NVMET: &str = "/sys/kernel/config/nvmet";

/// `--transport`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Transport {
    #[default]
    Tcp,
    Loop,
}

impl Transport {
    /// As configfs and `exports` write it.
    pub fn name(self) -> &'static str {
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
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub id: u32,
    pub transport: Transport,
    pub address: Option<String>,
    /// The TCP port; 4420 (NVMe/TCP's) if `None`.
    pub port: Option<u16>,
    pub nqn: Option<String>,
    pub allow_hosts: Vec<AllowedHost>,
    pub allow_any_host: bool,
}

/// A host allowed to connect, and how it authenticates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowedHost {
    pub nqn: String,
    /// DH-HMAC-CHAP; `None`: the host connects without authenticating.
    pub auth: Option<Auth>,
}

impl AllowedHost {
    /// A host that does not authenticate.
    pub fn new(nqn: &str) -> Self {
        Self {
            nqn: nqn.into(),
            auth: None,
        }
    }
}

/// The DH-HMAC-CHAP settings of a host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Auth {
    /// The host's secret.
    pub secret: Secret,
    /// The controller's: with it the host authenticates the target too (bidirectional).
    pub ctrl_secret: Option<Secret>,
    pub hash: Hash,
    pub dhgroup: DhGroup,
}

/// What the options that say how hosts authenticate are called where they were given (the
/// command line, the configuration), for messages.
pub struct AuthNames {
    pub allow_host: &'static str,
    pub allow_any_host: &'static str,
    pub secret: &'static str,
    pub ctrl_secret: &'static str,
    pub hash: &'static str,
    pub dhgroup: &'static str,
}

/// rxdsk.conf's names.
pub const CONFIG_KEYS: AuthNames = AuthNames {
    allow_host: "export-allow-hosts",
    allow_any_host: "export-allow-any-host",
    secret: "export-dhchap-secret",
    ctrl_secret: "export-dhchap-ctrl-secret",
    hash: "export-dhchap-hash",
    dhgroup: "export-dhchap-dhgroup",
};

/// The allowed hosts of a request: [`pair_secrets`], each host that has a secret
/// authenticating with the hash and group given (the kernel's defaults otherwise).
pub fn authenticate(
    hosts: &[String],
    secrets: Vec<Secret>,
    ctrl_secrets: Vec<Secret>,
    settings: (Option<Hash>, Option<DhGroup>),
    allow_any_host: bool,
    names: &AuthNames,
) -> Result<Vec<AllowedHost>, String> {
    let paired = pair_secrets(
        hosts,
        secrets,
        ctrl_secrets,
        settings,
        allow_any_host,
        names,
    )?;
    Ok(paired
        .into_iter()
        .map(|(nqn, auth)| AllowedHost {
            nqn,
            auth: auth.map(|(secret, ctrl_secret)| Auth {
                secret,
                ctrl_secret,
                hash: settings.0.unwrap_or_default(),
                dhgroup: settings.1.unwrap_or_default(),
            }),
        })
        .collect())
}

/// The command line's names.
pub const OPTIONS: AuthNames = AuthNames {
    allow_host: "--allow-host",
    allow_any_host: "--allow-any-host",
    secret: "--dhchap-secret",
    ctrl_secret: "--dhchap-ctrl-secret",
    hash: "--dhchap-hash",
    dhgroup: "--dhchap-dhgroup",
};

/// A host NQN and, if it authenticates, its secret and the controller's.
pub type Paired<T> = (String, Option<(T, Option<T>)>);

/// The secrets of the allowed hosts, paired by order: the Nth secret (and controller secret)
/// is the Nth host's. Either every host has one or none does, and the same for the
/// controller's; a secret cannot be combined with any host being allowed (nvmet
/// authenticates only the hosts it allows by name), nor a hash or group be given without
/// secrets, nor a controller's secret be the host's. `T` is a secret, or where one is.
pub fn pair_secrets<T: PartialEq>(
    hosts: &[String],
    secrets: Vec<T>,
    ctrl_secrets: Vec<T>,
    settings: (Option<Hash>, Option<DhGroup>),
    allow_any_host: bool,
    n: &AuthNames,
) -> Result<Vec<Paired<T>>, String> {
    if allow_any_host && !(secrets.is_empty() && ctrl_secrets.is_empty()) {
        return Err(format!(
            "{} turns authentication off (nvmet authenticates only the hosts it allows by \
             name): give each host with {} and its {}",
            n.allow_any_host, n.allow_host, n.secret
        ));
    }
    if secrets.is_empty() {
        let stray = [
            (!ctrl_secrets.is_empty(), n.ctrl_secret),
            (settings.0.is_some(), n.hash),
            (settings.1.is_some(), n.dhgroup),
        ];
        if let Some((_, name)) = stray.iter().find(|(given, _)| *given) {
            return Err(format!("{name} needs {}", n.secret));
        }
    }
    for (given, name) in [
        (secrets.len(), n.secret),
        (ctrl_secrets.len(), n.ctrl_secret),
    ] {
        if given != 0 && given != hosts.len() {
            return Err(format!(
                "{given} {name} for {} {}: give one for each host, in the same order",
                hosts.len(),
                n.allow_host
            ));
        }
    }
    let mut secrets = secrets.into_iter();
    let mut ctrl_secrets = ctrl_secrets.into_iter();
    let mut paired = Vec::new();
    for h in hosts {
        let auth = match (secrets.next(), ctrl_secrets.next()) {
            (Some(s), Some(c)) if s == c => {
                return Err(format!(
                    "the {} of {h} is its {}: the two directions need two secrets",
                    n.ctrl_secret, n.secret
                ))
            }
            (Some(s), c) => Some((s, c)),
            (None, _) => None,
        };
        paired.push((h.clone(), auth));
    }
    Ok(paired)
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
    let (ip, scope) = parse_address(given).map_err(invalid)?;
    let address = match scope {
        Some(iface) => {
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
        None => ip.to_string(),
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

/// The IP of an address to listen on and, for a link-local IPv6 one, the interface it must
/// name (`fe80::1%eth0`): the checks that need no network (not that the interface exists).
pub fn parse_address(given: &str) -> Result<(std::net::IpAddr, Option<&str>), String> {
    let (ip, scope) = match given.split_once('%') {
        Some((ip, scope)) => (ip, Some(scope)),
        None => (given, None),
    };
    let ip: std::net::IpAddr = ip
        .parse()
        .map_err(|_| "not an IPv4 or IPv6 address".to_string())?;
    let link_local = matches!(ip, std::net::IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80);
    match (scope, link_local) {
        (None, true) => Err(format!(
            "a link-local address needs its interface ({ip}%eth0, say)"
        )),
        (Some(_), false) => Err("only a link-local address (fe80::/10) takes %interface".into()),
        _ => Ok((ip, scope)),
    }
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
            crate::testutil::nvmet::kernel_made(path);
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(format!("{}: cannot create: {e}", path.display())),
    }
}

/// Removes a configfs group (its attributes and default groups go with it).
fn rmdir(path: &Path) -> std::io::Result<()> {
    #[cfg(test)]
    crate::testutil::nvmet::kernel_unmade(path);
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
    /// Those of the allowed hosts that authenticate.
    #[serde(rename = "authenticated-hosts")]
    pub authenticated_hosts: Vec<Authenticated>,
    /// The subsystem's serial number, the namespace's UUID and NGUID, as configfs has them.
    pub serial: String,
    pub uuid: String,
    pub nguid: String,
    /// The allowed hosts' settings, secrets and all: never shown.
    #[serde(skip)]
    pub hosts: Vec<HostSettings>,
    /// How many ports the subsystem is linked into.
    #[serde(skip)]
    pub ports: usize,
}

/// An allowed host that authenticates, as `exports` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Authenticated {
    pub nqn: String,
    /// `dhchap_hash`: hmac(sha256), ...
    pub hash: String,
    /// `dhchap_dhgroup`: null, ffdhe2048, ...
    pub dhgroup: String,
    /// The controller authenticates to the host too.
    pub bidirectional: bool,
}

/// A host's DH-HMAC-CHAP settings as configfs has them: secrets in the DHHC-1 form, empty
/// for none.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct HostSettings {
    pub nqn: String,
    pub secret: String,
    pub ctrl_secret: String,
    pub hash: String,
    pub dhgroup: String,
}

impl std::fmt::Debug for HostSettings {
    /// Without the secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "HostSettings {{ nqn: {:?}, secret: {}, ctrl_secret: {}, hash: {:?}, dhgroup: {:?} }}",
            self.nqn,
            !self.secret.is_empty(),
            !self.ctrl_secret.is_empty(),
            self.hash,
            self.dhgroup
        )
    }
}

impl HostSettings {
    /// Host `nqn`'s, from configfs under `root`.
    fn read(root: &Path, nqn: &str) -> Self {
        let host = root.join("hosts").join(nqn);
        Self {
            nqn: nqn.into(),
            secret: read(&host.join("dhchap_key")),
            ctrl_secret: read(&host.join("dhchap_ctrl_key")),
            hash: read(&host.join("dhchap_hash")),
            dhgroup: read(&host.join("dhchap_dhgroup")),
        }
    }

    /// Whether they are what `auth` says (no secrets for `None`).
    pub fn is(&self, auth: Option<&Auth>) -> bool {
        match auth {
            None => self.secret.is_empty() && self.ctrl_secret.is_empty(),
            Some(a) => {
                self.secret == a.secret.encode()
                    && self.ctrl_secret
                        == a.ctrl_secret.as_ref().map_or(String::new(), Secret::encode)
                    && self.hash == a.hash.configfs()
                    && self.dhgroup == a.dhgroup.configfs()
            }
        }
    }
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
        let linked: Vec<String> = names(&root.join("ports"))
            .into_iter()
            .filter(|p| {
                root.join("ports")
                    .join(p)
                    .join("subsystems")
                    .join(&nqn)
                    .exists()
            })
            .collect();
        let port = linked.first();
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
        let allowed_hosts = names(&subsys.join("allowed_hosts"));
        let hosts: Vec<HostSettings> = allowed_hosts
            .iter()
            .map(|h| HostSettings::read(root, h))
            .collect();
        out.push(Export {
            allow_any_host: read(&subsys.join("attr_allow_any_host")) == "1",
            authenticated_hosts: hosts
                .iter()
                .filter(|h| !h.secret.is_empty())
                .map(|h| Authenticated {
                    nqn: h.nqn.clone(),
                    hash: h.hash.clone(),
                    dhgroup: h.dhgroup.clone(),
                    bidirectional: !h.ctrl_secret.is_empty(),
                })
                .collect(),
            allowed_hosts,
            hosts,
            ports: linked.len(),
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
    let (nqn, listen) = check(r)?;
    let root = nvmet_root(root, Some(r.transport))?;
    let existing = export_of(&root, r.id);
    if let Some(e) = existing.as_ref().filter(|e| e.nqn != nqn) {
        return Err(format!("already exported as {}", e.nqn));
    }
    check_shared_hosts(&root, &nqn, &r.allow_hosts)?;
    let built = build(&root, r, &nqn, listen.as_ref());
    if built.is_err() && existing.is_none() {
        remove_subsystem(&root, &nqn);
    }
    built?;
    export_of(&root, r.id).ok_or_else(|| format!("{}: the export did not take", device_path(r.id)))
}

/// The subsystem NQN and listening address of a request, once everything in it is checked.
pub fn check(r: &Request) -> Result<(String, Option<Listen>), String> {
    let nqn = r.nqn.clone().unwrap_or_else(|| default_nqn(r.id));
    check_nqn(&nqn)?;
    for (i, h) in r.allow_hosts.iter().enumerate() {
        check_nqn(&h.nqn)?;
        if r.allow_hosts[..i].iter().any(|o| o.nqn == h.nqn) {
            return Err(format!("host {} is given twice", h.nqn));
        }
    }
    match (r.allow_any_host, r.allow_hosts.is_empty()) {
        (false, true) => {
            return Err(
                "no host may connect: give --allow-host HOSTNQN (or --allow-any-host)".into(),
            )
        }
        (true, false) => return Err("--allow-any-host and --allow-host exclude each other".into()),
        _ => {}
    }
    Ok((nqn, listen_address(r)?))
}

/// nvmet keeps a host's secrets for every subsystem that allows it: a host another
/// subsystem allows cannot be given other settings.
fn check_shared_hosts(root: &Path, nqn: &str, hosts: &[AllowedHost]) -> Result<(), String> {
    for h in hosts {
        let current = HostSettings::read(root, &h.nqn);
        if !root.join("hosts").join(&h.nqn).is_dir() || current.is(h.auth.as_ref()) {
            continue;
        }
        if let Some(other) = allowed_by(root, &h.nqn).into_iter().find(|s| s != nqn) {
            return Err(format!(
                "host {} is allowed by {other} too, with other DH-HMAC-CHAP settings: nvmet \
                 keeps them per host, so they would change for {other} as well (give the same \
                 secrets, or unexport {other} first)",
                h.nqn
            ));
        }
    }
    Ok(())
}

/// The subsystems that allow host `h`.
fn allowed_by(root: &Path, h: &str) -> Vec<String> {
    names(&root.join("subsystems"))
        .into_iter()
        .filter(|s| {
            root.join("subsystems")
                .join(s)
                .join("allowed_hosts")
                .join(h)
                .symlink_metadata()
                .is_ok()
        })
        .collect()
}

/// Host `h` in nvmet with its settings, allowed by subsystem `subsys`. nvmet cannot take a
/// secret away from a host: a host whose secret goes is made anew (no other subsystem allows
/// it: `check_shared_hosts`).
fn allow_host(root: &Path, subsys: &Path, h: &AllowedHost) -> Result<(), String> {
    let host = root.join("hosts").join(&h.nqn);
    let link_at = subsys.join("allowed_hosts").join(&h.nqn);
    let current = HostSettings::read(root, &h.nqn);
    let dropped = (!current.secret.is_empty() && h.auth.is_none())
        || (!current.ctrl_secret.is_empty()
            && h.auth.as_ref().is_none_or(|a| a.ctrl_secret.is_none()));
    if host.is_dir() && dropped {
        if link_at.symlink_metadata().is_ok() {
            fs::remove_file(&link_at)
                .map_err(|e| format!("{}: cannot remove: {e}", link_at.display()))?;
        }
        rmdir(&host).map_err(|e| format!("{}: cannot remove: {e}", host.display()))?;
    }
    mkdir(&host)?;
    if let Some(a) = &h.auth {
        write(&host.join("dhchap_hash"), a.hash.configfs())?;
        write(&host.join("dhchap_dhgroup"), a.dhgroup.configfs())?;
        write_secret(&host.join("dhchap_key"), &a.secret)?;
        if let Some(c) = &a.ctrl_secret {
            write_secret(&host.join("dhchap_ctrl_key"), c)?;
        }
    }
    link(&host, &link_at)
}

/// Writes a secret without showing it in the message if that fails.
fn write_secret(path: &Path, secret: &Secret) -> Result<(), String> {
    fs::write(path, secret.encode())
        .map_err(|e| format!("{}: cannot write the secret: {e}", path.display()))
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
    // Exporting again states the whole list: hosts allowed before and not now are revoked
    // (first: nvmet lets any host in only when no host is named).
    let allowed = subsys.join("allowed_hosts");
    for h in names(&allowed) {
        if !r.allow_hosts.iter().any(|a| a.nqn == h) {
            fs::remove_file(allowed.join(&h))
                .map_err(|e| format!("{}: cannot remove: {e}", allowed.join(&h).display()))?;
            remove_orphan_host(root, &h);
        }
    }
    write(
        &subsys.join("attr_allow_any_host"),
        if r.allow_any_host { "1" } else { "0" },
    )?;
    for h in &r.allow_hosts {
        allow_host(root, &subsys, h)?;
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
    linked?;
    // Exported elsewhere before (another address): not any more.
    for p in names(&ports).into_iter().map(|p| ports.join(p)) {
        let l = p.join("subsystems").join(nqn);
        if p != port && l.symlink_metadata().is_ok() {
            fs::remove_file(&l).map_err(|e| format!("{}: cannot remove: {e}", l.display()))?;
            if names(&p.join("subsystems")).is_empty() {
                let _ = rmdir(&p);
            }
        }
    }
    Ok(())
}

/// Whether export `e` is what `r` asks for (the identity aside): the same subsystem, one port
/// at the address asked for, the same hosts with the same settings.
pub fn is_as_requested(e: &Export, r: &Request) -> bool {
    let Ok((nqn, listen)) = check(r) else {
        return false;
    };
    let (address, port) = listen.map_or((String::new(), None), |l| (l.address, Some(l.port)));
    let mut want: Vec<&str> = r.allow_hosts.iter().map(|h| h.nqn.as_str()).collect();
    want.sort_unstable();
    e.nqn == nqn
        && e.transport == r.transport.name()
        && e.ports == 1
        && e.address == address
        && e.port == port
        && e.allow_any_host == r.allow_any_host
        && e.allowed_hosts == want
        && r.allow_hosts.iter().all(|h| {
            e.hosts
                .iter()
                .any(|s| s.nqn == h.nqn && s.is(h.auth.as_ref()))
        })
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

/// Removes host `h` (and its secrets) from nvmet unless a subsystem still allows it.
fn remove_orphan_host(root: &Path, h: &str) {
    if allowed_by(root, h).is_empty() {
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

/// `exports` as text, one line per export: device, NQN, transport, address, port, allowed
/// hosts (`HOSTNQN(dhchap)` for one that authenticates, `HOSTNQN(dhchap+ctrl)` when the
/// controller authenticates to it too), serial number, namespace UUID.
pub fn render(exports: &[Export]) -> String {
    let mut s = String::new();
    for e in exports {
        let hosts = if e.allow_any_host {
            "any host".to_string()
        } else {
            let marked: Vec<String> = e
                .allowed_hosts
                .iter()
                .map(
                    |h| match e.authenticated_hosts.iter().find(|a| &a.nqn == h) {
                        Some(a) if a.bidirectional => format!("{h}(dhchap+ctrl)"),
                        Some(_) => format!("{h}(dhchap)"),
                        None => h.clone(),
                    },
                )
                .collect();
            marked.join(",")
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
