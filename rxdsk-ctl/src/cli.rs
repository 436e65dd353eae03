//! The command line. Values are parsed here, so that a bad DEVICE, SIZE or column is a usage
//! error before anything is done.

use crate::device::parse_device;
use crate::list::{columns_help, parse_columns, Columns};
use crate::size::parse_size;
use clap::builder::TypedValueParser;
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "rxdskctl",
    version,
    about = "Set up and control rxdsk RAM block devices",
    after_help = "Without a command, lists the devices (as `rxdskctl list`).\n\
                  DEVICE is /dev/rxdN, rxdN or N. SIZE is bytes, or a number with a K, M, G, T \
                  or P suffix (powers of 1024; KiB etc. also accepted).\n\
                  list, stats and version read sysfs (/sys/block/rxdN/rxdsk/, /sys/module/rxdsk/) \
                  and work for any user; with a module too old to have those files they use the \
                  control node, as the other commands do, which needs CAP_SYS_ADMIN. create and \
                  apply load the module (modprobe rxdsk) when the control node is missing.\n\
                  For tests: RXDSK_CONTROL (the control node), RXDSK_SYSFS_ROOT (sysfs) and \
                  RXDSK_MODPROBE (the modprobe program)."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

impl Cli {
    /// The command to run: `list` when none was given, as zramctl does.
    pub fn into_command(self) -> Command {
        self.command
            .unwrap_or_else(|| Command::List(ListArgs::default()))
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a device and print its path.
    Create(CreateArgs),
    /// Destroy devices and free their memory.
    Destroy(DestroyArgs),
    /// Change the size of a device.
    Resize(ResizeArgs),
    /// List devices (any user may).
    #[command(after_help = columns_help())]
    List(ListArgs),
    /// Print the I/O and memory counters of a device (any user may).
    Stats(StatsArgs),
    /// Attach a backing block device: flushes write the device's data there as a restorable
    /// image (`create --backing` restores it).
    Attach(AttachArgs),
    /// Write every change to the backing device and commit the image; returns when durable.
    #[command(
        after_help = "What a flush writes: the device as it was at one instant T inside \
        the flush (its cut). Every write, discard and write-zeroes completed before T is in \
        the image; none started after T is; one in flight at T is there whole or not at all. \
        Writers go on while the flush runs: once it returns, a power cut and a restore \
        (create --backing) give back exactly that instant, which is what a journaling file \
        system recovers from (no need to freeze it first).\n\n\
        With a journal that holds the changes (attach --journal), an interrupted flush \
        restores to the previous flush's instant or to this one, never a mix and never a \
        refusal. Without one (or with more changes than the journal holds: the output says \
        whether the flush was atomic), an interrupted flush leaves an image that a restore \
        refuses unless --force.\n\n\
        What a writer pays: taking the cut waits for the writes in progress and holds new ones \
        for that moment (no I/O). While the flush runs, a write first copies a page of the \
        cut that the flush has not written yet (a compressed page keeps its old object: no \
        copy); such copies are freed as the flush writes them."
    )]
    Flush(FlushArgs),
    /// Flush, then let the backing device go.
    Detach(DetachArgs),
    /// Print the image metadata of a backing device or image file (no module needed).
    Inspect(InspectArgs),
    /// Serve a device to other machines through the kernel's NVMe-oF target (nvmet).
    Export(ExportArgs),
    /// Stop serving a device over NVMe-oF.
    Unexport {
        /// /dev/rxdN, rxdN or N.
        #[arg(value_name = "DEVICE", value_parser = parse_device)]
        device: u32,
    },
    /// List the devices served over NVMe-oF.
    Exports {
        /// Use JSON output format.
        #[arg(short = 'J', long, long_help = EXPORTS_JSON)]
        json: bool,
    },
    /// Create, restore, grow and format the devices of the configuration (rxdsk.conf(5)) so
    /// that they are as it says; devices it does not name are left alone.
    #[command(
        after_help = "Exit status, as mount(8)'s, per device: 0 done (or nothing to do); 1 a \
                      bad configuration or command line, or a device that cannot become what it \
                      says: nothing was changed; 32 every device with work to do failed (a \
                      device whose first steps were done fails if a later one does); 64 some \
                      were set up and some failed."
    )]
    Apply(ApplyArgs),
    /// Generate a DH-HMAC-CHAP secret for NVMe in-band authentication (`export
    /// --dhchap-secret`, `nvme connect --dhchap-secret`), in the DHHC-1 representation
    /// nvme-cli's gen-dhchap-key prints; no module needed.
    GenDhchapKey(GenDhchapKeyArgs),
    /// Print the versions of rxdskctl and of the loaded rxdsk module (any user may).
    Version {
        /// Use JSON output format.
        #[arg(short = 'J', long, long_help = VERSION_JSON)]
        json: bool,
    },
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Device size: bytes, or a number with a K, M, G, T or P suffix (powers of 1024).
    #[arg(short = 's', long, value_name = "SIZE", value_parser = NotAnOption(parse_size),
          allow_hyphen_values = true, required_unless_present = "backing", conflicts_with = "backing")]
    pub size: Option<u64>,
    /// Restore the device from the image on this backing device, or on a blank one (no rxdsk
    /// image, only zeros in its first and last MiB) create a new device as big as it; either
    /// way it stays attached. A restore takes size, block size, mode, journal and flush
    /// interval from the image, and reads pages from it on first access unless --preload. A
    /// new device is the backing device's size less the journal and the 4 KiB metadata
    /// block, rounded down to 4 KiB, attached with --mode, --journal and --flush-interval
    /// (and destroyed again if the attach fails). A backing device that holds anything else
    /// (a filesystem, a partition table) is refused: wipe it first, or attach by hand.
    #[arg(long, value_name = "BACKING", conflicts_with_all = ["block_size", "read_only"])]
    pub backing: Option<String>,
    /// With --backing on a blank device: the mode it is attached in, as attach --mode.
    /// Default: writeback. A restore takes it from the image.
    #[arg(long, value_enum, requires = "backing")]
    pub mode: Option<Mode>,
    /// With --backing on a blank device: a journal of SIZE after the data, as attach
    /// --journal (a multiple of 4 KiB; the device is that much smaller). Default: none. A
    /// restore takes it from the image.
    #[arg(long, value_name = "SIZE", value_parser = parse_size, requires = "backing")]
    pub journal: Option<u64>,
    /// With --backing on a blank device: flush automatically every SECS seconds when
    /// something changed, as attach --flush-interval. Default: only on request. A restore
    /// takes it from the image.
    #[arg(long, value_name = "SECS", requires = "backing")]
    pub flush_interval: Option<u32>,
    /// With --backing: restore an image whose last flush did not complete.
    #[arg(long, requires = "backing")]
    pub force: bool,
    /// With --backing: read every page in before returning, so that no later read waits for
    /// the backing device.
    #[arg(long, requires = "backing")]
    pub preload: bool,
    /// Logical block size in bytes: 512 or 4096.
    #[arg(long, value_name = "BYTES", default_value = "4096", value_parser = parse_block_size)]
    pub block_size: u32,
    /// Most memory the device may hold (default: no limit). With a backing device (--backing,
    /// or `attach` later) it is a cache size: clean pages are evicted and read back on the
    /// next access, dirty ones flushed first; the device may be bigger than it. The
    /// writearound mode needs one (attach --mode writearound, --backing --mode writearound,
    /// or --backing with an image attached in that mode).
    #[arg(long, value_name = "SIZE", value_parser = NotAnOption(parse_size), allow_hyphen_values = true)]
    pub mem_limit: Option<u64>,
    /// Create a read-only device.
    #[arg(short = 'r', long)]
    pub read_only: bool,
    /// Create the device with this id (/dev/rxdN, rxdN or N) instead of the lowest free one.
    #[arg(long, value_name = "DEVICE", value_parser = parse_device)]
    pub id: Option<u32>,
    /// Store pages compressed with this algorithm (zram's names). --mem-limit then limits the
    /// memory really used (TOTAL in `list -o +TOTAL`). With --backing: the restored device's
    /// (its image holds plain data, so any algorithm or none can hold it).
    #[arg(long, value_name = "ALGORITHM")]
    pub compress: Option<Compression>,
    /// The algorithm's level (zstd: -131072 to 22, default 3; lz4: acceleration, default 1).
    #[arg(
        long,
        value_name = "N",
        requires = "compress",
        allow_negative_numbers = true
    )]
    pub compress_level: Option<i32>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    Lzo,
    #[value(name = "lzo-rle")]
    LzoRle,
    Lz4,
    Zstd,
}

impl Compression {
    /// `RXDSK_COMPRESS_*`.
    pub fn abi(self) -> u32 {
        match self {
            Compression::Lzo => rxdsk_ioctl::RXDSK_COMPRESS_LZO,
            Compression::LzoRle => rxdsk_ioctl::RXDSK_COMPRESS_LZO_RLE,
            Compression::Lz4 => rxdsk_ioctl::RXDSK_COMPRESS_LZ4,
            Compression::Zstd => rxdsk_ioctl::RXDSK_COMPRESS_ZSTD,
        }
    }
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// /dev/rxdN, rxdN or N.
    #[arg(value_name = "DEVICE", value_parser = parse_device)]
    pub device: u32,
    /// tcp, or loop (the same machine: for tests).
    #[arg(long, value_enum, default_value = "tcp")]
    pub transport: crate::export::Transport,
    /// The address to listen on (tcp): IPv4, or IPv6 (with %interface for a link-local one).
    #[arg(long, value_name = "ADDR")]
    pub address: Option<String>,
    /// The TCP port (default 4420, NVMe/TCP's).
    #[arg(long, value_name = "N")]
    pub port: Option<u16>,
    /// The subsystem's NQN (default nqn.2026-12.io.rxdsk:rxdN).
    #[arg(long, value_name = "NQN")]
    pub nqn: Option<String>,
    /// A host NQN that may connect (repeatable); no other host may.
    #[arg(long = "allow-host", value_name = "HOSTNQN")]
    pub allow_hosts: Vec<String>,
    /// Let any host connect (no host then authenticates: not with --dhchap-secret).
    #[arg(long)]
    pub allow_any_host: bool,
    /// The DH-HMAC-CHAP secret an --allow-host authenticates with (NVMe in-band
    /// authentication; `nvme connect --dhchap-secret` on the host): one for each
    /// --allow-host, in the same order. @FILE reads it from FILE, - from standard input; the
    /// DHHC-1 string itself is taken too, but every user sees it in ps. gen-dhchap-key makes
    /// one; nvme-cli's gen-dhchap-key output is taken as well.
    #[arg(long = "dhchap-secret", value_name = "SECRET")]
    pub dhchap_secrets: Vec<String>,
    /// The controller's secret for that host (`nvme connect --dhchap-ctrl-secret`), which
    /// then authenticates the target too (bidirectional): one for each --allow-host, in the
    /// same order, with --dhchap-secret; as --dhchap-secret, and another secret than the
    /// host's.
    #[arg(long = "dhchap-ctrl-secret", value_name = "SECRET")]
    pub dhchap_ctrl_secrets: Vec<String>,
    /// The HMAC of the authentication: sha256 (default), sha384 or sha512.
    #[arg(long, value_enum, value_name = "HASH")]
    pub dhchap_hash: Option<crate::dhchap::Hash>,
    /// The Diffie-Hellman group of the authentication: null (default: none), ffdhe2048,
    /// ffdhe3072, ffdhe4096, ffdhe6144 or ffdhe8192.
    #[arg(long, value_enum, value_name = "GROUP")]
    pub dhchap_dhgroup: Option<crate::dhchap::DhGroup>,
}

#[derive(Args, Debug)]
pub struct GenDhchapKeyArgs {
    /// How the key is transformed (with the NQN) before use, the hh of DHHC-1:hh:...: 0 not
    /// at all, 1 SHA-256, 2 SHA-384, 3 SHA-512.
    #[arg(short = 'm', long, value_name = "ID", default_value_t = 0,
          value_parser = clap::value_parser!(u8).range(0..=3))]
    pub hmac: u8,
    /// The key's length in bytes: 32, 48 or 64 (default: the digest size of --hmac; 32 for 0).
    #[arg(short = 'l', long, value_name = "BYTES", value_parser = parse_key_length)]
    pub key_length: Option<usize>,
    /// Write the secret to FILE, a new file only its owner can read (mode 0600), instead of
    /// standard output.
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<std::path::PathBuf>,
}

fn parse_key_length(s: &str) -> Result<usize, String> {
    match s.parse() {
        Ok(n) if crate::dhchap::KEY_LENGTHS.contains(&n) => Ok(n),
        _ => Err("a DH-HMAC-CHAP key is 32, 48 or 64 bytes".into()),
    }
}

/// How a backing device is attached: RapidDisk-cache's three modes.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Writeback,
    Writethrough,
    Writearound,
}

impl Mode {
    /// Every mode, in the order the help lists them.
    pub const ALL: [Mode; 3] = [Mode::Writeback, Mode::Writethrough, Mode::Writearound];

    /// Its name: `--mode`'s value, rxdsk.conf's, the MODE column's, `inspect`'s and sysfs'.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Writeback => "writeback",
            Mode::Writethrough => "writethrough",
            Mode::Writearound => "writearound",
        }
    }

    /// ATTACH's `flags` for it.
    pub fn attach_flags(self) -> u64 {
        match self {
            Mode::Writeback => 0,
            Mode::Writethrough => rxdsk_ioctl::RXDSK_ATTACH_WRITETHROUGH,
            Mode::Writearound => rxdsk_ioctl::RXDSK_ATTACH_WRITEAROUND,
        }
    }

    /// The mode of a backed device by INFO's flags. The kernel sets `RXDSK_FLAG_WRITETHROUGH`
    /// for a writearound device too (older clients see writethrough), so writearound first.
    pub fn of_flags(flags: u64) -> Mode {
        if flags & rxdsk_ioctl::RXDSK_FLAG_WRITEAROUND != 0 {
            Mode::Writearound
        } else if flags & rxdsk_ioctl::RXDSK_FLAG_WRITETHROUGH != 0 {
            Mode::Writethrough
        } else {
            Mode::Writeback
        }
    }

    /// The mode an image header's `mode` records (`RXDSK_IMAGE_*`; the header's check refuses
    /// any other value).
    pub fn of_image(mode: u32) -> Mode {
        match mode {
            rxdsk_ioctl::RXDSK_IMAGE_WRITETHROUGH => Mode::Writethrough,
            rxdsk_ioctl::RXDSK_IMAGE_WRITEAROUND => Mode::Writearound,
            _ => Mode::Writeback,
        }
    }

    /// "writeback, writethrough or writearound".
    pub fn names() -> String {
        let names: Vec<&str> = Self::ALL.iter().map(|m| m.name()).collect();
        let (last, rest) = names.split_last().unwrap_or((&"", &[]));
        format!("{} or {last}", rest.join(", "))
    }
}

#[derive(Args, Debug)]
pub struct AttachArgs {
    /// /dev/rxdN, rxdN or N.
    #[arg(value_name = "DEVICE", value_parser = parse_device)]
    pub device: u32,
    /// The block device to write the image to (a partition, an LV, a loop device); held
    /// exclusively while attached; its size must be the device's, plus the journal, plus 4 KiB.
    #[arg(value_name = "BACKING")]
    pub backing: String,
    /// writeback: writes complete in RAM and reach the backing device on flush (and detach).
    /// writethrough: a write completes only once it is on the backing device too; the whole
    /// image is written before attach returns. writearound: as writethrough, and the pages
    /// written leave RAM once on the backing device, which keeps RAM for what is read (write-once
    /// data such as logs or backups does not evict the read-hot set); needs a memory limit
    /// (create --mem-limit), its read cache's size.
    #[arg(long, value_enum, default_value_t = Mode::Writeback)]
    pub mode: Mode,
    /// Reserve a journal of SIZE after the data (a multiple of 4 KiB): every flush whose
    /// changed pages fit in it is atomic (a power cut restores the previous image or the new
    /// one, never a mix). A larger flush is written in place, not atomic. Default: none.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub journal: Option<u64>,
    /// Flush automatically every SECS seconds when something changed (kept in the image, so a
    /// restore does the same). Default: only on request.
    #[arg(long, value_name = "SECS")]
    pub flush_interval: Option<u32>,
}

#[derive(Args, Debug)]
pub struct ApplyArgs {
    /// Only these configured devices (/dev/rxdN, rxdN or N); default: all.
    #[arg(value_name = "DEVICE", value_parser = parse_device)]
    pub devices: Vec<u32>,
    /// Read this file instead of rxdsk.conf and rxdsk.conf.d/*.conf (repeatable; later
    /// files override earlier ones).
    #[arg(long, value_name = "FILE", conflicts_with = "root")]
    pub config: Vec<std::path::PathBuf>,
    /// Look for the configuration under DIR instead of / (DIR/etc/rxdsk.conf, ...).
    #[arg(long, value_name = "DIR")]
    pub root: Option<std::path::PathBuf>,
    /// Print what would be done, and do nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Also turn swap on and mount filesystems (at boot, the systemd units do that).
    #[arg(long)]
    pub activate: bool,
    /// Leave NVMe-oF exports alone (what the setup service does at boot: the export service
    /// exports the device once the network is up).
    #[arg(long)]
    pub no_export: bool,
    /// Use JSON output format.
    #[arg(short = 'J', long, long_help = APPLY_JSON)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct FlushArgs {
    /// Devices to flush: /dev/rxdN, rxdN or N.
    #[arg(value_name = "DEVICE", value_parser = parse_device, required_unless_present = "all")]
    pub devices: Vec<u32>,
    /// Flush every device that has a backing device (none if the module is not loaded).
    #[arg(long, conflicts_with = "devices")]
    pub all: bool,
    /// Skip, without an error, the devices given that do not exist (or the module is not
    /// loaded) or have no backing device (what a shutdown does: rxdsk-setup@.service's
    /// ExecStop). Any other error still fails.
    #[arg(long, conflicts_with = "all")]
    pub if_backed: bool,
    /// Use JSON output format.
    #[arg(short = 'J', long, long_help = FLUSH_JSON)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct DetachArgs {
    /// /dev/rxdN, rxdN or N.
    #[arg(value_name = "DEVICE", value_parser = parse_device)]
    pub device: u32,
    /// Let go even if the flush fails (the changes not written are lost).
    #[arg(long)]
    pub discard_dirty: bool,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// A backing block device or a copy of one.
    #[arg(value_name = "BACKING")]
    pub backing: String,
    /// Use JSON output format.
    #[arg(short = 'J', long, long_help = INSPECT_JSON)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct DestroyArgs {
    /// Devices to destroy: /dev/rxdN, rxdN or N.
    #[arg(value_name = "DEVICE", required = true, value_parser = parse_device)]
    pub devices: Vec<u32>,
    /// Destroy even while open (its users get I/O errors).
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct ResizeArgs {
    /// /dev/rxdN, rxdN or N.
    #[arg(value_name = "DEVICE", value_parser = parse_device)]
    pub device: u32,
    /// New size, as for `create --size`.
    // Hyphen values reach parse_size, which explains that sizes cannot be negative.
    #[arg(value_name = "SIZE", value_parser = NotAnOption(parse_size), allow_hyphen_values = true)]
    pub size: u64,
    /// Shrink even while open.
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug, Default)]
pub struct ListArgs {
    /// Use JSON output format (sizes always in bytes).
    #[arg(short = 'J', long, conflicts_with = "raw", long_help = crate::list::json_help())]
    pub json: bool,
    /// Print sizes in bytes.
    #[arg(short = 'b', long)]
    pub bytes: bool,
    /// Do not print a header line.
    #[arg(short = 'n', long)]
    pub noheadings: bool,
    /// Columns to print, comma-separated; +LIST appends to the default columns.
    #[arg(short = 'o', long, value_name = "LIST", value_parser = parse_columns)]
    pub output: Option<Columns>,
    /// Print all columns.
    #[arg(long, conflicts_with = "output")]
    pub output_all: bool,
    /// Use raw output format: values separated by one space.
    #[arg(long)]
    pub raw: bool,
    /// Only this device (/dev/rxdN, rxdN or N), as zramctl does.
    #[arg(value_name = "DEVICE", value_parser = parse_device)]
    pub device: Option<u32>,
}

#[derive(Args, Debug)]
pub struct StatsArgs {
    /// /dev/rxdN, rxdN or N.
    #[arg(value_name = "DEVICE", value_parser = parse_device)]
    pub device: u32,
    /// Use JSON output format (always in bytes).
    #[arg(short = 'J', long, long_help = crate::stats::json_help())]
    pub json: bool,
    /// Print byte counters in bytes.
    #[arg(short = 'b', long)]
    pub bytes: bool,
}

// The `-J` documents, a stable interface: keys in lower-case kebab-case (util-linux's),
// numbers as numbers, booleans as booleans, null for what does not apply. Every key a
// command prints is named in its help (a test checks), and so in its man page.

const VERSION_JSON: &str = "Use JSON output format: an object with rxdskctl (version, abi-major, \
    abi-minor) and module (version, abi-major, abi-minor, and features, the GET_FEATURES mask \
    as a number). The keys are a stable interface.";

const EXPORTS_JSON: &str = "Use JSON output format: an object with exports, an array of one \
    object per export with nqn, device, transport (tcp or loop), address (empty for loop), port \
    (a number; null for loop), allow-any-host (a boolean), allowed-hosts (an array of host \
    NQNs), authenticated-hosts (an array of one object per allowed host that authenticates, \
    with its nqn, hash and dhgroup, and bidirectional, a boolean: the controller authenticates \
    to it too; never a secret), serial (the subsystem's serial number), uuid and nguid (the namespace's, \
    8-4-4-4-12 hexadecimal). The keys are a stable interface.";

const FLUSH_JSON: &str = "Use JSON output format: an object with flushed, an array of one \
    object per device flushed with name (the device node), pages and bytes written, the \
    image's new generation, atomic (a boolean: through the journal) and seconds (a number). The \
    keys are a stable interface.";

const INSPECT_JSON: &str = "Use JSON output format: an object with backing (the path), \
    format-version, size and block-size (bytes), generation, state (clean, flushing or \
    journaled), flushing-generation (null when clean), last-flush-ns (nanoseconds since the \
    epoch; null if never flushed), mode (writeback, writethrough or writearound), journal \
    (bytes), \
    journal-pages (the pages an atomic flush may hold), journal-entries (of a committed journal; \
    null otherwise) and flush-interval (seconds; null for none). The keys are a stable \
    interface.";

const APPLY_JSON: &str = "Use JSON output format: an object with dry-run (a boolean) and \
    actions, an array of one object per step with device (the node), action (create, restore, \
    attach, grow, shrink, format, swapon, mount, export, or unchanged), done (a boolean) and the \
    step's \
    own keys: create: size, block-size, compress, compress-level, mem-limit; restore: backing, \
    preload, size, generation; attach: backing, mode, journal, flush-interval; grow and shrink: \
    from, size; format: fs-type; swapon: priority; mount: fs-type, mount-point, options; \
    export: nqn, transport, address and port (null for loop), allowed-hosts, allow-any-host and \
    authenticated (a boolean: the hosts authenticate). A \
    failed step has error, the reason. Sizes are numbers in bytes; what does not apply is \
    null. The keys are a stable interface.";

/// The value parser of an option whose value may start with a hyphen, so that a negative
/// size reaches `parse_size` and is explained (`-1G`: "negative size"): a value that is
/// another option (`create -s -r`) is the error clap gives without `allow_hyphen_values`,
/// a value is required.
#[derive(Clone)]
struct NotAnOption<P>(P);

impl<P: TypedValueParser> TypedValueParser for NotAnOption<P> {
    type Value = P::Value;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<Self::Value, clap::Error> {
        let bytes = value.as_encoded_bytes();
        if bytes.first() == Some(&b'-') && !bytes.get(1).is_some_and(u8::is_ascii_digit) {
            let mut e = clap::Error::new(ErrorKind::InvalidValue).with_cmd(cmd);
            let name = arg.map_or_else(String::new, ToString::to_string);
            e.insert(ContextKind::InvalidArg, ContextValue::String(name));
            // An empty invalid value is clap's "a value is required ... none was supplied".
            e.insert(
                ContextKind::InvalidValue,
                ContextValue::String(String::new()),
            );
            return Err(e);
        }
        self.0.parse_ref(cmd, arg, value)
    }
}

fn parse_block_size(s: &str) -> Result<u32, String> {
    match parse_size(s) {
        Ok(512) => Ok(512),
        Ok(4096) => Ok(4096),
        _ => Err("block size must be 512 or 4096".into()),
    }
}

/// Exit status for a command line clap refused: help and version are not errors, anything
/// else is a usage error, status 1 like every other failure.
pub fn usage_exit_status(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => 0,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::list::Column;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Command, clap::Error> {
        Cli::try_parse_from(std::iter::once("rxdskctl").chain(args.iter().copied()))
            .map(Cli::into_command)
    }

    fn error_text(args: &[&str]) -> String {
        match parse(args) {
            Ok(c) => panic!("{args:?} parsed as {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn create_defaults_and_options() {
        let Ok(Command::Create(a)) = parse(&["create", "-s", "1G"]) else {
            panic!("not create");
        };
        assert_eq!(
            (a.size, a.block_size, a.mem_limit, a.read_only),
            (Some(1 << 30), 4096, None, false)
        );
        let Ok(Command::Create(a)) = parse(&[
            "create",
            "--size=64M",
            "--block-size",
            "512",
            "--mem-limit",
            "16MiB",
            "-r",
        ]) else {
            panic!("not create");
        };
        assert_eq!(
            (a.size, a.block_size, a.mem_limit, a.read_only),
            (Some(64 << 20), 512, Some(16 << 20), true)
        );
    }

    #[test]
    fn create_rejects_bad_values() {
        assert!(error_text(&["create"]).contains("--size <SIZE>"));
        let e = error_text(&["create", "-s", "1.5G"]);
        assert!(
            e.contains("invalid value '1.5G' for '--size <SIZE>': fractional sizes"),
            "{e}"
        );
        let e = error_text(&["create", "-s", "-1"]);
        assert!(e.contains("negative size"), "{e}");
        let e = error_text(&["create", "-s", "1G", "--block-size", "1024"]);
        assert!(e.contains("block size must be 512 or 4096"), "{e}");
        let e = error_text(&["create", "-s", "1G", "--mem-limit", "1Q"]);
        assert!(e.contains("unknown size suffix \"Q\""), "{e}");
        // -b belongs to list.
        assert_eq!(
            parse(&["create", "-s", "1G", "-b", "512"])
                .map_err(|e| e.kind())
                .err(),
            Some(ErrorKind::UnknownArgument)
        );
    }

    /// `create --backing` takes attach's options, for a blank backing device, with attach's
    /// parsing; they need --backing, which excludes --size.
    #[test]
    fn create_backing_takes_the_options_of_attach() {
        let Ok(Command::Create(a)) = parse(&[
            "create",
            "--backing",
            "/dev/sdb1",
            "--mem-limit",
            "4G",
            "--journal",
            "256M",
            "--mode",
            "writethrough",
            "--flush-interval",
            "300",
        ]) else {
            panic!("not create");
        };
        assert_eq!(
            (
                a.backing.as_deref(),
                a.size,
                a.mem_limit,
                a.journal,
                a.mode,
                a.flush_interval
            ),
            (
                Some("/dev/sdb1"),
                None,
                Some(4 << 30),
                Some(256 << 20),
                Some(Mode::Writethrough),
                Some(300)
            )
        );
        let Ok(Command::Create(a)) = parse(&["create", "--backing", "/dev/sdb1"]) else {
            panic!("not create");
        };
        assert_eq!((a.journal, a.mode, a.flush_interval), (None, None, None));
        // Alone they need --backing (with --size, whose conflict with it keeps clap from
        // saying so, `create` does).
        assert_eq!(
            parse(&["create", "--journal", "64M"])
                .map_err(|e| e.kind())
                .err(),
            Some(ErrorKind::MissingRequiredArgument)
        );
        let e = error_text(&["create", "--backing", "/dev/sdb1", "--journal", "1Q"]);
        assert!(e.contains("unknown size suffix \"Q\""), "{e}");
        assert_eq!(
            parse(&["create", "--backing", "/dev/sdb1", "-s", "1G"])
                .map_err(|e| e.kind())
                .err(),
            Some(ErrorKind::ArgumentConflict)
        );
        let mut cmd = Cli::command();
        let help = cmd
            .find_subcommand_mut("create")
            .map(|c| c.render_long_help().to_string())
            .unwrap_or_default();
        assert!(help.contains("or on a blank one"), "{help}");
    }

    fn zstd_level(level: &str) -> [&str; 7] {
        [
            "create",
            "-s",
            "1G",
            "--compress",
            "zstd",
            "--compress-level",
            level,
        ]
    }

    /// An option that needs a value, followed by another option, says so (clap's own
    /// message), rather than taking the option as its value; a negative number is still
    /// explained.
    #[test]
    fn an_option_without_its_value() {
        for (args, arg) in [
            (&["create", "-s", "-r"][..], "--size <SIZE>"),
            (
                &["create", "-r", "--size", "--read-only"][..],
                "--size <SIZE>",
            ),
            (
                &["create", "-s", "1G", "--mem-limit", "-r"][..],
                "--mem-limit <SIZE>",
            ),
            (&zstd_level("-r")[..], "--compress-level <N>"),
            (&["resize", "rxd0", "-x"][..], "<SIZE>"),
        ] {
            let e = error_text(args);
            assert!(
                e.starts_with(&format!(
                    "error: a value is required for '{arg}' but none was supplied"
                )),
                "{args:?}: {e}"
            );
        }
        for (args, arg, value) in [
            (&["create", "-s", "-1"][..], "--size <SIZE>", "-1"),
            (&["create", "-s", "-1G"][..], "--size <SIZE>", "-1G"),
            (
                &["create", "-s", "1G", "--mem-limit", "-4k"][..],
                "--mem-limit <SIZE>",
                "-4k",
            ),
        ] {
            let e = error_text(args);
            assert!(
                e.contains(&format!(
                    "invalid value '{value}' for '{arg}': negative size"
                )),
                "{args:?}: {e}"
            );
        }
        let mut args = zstd_level("-5").to_vec();
        args.push("-r");
        let Ok(Command::Create(a)) = parse(&args) else {
            panic!("not create");
        };
        assert_eq!((a.compress_level, a.read_only), (Some(-5), true));
    }

    #[test]
    fn destroy_takes_several_devices() {
        let Ok(Command::Destroy(a)) = parse(&["destroy", "/dev/rxd1", "rxd2", "3", "--force"])
        else {
            panic!("not destroy");
        };
        assert_eq!((a.devices, a.force), (vec![1, 2, 3], true));
        assert_eq!(
            parse(&["destroy"]).map_err(|e| e.kind()).err(),
            Some(ErrorKind::MissingRequiredArgument)
        );
        let e = error_text(&["destroy", "0", "sda"]);
        assert!(
            e.contains("invalid value 'sda' for '<DEVICE>...': not an rxdsk device: \"sda\""),
            "{e}"
        );
    }

    #[test]
    fn resize_device_and_size() {
        let Ok(Command::Resize(a)) = parse(&["resize", "rxd4", "2G"]) else {
            panic!("not resize");
        };
        assert_eq!((a.device, a.size, a.force), (4, 2 << 30, false));
        let e = error_text(&["resize", "rxd4", "-2G"]);
        assert!(
            e.contains("invalid value '-2G' for '<SIZE>': negative size"),
            "{e}"
        );
    }

    #[test]
    fn list_options() {
        let Ok(Command::List(a)) = parse(&["list", "-J", "-b", "-n", "-o", "name,open"]) else {
            panic!("not list");
        };
        assert!(a.json && a.bytes && a.noheadings && !a.raw && !a.output_all);
        assert_eq!(a.output, Some(Columns(vec![Column::Name, Column::Open])));
        let e = error_text(&["list", "-o", "NAME,BOGUS"]);
        assert!(e.contains("unknown column: BOGUS"), "{e}");
        assert_eq!(
            parse(&["list", "-o", "NAME", "--output-all"])
                .map_err(|e| e.kind())
                .err(),
            Some(ErrorKind::ArgumentConflict)
        );
        assert_eq!(
            parse(&["list", "--json", "--raw"])
                .map_err(|e| e.kind())
                .err(),
            Some(ErrorKind::ArgumentConflict)
        );
    }

    #[test]
    fn stats_and_version() {
        let Ok(Command::Stats(a)) = parse(&["stats", "0", "-J", "-b"]) else {
            panic!("not stats");
        };
        assert_eq!((a.device, a.json, a.bytes), (0, true, true));
        assert!(matches!(
            parse(&["version", "--json"]),
            Ok(Command::Version { json: true })
        ));
    }

    #[test]
    fn usage_errors_exit_1_help_and_version_0() {
        let kind = |args: &[&str]| parse(args).map_err(|e| e.kind()).err();
        let status = |args: &[&str]| kind(args).map(usage_exit_status);
        assert_eq!(status(&["--help"]), Some(0));
        assert_eq!(status(&["list", "--help"]), Some(0));
        assert_eq!(status(&["--version"]), Some(0));
        // No command is `list`, not a usage error.
        assert_eq!(status(&[]), None);
        assert_eq!(status(&["frobnicate"]), Some(1));
        assert_eq!(status(&["list", "--bogus"]), Some(1));
    }

    #[test]
    fn list_help_names_the_columns() {
        let mut cmd = Cli::command();
        let help = cmd
            .find_subcommand_mut("list")
            .map(|c| c.render_long_help().to_string())
            .unwrap_or_default();
        assert!(help.contains("Available output columns:"), "{help}");
        assert!(help.contains("MEM-LIMIT"), "{help}");
    }

    /// Each mode: its name (clap's value too), its ATTACH flag, and back from INFO's flags
    /// (writearound has writethrough's flag too) and from an image's mode.
    #[test]
    fn modes() {
        use clap::ValueEnum;
        use rxdsk_ioctl::*;
        let want = [
            (Mode::Writeback, 0, RXDSK_FLAG_BACKED, RXDSK_IMAGE_WRITEBACK),
            (
                Mode::Writethrough,
                RXDSK_ATTACH_WRITETHROUGH,
                RXDSK_FLAG_BACKED | RXDSK_FLAG_WRITETHROUGH,
                RXDSK_IMAGE_WRITETHROUGH,
            ),
            (
                Mode::Writearound,
                RXDSK_ATTACH_WRITEAROUND,
                RXDSK_FLAG_BACKED | RXDSK_FLAG_WRITETHROUGH | RXDSK_FLAG_WRITEAROUND,
                RXDSK_IMAGE_WRITEAROUND,
            ),
        ];
        assert_eq!(Mode::ALL.len(), Mode::value_variants().len());
        for (mode, attach, flags, image) in want {
            let name = mode.name();
            assert_eq!(
                mode.to_possible_value().map(|v| v.get_name().to_string()),
                Some(name.to_string())
            );
            assert_eq!(mode.attach_flags(), attach, "{name}");
            assert_eq!(attach & !RXDSK_ATTACH_FLAGS, 0, "{name}");
            assert_eq!(Mode::of_flags(flags), mode, "{name}");
            assert_eq!(Mode::of_image(image), mode, "{name}");
            match parse(&["attach", "--mode", name, "rxd0", "/dev/sdb1"]) {
                Ok(Command::Attach(a)) => assert_eq!(a.mode, mode),
                other => panic!("{name}: {other:?}"),
            }
        }
        assert_eq!(Mode::names(), "writeback, writethrough or writearound");
        match parse(&["attach", "rxd0", "/dev/sdb1"]) {
            Ok(Command::Attach(a)) => assert_eq!(a.mode, Mode::Writeback),
            other => panic!("{other:?}"),
        }
        let e = error_text(&["attach", "--mode", "writeonce", "rxd0", "/dev/sdb1"]);
        assert!(
            e.contains("[possible values: writeback, writethrough, writearound]"),
            "{e}"
        );
        let mut cmd = Cli::command();
        let help = cmd
            .find_subcommand_mut("attach")
            .map(|c| c.render_long_help().to_string())
            .unwrap_or_default();
        assert!(help.contains("writearound: as writethrough"), "{help}");
    }
}
