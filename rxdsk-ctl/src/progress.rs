//! The progress of an ioctl that blocks (a flush, a preload) on stderr: a thread polls the
//! kernel's counters through a control handle of its own, and an indicatif bar shows them (it
//! knows the terminal's width, clears its line, and draws nothing where stderr is no
//! terminal).

use crate::backend::Backend;
use crate::control::Control;
use crate::device::device_path;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rxdsk_ioctl::{RxdskInfo, RxdskStats, RXDSK_PAGE_SIZE};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How far the ioctl is on one device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reading {
    pub id: u32,
    pub done: u64,
    pub total: u64,
}

const TEMPLATE: &str =
    "{prefix}: {msg} {wide_bar} {binary_bytes}/{binary_total_bytes} ({binary_bytes_per_sec})";

/// Nothing is shown for an ioctl that ends before this.
const QUIET: Duration = Duration::from_millis(500);
const POLL: Duration = Duration::from_millis(200);

/// A bar shown while it lives.
pub struct Progress {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Progress {
    /// Shows `what` (`flushing`) with what `read` says, polled every 200 ms from 500 ms on.
    /// `None` if the control node cannot be opened a second time (then nothing is shown).
    pub fn start(
        what: &'static str,
        mut read: impl FnMut(&Control) -> Option<Reading> + Send + 'static,
    ) -> Option<Self> {
        let control = Control::open().ok()?;
        let stop = Arc::new(AtomicBool::new(false));
        let done = stop.clone();
        let thread = std::thread::spawn(move || {
            let start = Instant::now();
            let mut bar: Option<ProgressBar> = None;
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(POLL);
                if start.elapsed() < QUIET {
                    continue;
                }
                if let Some(r) = read(&control) {
                    let bar = bar.get_or_insert_with(|| new_bar(what, &r));
                    bar.set_length(r.total);
                    bar.set_position(r.done);
                }
            }
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
        });
        Some(Self {
            stop,
            thread: Some(thread),
        })
    }

    /// A flush of device `id`: bytes written to the backing device of what was dirty.
    pub fn flush(id: u32) -> Option<Self> {
        let mut first: Option<(u64, u64)> = None;
        Self::start("flushing", move |control| {
            if first.is_none() {
                let (info, stats) = (control.info(id).ok()?, control.stats(id).ok()?);
                first = Some((flush_total(&info, &stats), stats.written_back_bytes));
            }
            let (total, written) = first?;
            let now = control.stats(id).ok()?;
            Some(Reading {
                id,
                done: now.written_back_bytes.saturating_sub(written),
                total,
            })
        })
    }

    /// A preload from the backing device `major:minor`: the new device, found by its backing
    /// device, and what of it is read in.
    pub fn preload(major: u32, minor: u32) -> Option<Self> {
        Self::start("loading", move |control| {
            let infos = control.list().ok()?.into_iter();
            preload_reading(infos.filter_map(|id| control.info(id).ok()), major, minor)
        })
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn new_bar(what: &'static str, r: &Reading) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(r.total), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(TEMPLATE) {
        bar.set_style(style);
    }
    bar.set_prefix(device_path(r.id));
    bar.set_message(what);
    bar.set_position(r.done);
    bar
}

/// What a flush will write: the dirty data, twice when journaled (into the journal, then in
/// place); the first flush after attach, which writes the whole image, never is.
fn flush_total(info: &RxdskInfo, first: &RxdskStats) -> u64 {
    let dirty = info.dirty_pages * RXDSK_PAGE_SIZE;
    if info.journal_bytes > dirty && first.flush_generation > 0 {
        2 * dirty
    } else {
        dirty
    }
}

/// The device backed by `major:minor` that still has pages to read in, as a reading.
fn preload_reading(
    mut infos: impl Iterator<Item = RxdskInfo>,
    major: u32,
    minor: u32,
) -> Option<Reading> {
    let i = infos
        .find(|i| (i.backing_major, i.backing_minor) == (major, minor) && i.unloaded_pages > 0)?;
    Some(Reading {
        id: i.id,
        done: i
            .size_bytes
            .saturating_sub(i.unloaded_pages * RXDSK_PAGE_SIZE),
        total: i.size_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_is_valid() {
        assert!(ProgressStyle::with_template(TEMPLATE).is_ok());
    }

    #[test]
    fn a_journaled_flush_writes_twice() {
        let info = RxdskInfo {
            dirty_pages: 256,
            journal_bytes: 4 << 20,
            ..Default::default()
        };
        let mut stats = RxdskStats {
            flush_generation: 3,
            ..Default::default()
        };
        assert_eq!(flush_total(&info, &stats), 2 << 20);
        // The first flush writes the whole image in place.
        stats.flush_generation = 0;
        assert_eq!(flush_total(&info, &stats), 1 << 20);
        // Changes larger than the journal are written in place.
        let big = RxdskInfo {
            dirty_pages: 2048,
            ..info
        };
        assert_eq!(flush_total(&big, &RxdskStats::default()), 8 << 20);
    }

    #[test]
    fn the_preloading_device_is_found_by_its_backing_device() {
        let info = |id, minor, unloaded_pages| RxdskInfo {
            id,
            size_bytes: 1 << 20,
            backing_major: 8,
            backing_minor: minor,
            unloaded_pages,
            ..Default::default()
        };
        let infos = [info(0, 16, 10), info(1, 32, 0), info(2, 32, 64)];
        assert_eq!(
            preload_reading(infos.into_iter(), 8, 32),
            Some(Reading {
                id: 2,
                done: (1 << 20) - (64 << 12),
                total: 1 << 20
            })
        );
        assert_eq!(preload_reading(infos.into_iter(), 8, 48), None);
    }
}
