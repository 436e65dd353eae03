//! The rxdsk guest suite. Runs as the guest's workload (started by /init) and prints KTAP on
//! the serial console, which `cargo xtask test-vm` reads.
//!
//! Also, for use in a guest shell (`cargo xtask vm`, `vm --run`):
//! - `rxdsk-guest-tests only TEST...`: a subset of the suite, in suite order (with the module
//!   already loaded, as `vm` does, module_load is not needed);
//! - `rxdsk-guest-tests check-device DEV CHECK...`: the generic data-path checks on another
//!   driver's device, e.g. `modprobe brd rd_nr=1 rd_size=1048576` and
//!   `check-device /dev/ram0 discard fio512 fio4096 ext2-4096 ext2-1024 swap`;
//! - `rxdsk-guest-tests hog MIB SEED`: the swap test's memory hog;
//! - `rxdsk-guest-tests pair-target` / `pair-host ADDR`: the two roles of the two-guest
//!   NVMe/TCP test (`cargo xtask test-nvme-tcp`).

mod apply;
mod backing;
mod blk;
mod cache;
mod cli;
mod compress;
mod control;
mod datapath;
mod devices;
mod durability;
mod export;
mod faults;
// The crash-consistency tools (fsload, logwrites, stamp): the power-cut tests that use them
// come with their wiring.
#[allow(dead_code)]
mod fsload;
mod hardening;
mod harness;
#[allow(dead_code)]
mod logwrites;
mod pair;
mod queries;
mod reliability;
mod rxdsk;
#[allow(dead_code)]
mod stamp;

use harness::Test;

const TESTS: &[Test] = &[
    Test {
        name: "module_load",
        run: control::module_load,
    },
    Test {
        name: "version_roundtrip",
        run: control::version_roundtrip,
    },
    Test {
        name: "version_no_uninitialised_bytes",
        run: control::version_no_uninitialised_bytes,
    },
    Test {
        name: "unknown_ioctl_enotty",
        run: control::unknown_ioctl_enotty,
    },
    Test {
        name: "unprivileged_eperm",
        run: control::unprivileged_eperm,
    },
    Test {
        name: "kernel_config_round2",
        run: hardening::kernel_config_round2,
    },
    Test {
        name: "kernel_config_round3",
        run: hardening::kernel_config_round3,
    },
    Test {
        name: "create_with_id",
        run: hardening::create_with_id,
    },
    Test {
        name: "flush_accounting",
        run: hardening::flush_accounting,
    },
    Test {
        name: "backing_flush_restore",
        run: backing::backing_flush_restore,
    },
    Test {
        name: "backing_failure_and_torn_image",
        run: backing::backing_failure_and_torn_image,
    },
    Test {
        name: "backing_journal_atomic",
        run: backing::backing_journal_atomic,
    },
    Test {
        name: "backing_lazy_restore",
        run: backing::backing_lazy_restore,
    },
    Test {
        name: "backing_lazy_detach",
        run: backing::backing_lazy_detach,
    },
    Test {
        name: "backing_writeback_fio",
        run: backing::backing_writeback_fio,
    },
    Test {
        name: "cache_bigger_than_ram_plain",
        run: cache::cache_bigger_than_ram_plain,
    },
    Test {
        name: "cache_one_gib_plain",
        run: cache::cache_one_gib_plain,
    },
    Test {
        name: "cache_bigger_than_ram_lz4",
        run: cache::cache_bigger_than_ram_lz4,
    },
    Test {
        name: "cache_gives_memory_back",
        run: cache::cache_gives_memory_back,
    },
    Test {
        name: "cache_writearound",
        run: cache::cache_writearound,
    },
    Test {
        name: "cache_swap_lz4",
        run: cache::cache_swap_lz4,
    },
    Test {
        name: "cache_writes_back_ahead",
        run: cache::cache_writes_back_ahead,
    },
    Test {
        name: "cache_reads_once_bypass",
        run: cache::cache_reads_once_bypass,
    },
    Test {
        name: "cache_hot_set_survives_scan",
        run: cache::cache_hot_set_survives_scan,
    },
    Test {
        name: "backing_writethrough",
        run: backing::backing_writethrough,
    },
    Test {
        name: "backing_flush_interval",
        run: backing::backing_flush_interval,
    },
    Test {
        name: "flush_point_in_time_plain",
        run: durability::flush_point_in_time_plain,
    },
    Test {
        name: "flush_point_in_time_compressed",
        run: durability::flush_point_in_time_compressed,
    },
    Test {
        name: "crash_states_replayed",
        run: durability::crash_states_replayed,
    },
    Test {
        name: "erase_races_flush",
        run: durability::erase_races_flush,
    },
    Test {
        name: "resize_races_attach",
        run: durability::resize_races_attach,
    },
    Test {
        name: "reads_race_detach",
        run: durability::reads_race_detach,
    },
    Test {
        name: "writethrough_attach_under_writes",
        run: durability::writethrough_attach_under_writes,
    },
    Test {
        name: "backing_cycles_refused",
        run: durability::backing_cycles_refused,
    },
    Test {
        name: "discard_unloaded_reads_nothing",
        run: durability::discard_unloaded_reads_nothing,
    },
    Test {
        name: "flush_interval_bounded",
        run: durability::flush_interval_bounded,
    },
    Test {
        name: "shrink_waits_for_deferred_writes",
        run: durability::shrink_waits_for_deferred_writes,
    },
    Test {
        name: "control_never_waits_for_io",
        run: durability::control_never_waits_for_io,
    },
    Test {
        name: "create_destroy_cycles",
        run: devices::create_destroy_cycles,
    },
    Test {
        name: "destroy_busy",
        run: devices::destroy_busy,
    },
    Test {
        name: "bad_input_rejected",
        run: devices::bad_input_rejected,
    },
    Test {
        name: "device_commands_unprivileged",
        run: devices::device_commands_unprivileged,
    },
    Test {
        name: "queries_unprivileged",
        run: queries::queries_unprivileged,
    },
    Test {
        name: "read_only_device",
        run: devices::read_only_device,
    },
    Test {
        name: "zero_page_write",
        run: devices::zero_page_write,
    },
    Test {
        name: "mem_limit_enospc",
        run: devices::mem_limit_enospc,
    },
    Test {
        name: "discard_512",
        run: devices::discard_512,
    },
    Test {
        name: "discard_4096",
        run: devices::discard_4096,
    },
    Test {
        name: "write_zeroes_512",
        run: devices::write_zeroes_512,
    },
    Test {
        name: "write_zeroes_4096",
        run: devices::write_zeroes_4096,
    },
    Test {
        name: "resize_online",
        run: devices::resize_online,
    },
    Test {
        name: "fio_verify_512",
        run: devices::fio_verify_512,
    },
    Test {
        name: "fio_verify_4096",
        run: devices::fio_verify_4096,
    },
    Test {
        name: "ext2_roundtrip_4096",
        run: devices::ext2_roundtrip_4096,
    },
    Test {
        name: "ext2_roundtrip_512",
        run: devices::ext2_roundtrip_512,
    },
    Test {
        name: "swap_stress",
        run: devices::swap_stress,
    },
    Test {
        name: "swap_global_pressure",
        run: hardening::swap_global_pressure,
    },
    Test {
        name: "compress_fio_verify",
        run: compress::compress_fio_verify,
    },
    Test {
        name: "compress_vs_zram_ratio",
        run: compress::compress_vs_zram_ratio,
    },
    Test {
        name: "compress_limit_discard_resize",
        run: compress::compress_limit_discard_resize,
    },
    Test {
        name: "compress_corrupt_eio",
        run: compress::compress_corrupt_eio,
    },
    Test {
        name: "compress_fault_injection_slab",
        run: compress::compress_fault_injection_slab,
    },
    Test {
        name: "compress_cpu_hotplug",
        run: compress::compress_cpu_hotplug,
    },
    Test {
        name: "compress_big_bios_in_parts",
        run: compress::compress_big_bios_in_parts,
    },
    Test {
        name: "compress_backing_roundtrip",
        run: compress::compress_backing_roundtrip,
    },
    Test {
        name: "compress_swap_lz4",
        run: compress::compress_swap_lz4,
    },
    Test {
        name: "export_nvme_loop",
        run: export::export_nvme_loop,
    },
    Test {
        name: "cli_end_to_end",
        run: cli::cli_end_to_end,
    },
    Test {
        name: "apply_config",
        run: apply::apply_config,
    },
    Test {
        name: "ioctl_fuzz",
        run: reliability::ioctl_fuzz,
    },
    Test {
        name: "fault_injection_page_alloc",
        run: reliability::fault_injection_page_alloc,
    },
    Test {
        name: "races_destroy_resize_io",
        run: reliability::races_destroy_resize_io,
    },
    Test {
        name: "open_races_claim",
        run: hardening::open_races_claim,
    },
    Test {
        name: "races_shrink_cuts_live_io",
        run: hardening::races_shrink_cuts_live_io,
    },
    Test {
        name: "mem_limit_racing_writers",
        run: hardening::mem_limit_racing_writers,
    },
    Test {
        name: "shrink_drops_stale_page_cache",
        run: hardening::shrink_drops_stale_page_cache,
    },
    Test {
        name: "nowait_write_eagain",
        run: hardening::nowait_write_eagain,
    },
    Test {
        name: "fault_injection_slab",
        run: hardening::fault_injection_slab,
    },
    Test {
        name: "large_free_no_stall",
        run: hardening::large_free_no_stall,
    },
    Test {
        name: "security_no_uninitialised_bytes",
        run: reliability::security_no_uninitialised_bytes,
    },
    Test {
        name: "unload_refused_while_open",
        run: reliability::unload_refused_while_open,
    },
    Test {
        name: "kmemleak_clean",
        run: reliability::kmemleak_clean,
    },
    Test {
        name: "unload_refused_while_backed",
        run: durability::unload_refused_while_backed,
    },
    Test {
        name: "unload_destroys_devices",
        run: devices::unload_destroys_devices,
    },
    Test {
        name: "module_unload",
        run: control::module_unload,
    },
    Test {
        name: "rxdskctl_without_module",
        run: control::rxdskctl_without_module,
    },
];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match args.first().map(String::as_str) {
        // The swap test's memory hog, started by the suite inside a memory cgroup.
        Some("hog") => datapath::hog_main(&args[1..]),
        Some("pair-target") => pair::target_main(&args[1..]),
        Some("pair-host") => pair::host_main(&args[1..]),
        // The power cuts under live use (cargo xtask test's power cuts).
        Some("powercut") => durability::powercut_main(&args[1..]),
        // Pseudo-random data from a seed (scripts: no wait for the kernel's entropy at boot).
        Some("fill") => datapath::fill_main(&args[1..]),
        // The generic data-path checks on another driver's device (brd, say).
        Some("check-device") => datapath::check_device_main(&args[1..]),
        // A subset of the suite, in suite order (include module_load first).
        Some("only") => {
            let unknown: Vec<&String> = args[1..]
                .iter()
                .filter(|a| !TESTS.iter().any(|t| t.name == a.as_str()))
                .collect();
            if unknown.is_empty() {
                let subset: Vec<Test> = TESTS
                    .iter()
                    .filter(|t| args[1..].iter().any(|a| a == t.name))
                    .map(|t| Test {
                        name: t.name,
                        run: t.run,
                    })
                    .collect();
                i32::from(!harness::run_all(&subset))
            } else {
                eprintln!("unknown tests: {unknown:?}");
                3
            }
        }
        Some(other) => {
            eprintln!(
                "usage: rxdsk-guest-tests [only TEST... | hog MIB SEED | fill DEV MIB SEED | check-device DEV CHECK... | pair-target | pair-host ADDR] ({other}?)"
            );
            3
        }
        // The suite; `cargo xtask test-vm --only/--skip` leave name lists in /etc.
        None => {
            let names = |path: &str| -> Option<Vec<String>> {
                let text = std::fs::read_to_string(path).ok()?;
                Some(text.split_whitespace().map(str::to_string).collect())
            };
            let only = names("/etc/rxdsk-tests-only");
            let skip = names("/etc/rxdsk-tests-skip").unwrap_or_default();
            let subset: Vec<Test> = TESTS
                .iter()
                // The others need the module: module_load always runs unless skipped.
                .filter(|t| {
                    t.name == "module_load"
                        || only.as_ref().is_none_or(|o| o.iter().any(|n| n == t.name))
                })
                .filter(|t| !skip.iter().any(|n| n == t.name))
                .map(|t| Test {
                    name: t.name,
                    run: t.run,
                })
                .collect();
            i32::from(!harness::run_all(&subset))
        }
    };
    std::process::exit(code);
}
