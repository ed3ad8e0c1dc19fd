//! A hostile peer against an honest fdring end: each input is a script of
//! the fds handed over (the memfd and the wake-up socket), the header
//! written before opening, and the calls and peer actions (on the shared
//! memory and on the wake-up sockets) that follow. The harness is
//! `tests/support/hostile/`,
//! shared with the stable test `tests/hostile_fuzz.rs`; it panics when
//! fdring breaks its promise (docs/design.md, "Trust").
//!
//! `FDRING_HOSTILE_KNOWN=none` turns off the checks of what older fdring
//! versions got wrong (see `hostile::Options`); `FDRING_HOSTILE_TRACE=1`
//! prints what a script does.
#![no_main]

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/support/hostile/mod.rs"]
mod hostile;

/// Runs between two looks at this process's fd count.
const LEAK_CHECK_EVERY: u64 = 1 << 16;

fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |dir| dir.count())
}

/// Fails the run that finds the fd count grown well past what it was after
/// the first few thousand runs: the harness owns every fd it makes, so a
/// growth means fdring leaked one (on some earlier input).
fn check_fd_leak() {
    static RUNS: AtomicU64 = AtomicU64::new(0);
    static BASELINE: AtomicUsize = AtomicUsize::new(0);
    let runs = RUNS.fetch_add(1, Ordering::Relaxed) + 1;
    if runs == 4096 {
        BASELINE.store(fd_count(), Ordering::Relaxed);
    } else if runs.is_multiple_of(LEAK_CHECK_EVERY) {
        let (baseline, now) = (BASELINE.load(Ordering::Relaxed), fd_count());
        assert!(
            now <= baseline + 16,
            "fd leak: {now} fds open after {runs} runs, {baseline} after 4096"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    hostile::run(data);
    check_fd_leak();
});
