//! The hostile-peer fuzz harness: one byte string is one script of what a
//! hostile peer hands over, what it writes into the header before the honest
//! end opens the ring, and what it does between (and inside) the honest
//! end's calls.
//!
//! Included with `#[path]` by the cargo-fuzz target
//! `fuzz/fuzz_targets/hostile_peer.rs` and by the stable test
//! `tests/hostile_fuzz.rs`. [`run`] panics exactly when fdring breaks its
//! promise (docs/design.md, "Trust"): a panic inside fdring, an answer that
//! is neither a value nor the typed error the state of the shared memory
//! calls for, a lent slice longer than the ring or not backed by an index
//! the peer really stored, items that are not the bytes in the slots, a
//! corruption that is not sticky, a valid ring refused or an invalid one
//! accepted, or a call that outlasts its timeout by seconds, a `_timeout`
//! call that answers `Timeout` though its peer hung up (it must see the
//! hang-up and answer `Disconnected`), a wake-up that never reached an
//! armed peer, or a change to the wake-up socket's file status flags. A
//! fault (SIGSEGV, SIGBUS) fails the run too. Only `try_` calls and
//! `_timeout` calls are made, with timeouts of at most 1 ms in all per run
//! (or [`GONE_WAIT`] once the peer is gone, which a correct crate cuts
//! short), so a correct crate cannot hang here.
//!
//! Everything is single-threaded and deterministic: the peer acts between
//! the honest end's calls, or inside its closures. Every fd and mapping the
//! harness makes is owned and dropped at the end of the run.
//!
//! The peer holds the other end of the honest end's wake-up socket pair
//! (one or two copies of it: the peer is gone once every copy is closed)
//! and, as the hostile creator of the ring could, a dup of the honest end's
//! own socket, sharing its open file description. With it the peer floods
//! the honest end, fills the honest end's send buffer so that its wake-ups
//! find no room, clears `O_NONBLOCK`, steals wake-ups, and shuts either
//! side down. The harness keeps no other copy of the peer's end.
//!
//! # The script
//!
//! Bytes are read in this order; a script that runs out reads zeros, so
//! the empty script opens a valid `u64` ring as its sender and stops.
//!
//! 1. What is handed over as the memfd (`byte % 16`): 0-3 a ring made by
//!    the crate, 4-6 one made by hand, 7 an unsealed memfd, 8 a memfd with
//!    the seals of the next byte, 9 a memfd too small (next byte), 10 one of
//!    a size that is not page-aligned (next 2 bytes), 11 a regular file,
//!    12 the crate's memfd reopened through `/proc` (mode: next byte),
//!    13 a pipe, 14 an eventfd, 15 a socket.
//! 2. The role: bit 0 receiver (else sender), bits 1-2 the item type
//!    (`u64`, `[u8; 12]`, `u8`), bits 3-5 a different item type for the
//!    ring itself.
//! 3. The geometry: bits 0-1 the capacity, bit 2 a two-page data offset.
//! 4. The type tag: bits 0-1 the header's tag (0, `0x5eed`, `u64::MAX`, or
//!    the next 8 bytes), bits 2-3 the tag the opener expects (none, none,
//!    the header's, another).
//! 5. The fd handed as the end's wake-up socket (`byte % 16`: 0-5 the
//!    ring's own socket for this end (the crate's, or for a hand-made ring
//!    one of a pair whose inodes its header records), 6 the ring's socket
//!    for the other end, 7 one end of a fresh connected pair (another
//!    ring's), 8 the ring's own socket whose other end is already closed,
//!    9 a datagram socket pair's end,
//!    10 a seqpacket one's, 11 an unconnected Unix stream socket, 12 an
//!    `AF_INET` socket, 13 an eventfd, 14 a pipe, 15 the memfd itself; see
//!    [`WakeKind`]).
//! 6. How the peer holds the pair: bit 0 it keeps two copies of its end
//!    (else one), bit 1 the honest end's socket is handed over with
//!    `O_NONBLOCK` set (else blocking, as the crate makes it).
//! 7. Liveness (`byte % 8`: 5 a socket, 6 a socket already hung up, 7 a
//!    pidfd of this process, else none; watched with `watch_peer` once the
//!    end is open), in bits 3-4 the spin, and bits 5-7 all set: the fds
//!    come through `handoff::recv_fds`, in a message shaped by the next
//!    byte (see `Setup::send_handoff`), and the hand-off socket is the
//!    liveness.
//! 8. Header writes before opening: bit 7 fills the configuration fields
//!    with the next 48 bytes, bits 0-2 count the writes that follow (a
//!    target, then a value).
//! 9. Operations until the script ends (at most [`MAX_OPS`]):
//!    `byte % 24` below 12 is a call of the honest end, else an action of
//!    the peer (action 8 is one on the wake-up sockets, see
//!    [`World::wake_action`]).
//!
//! [`WakeKind`]: setup::WakeKind
//! [`World::wake_action`]: world::World::wake_action

use std::sync::OnceLock;
use std::time::Duration;

use fdring::Builder;

use script::{ItemKind, Script};
use session::session;
use setup::Setup;

// One level up: `tests/hostile_peer.rs` and `tests/event_loops/main.rs` include
// it too.
#[path = "../raw.rs"]
mod raw;

pub use raw::*;

/// Calls and peer actions per run, at most.
pub const MAX_OPS: usize = 160;

/// The sum of the timeouts of one run, at most: a timeout that would go
/// past it is 0 instead, so that a run stays fast whatever the script.
const WAIT_BUDGET: Duration = Duration::from_millis(1);

/// How much longer than its timeout a call may take before it counts as
/// hung. Generous: a loaded CI machine must not make this flaky (a 2-vCPU
/// VM once stalled a call that makes no system call for 3.9 s). A hang
/// never ends, so this costs no finding; it stays below libFuzzer's
/// `-timeout=10` of `fuzz/smoke.sh`.
const SLACK: Duration = Duration::from_secs(5);

/// The timeout of a `_timeout` call once the peer is gone (its socket end
/// hung up, or its liveness fired): the end must see that and answer
/// `Disconnected` (or what the ring holds) long before, so in a correct
/// run this costs no more than draining what the peer left in the socket.
/// As long as [`SLACK`], so that a stalled machine cannot make the call
/// reach its deadline before it first looks at the socket.
pub const GONE_WAIT: Duration = SLACK;

/// Sends or receives of one flood, fill or theft, at most.
const MAX_ROUNDS: usize = 1 << 14;

/// Switches for peer behaviours that once made fdring break its promise
/// (each has a regression test in `tests/hostile_fuzz.rs`): on, the peer
/// may do it and the harness checks the fixed behaviour; off
/// ([`Options::default`]), the harness tolerates the old one, to fuzz an
/// older fdring. [`run`] turns them all on unless `FDRING_HOSTILE_KNOWN`
/// names the ones to keep (or `none`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Lets the peer clear `O_NONBLOCK` on the wake-up socket it shares
    /// with the honest end (it holds a dup of the same open file
    /// description); off, the peer sets it instead. fdring before 1aeb351
    /// then blocked in `read`/`write` on its eventfds: a hang. Its sockets
    /// take `MSG_DONTWAIT` on every call, so the flags must not matter.
    pub clear_nonblock: bool,
    /// Requires `prepare_wait` on an end that already reported (or found at
    /// open) a corruption to leave it alone and answer `Ok(false)`. fdring
    /// before 1aeb351 re-read the peer's index there: it could answer
    /// `Ok(true)` ("wait"), and it replaced the recorded corruption.
    pub prepare_wait_sticky: bool,
    /// Requires a sender that reported a corruption to keep reporting it
    /// once it learns that its peer's process is gone, as a receiver does.
    /// fdring's sender before 1aeb351 answered `Disconnected` then.
    pub corrupted_before_gone: bool,
}

impl Options {
    /// The options named in `FDRING_HOSTILE_KNOWN` (comma-separated
    /// field names, `all` or `none`; `all` if unset), read once.
    pub fn from_env() -> Options {
        static OPTIONS: OnceLock<Options> = OnceLock::new();
        *OPTIONS.get_or_init(|| {
            // All on by default since fdring was fixed; `none` turns them off.
            let value = std::env::var("FDRING_HOSTILE_KNOWN").unwrap_or_else(|_| "all".into());
            let on = |name: &str| value.split(',').any(|v| v == name || v == "all");
            Options {
                clear_nonblock: on("clear_nonblock"),
                prepare_wait_sticky: on("prepare_wait_sticky"),
                corrupted_before_gone: on("corrupted_before_gone"),
            }
        })
    }
}

/// Whether to print every call and peer action (`FDRING_HOSTILE_TRACE=1`),
/// to read what a failing script does.
fn tracing() -> bool {
    static TRACE: OnceLock<bool> = OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("FDRING_HOSTILE_TRACE").is_some_and(|v| v == "1"))
}

macro_rules! trace {
    ($($arg:tt)*) => {
        if tracing() {
            eprintln!($($arg)*);
        }
    };
}

// Declared after `trace!`: a `macro_rules!` macro is in scope only in the
// text that follows it, and these modules use it.
mod model;
mod script;
mod session;
mod setup;
mod world;

/// Runs one script with the options of [`Options::from_env`].
pub fn run(data: &[u8]) {
    run_with(data, Options::from_env());
}

/// Runs one script.
pub fn run_with(data: &[u8], options: Options) {
    let mut s = Script::new(data);
    let setup = Setup::parse(&mut s);
    trace!("{setup:?}");
    let expect = setup.expect();
    let built = setup.build();
    let mut builder = Builder::new().spin(setup.spin);
    if let Some(tag) = setup.expect_tag {
        builder = builder.type_tag(tag);
    }
    let receiver = setup.receiver;
    match setup.item {
        ItemKind::U64 => session::<u64>(&mut s, &builder, built, &expect, receiver, options),
        ItemKind::Bytes12 => {
            session::<[u8; 12]>(&mut s, &builder, built, &expect, receiver, options)
        }
        ItemKind::U8 => session::<u8>(&mut s, &builder, built, &expect, receiver, options),
    }
}
