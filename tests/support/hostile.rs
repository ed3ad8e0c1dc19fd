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
//! 5. The fd handed as the end's wake-up socket (`byte % 16`: 0-6 the
//!    crate's own socket end, 7 one end of a fresh connected pair, 8 one
//!    whose other end is already closed, 9 a datagram socket pair's end,
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

use std::collections::BTreeSet;
use std::mem::{size_of, MaybeUninit};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytemuck::Pod;
use fdring::{Builder, Corruption, Error, Fds, Liveness, Receiver, Rejection, Sender};
use rustix::event::{EventfdFlags, PollFd, PollFlags};
use rustix::fs::{MemfdFlags, Mode, OFlags, SealFlags};
use rustix::io::Errno;
use rustix::net::{AddressFamily, RecvFlags, SendFlags, Shutdown, SocketFlags, SocketType};

#[path = "raw.rs"]
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

// ---- reading the script ----------------------------------------------------

/// The bytes of a script, read front to back; zeros once they run out.
pub struct Script<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Script<'a> {
    pub fn new(data: &'a [u8]) -> Script<'a> {
        Script { data, pos: 0 }
    }

    pub fn done(&self) -> bool {
        self.pos >= self.data.len()
    }

    pub fn byte(&mut self) -> u8 {
        match self.data.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                b
            }
            None => 0,
        }
    }

    /// A number in `0..n`, for `n <= 256`.
    pub fn below(&mut self, n: usize) -> usize {
        usize::from(self.byte()) % n
    }

    pub fn bit(&mut self) -> bool {
        self.byte() & 1 == 1
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }

    pub fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | u64::from(self.u32()) << 32
    }
}

// ---- items -----------------------------------------------------------------

/// The item types the honest end is opened with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemKind {
    U64,
    Bytes12,
    U8,
}

impl ItemKind {
    fn from_index(n: usize) -> ItemKind {
        match n % 3 {
            0 => ItemKind::U64,
            1 => ItemKind::Bytes12,
            _ => ItemKind::U8,
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    fn size(self) -> u64 {
        match self {
            ItemKind::U64 => 8,
            ItemKind::Bytes12 => 12,
            ItemKind::U8 => 1,
        }
    }

    fn align(self) -> u64 {
        match self {
            ItemKind::U64 => 8,
            ItemKind::Bytes12 | ItemKind::U8 => 1,
        }
    }

    /// The least capacity whose data region is a whole number of pages.
    fn step(self, page: u64) -> u64 {
        page / gcd(page, self.size())
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// An item type, with a value for every position in the stream.
pub trait Item: Pod + PartialEq + std::fmt::Debug {
    fn seq(i: u64) -> Self;
}

impl Item for u64 {
    fn seq(i: u64) -> u64 {
        i.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }
}

impl Item for [u8; 12] {
    fn seq(i: u64) -> [u8; 12] {
        let mut b = [0; 12];
        b[..8].copy_from_slice(&i.to_le_bytes());
        b[8..].copy_from_slice(&(!(i as u32)).to_le_bytes());
        b
    }
}

impl Item for u8 {
    fn seq(i: u64) -> u8 {
        i as u8 ^ 0xa5
    }
}

// ---- values the peer writes ------------------------------------------------

/// Values worth trying in any field.
const INTERESTING: [u64; 16] = [
    0,
    1,
    2,
    3,
    7,
    8,
    12,
    128,
    768,
    4096,
    8192,
    u32::MAX as u64,
    1 << 32,
    fdring::MAGIC,
    1 << 62,
    i64::MAX as u64,
];

/// How to make a value from the current contents of a field.
#[derive(Debug, Clone, Copy)]
struct ValueSpec {
    kind: u8,
    k: u8,
    wide: u64,
}

impl ValueSpec {
    fn parse(s: &mut Script) -> ValueSpec {
        let kind = s.byte() % 10;
        let k = s.byte();
        let wide = if kind == 9 { s.u64() } else { 0 };
        ValueSpec { kind, k, wide }
    }

    fn resolve(self, current: u64, cap: u64) -> u64 {
        let k = u64::from(self.k);
        match self.kind {
            0 => k,
            1 => current.wrapping_add(k),
            2 => current.wrapping_sub(k),
            3 => current
                .wrapping_add(cap)
                .wrapping_add(k % 3)
                .wrapping_sub(1),
            4 => u64::MAX - k,
            5 => (INDEX_LIMIT - 2).wrapping_add(k % 4),
            6 => INTERESTING[self.k as usize % INTERESTING.len()],
            7 => 1 << (k % 64),
            8 => current ^ (1 << (k % 64)),
            _ => self.wide,
        }
    }
}

/// A value for an armed or closed word.
fn word(s: &mut Script) -> u32 {
    match s.below(4) {
        0 => 0,
        1 => 1,
        2 => u32::MAX,
        _ => s.u32(),
    }
}

/// The header fields, with their widths.
const FIELDS: [(usize, usize); 14] = [
    (MAGIC, 8),
    (VERSION, 4),
    (ITEM_SIZE, 4),
    (ITEM_ALIGN, 4),
    (FLAGS, 4),
    (CAPACITY, 8),
    (DATA_OFFSET, 8),
    (TYPE_TAG, 8),
    (WRITE_INDEX, 8),
    (READ_INDEX, 8),
    (PRODUCER_ARMED, 4),
    (CONSUMER_ARMED, 4),
    (CLOSED_PRODUCER, 4),
    (CLOSED_CONSUMER, 4),
];

const WIDTHS: [usize; 3] = [1, 4, 8];

/// Where a write before opening goes.
#[derive(Debug, Clone, Copy)]
enum Target {
    Field(usize, usize),
    /// Any offset in the file (modulo its size), with a width.
    Raw(u16, usize),
}

#[derive(Debug, Clone, Copy)]
struct PreWrite {
    target: Target,
    value: ValueSpec,
}

impl PreWrite {
    fn parse(s: &mut Script) -> PreWrite {
        let t = s.byte();
        let target = match FIELDS.get(usize::from(t % 20)) {
            Some(&(offset, width)) => Target::Field(offset, width),
            None => Target::Raw(s.u16(), WIDTHS[usize::from(t >> 5) % 3]),
        };
        PreWrite {
            target,
            value: ValueSpec::parse(s),
        }
    }
}

// ---- what is handed over ---------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemfdKind {
    /// Made by `Builder::build`.
    Ring,
    /// Made here: a valid ring, sealed.
    Handmade,
    Unsealed,
    /// Sealed with these bits (`F_SEAL_SEAL` 1, `SHRINK` 2, `GROW` 4,
    /// `WRITE` 8, `FUTURE_WRITE` 16).
    SomeSeals(u8),
    /// Sealed, and smaller than a page.
    TooSmall(u8),
    /// Sealed, and a size that is not page-aligned.
    OddSize(u16),
    RegularFile,
    /// The crate's memfd opened again through `/proc/self/fd` (read-only,
    /// write-only, `O_PATH`, or read-write).
    Reopened(u8),
    Pipe,
    EventFd,
    Socket,
}

/// What is handed over as the end's wake-up socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WakeKind {
    /// The crate's own socket end, for a ring the crate made; for the
    /// others, one end of a pair made as the crate makes it (blocking).
    Real,
    /// One end of a fresh connected stream pair made here (with std),
    /// whose other end the peer holds.
    Fresh,
    /// One end of a connected stream pair whose other end is already
    /// closed: accepted (it is connected), and the peer is gone from the
    /// start.
    HungUp,
    Datagram,
    SeqPacket,
    /// A Unix stream socket that was never connected.
    Unconnected,
    /// An `AF_INET` datagram socket.
    Inet,
    EventFd,
    Pipe,
    /// The memfd itself.
    Memfd,
}

impl WakeKind {
    fn from_byte(b: u8) -> WakeKind {
        match b % 16 {
            0..=6 => WakeKind::Real,
            7 => WakeKind::Fresh,
            8 => WakeKind::HungUp,
            9 => WakeKind::Datagram,
            10 => WakeKind::SeqPacket,
            11 => WakeKind::Unconnected,
            12 => WakeKind::Inet,
            13 => WakeKind::EventFd,
            14 => WakeKind::Pipe,
            _ => WakeKind::Memfd,
        }
    }

    /// Whether it is a connected Unix stream socket, which the end takes.
    fn accepted(self) -> bool {
        matches!(self, WakeKind::Real | WakeKind::Fresh | WakeKind::HungUp)
    }

    /// What `Rejection::NotWakeSocket` must say it found instead.
    fn found(self) -> &'static str {
        match self {
            WakeKind::Real | WakeKind::Fresh | WakeKind::HungUp => "",
            WakeKind::Datagram | WakeKind::SeqPacket => "a Unix socket that is not a stream socket",
            WakeKind::Unconnected => "a Unix stream socket that is not connected",
            WakeKind::Inet => "a socket of another address family",
            WakeKind::EventFd | WakeKind::Pipe | WakeKind::Memfd => "not a socket",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LivenessKind {
    None,
    /// A socket whose other end the peer keeps (until it drops it).
    Socket,
    /// A socket whose other end is already closed.
    SocketGone,
    /// A pidfd of this very process: never ready.
    Pidfd,
}

/// Everything the script says before the operations.
#[derive(Debug, Clone)]
struct Setup {
    kind: MemfdKind,
    receiver: bool,
    item: ItemKind,
    ring_item: ItemKind,
    geometry: u8,
    header_tag: u64,
    expect_tag: Option<u64>,
    wake: WakeKind,
    /// Copies of its end of the pair the peer keeps (1 or 2).
    peer_copies: usize,
    /// The honest end's socket is handed over with `O_NONBLOCK` set.
    nonblocking: bool,
    liveness: LivenessKind,
    spin: Duration,
    /// The fds come through `handoff::recv_fds`, in a message the peer
    /// shapes with this byte (see [`Setup::send_handoff`]).
    handoff: Option<u8>,
    fill_config: Option<[u8; CONFIG_BYTES]>,
    writes: Vec<PreWrite>,
}

/// What opening must give.
enum Expect {
    /// A valid ring: opening must succeed.
    Open,
    /// Must be refused, with an error for which the function is true.
    Refuse(&'static str, fn(&Error) -> bool),
    /// Must be refused because the wake-up fd is not a connected Unix
    /// stream socket, but this.
    NotWakeSocket(&'static str),
    /// The header was scribbled: opened, or refused with a `Rejected`.
    OpenOrRejected,
}

impl Setup {
    fn parse(s: &mut Script) -> Setup {
        let kind = match s.byte() % 16 {
            0..=3 => MemfdKind::Ring,
            4..=6 => MemfdKind::Handmade,
            7 => MemfdKind::Unsealed,
            8 => MemfdKind::SomeSeals(s.byte()),
            9 => MemfdKind::TooSmall(s.byte()),
            10 => MemfdKind::OddSize(s.u16()),
            11 => MemfdKind::RegularFile,
            12 => MemfdKind::Reopened(s.byte()),
            13 => MemfdKind::Pipe,
            14 => MemfdKind::EventFd,
            _ => MemfdKind::Socket,
        };
        let role = s.byte();
        let item = ItemKind::from_index(usize::from(role >> 1 & 3));
        let ring_item = if role >> 3 & 3 == 3 {
            ItemKind::from_index(item.index() + 1 + usize::from(role >> 5 & 1))
        } else {
            item
        };
        let geometry = s.byte();
        let tag = s.byte();
        let header_tag = match tag & 3 {
            0 => 0,
            1 => 0x5eed,
            2 => u64::MAX,
            _ => s.u64(),
        };
        let expect_tag = match tag >> 2 & 3 {
            2 => Some(header_tag),
            3 => Some(header_tag ^ 1),
            _ => None,
        };
        let wake = WakeKind::from_byte(s.byte());
        let hold = s.byte();
        let l = s.byte();
        let liveness = match l % 8 {
            5 => LivenessKind::Socket,
            6 => LivenessKind::SocketGone,
            7 => LivenessKind::Pidfd,
            _ => LivenessKind::None,
        };
        let spin = match l >> 3 & 3 {
            1 => Duration::from_micros(1),
            3 => fdring::DEFAULT_SPIN,
            _ => Duration::ZERO,
        };
        let handoff = (l >> 5 == 7).then(|| s.byte());
        let w = s.byte();
        let fill_config = (w & 0x80 != 0).then(|| {
            let mut config = [0; CONFIG_BYTES];
            config.iter_mut().for_each(|b| *b = s.byte());
            config
        });
        let writes = (0..w & 7).map(|_| PreWrite::parse(s)).collect();
        Setup {
            kind,
            receiver: role & 1 == 1,
            item,
            ring_item,
            geometry,
            header_tag,
            expect_tag,
            wake,
            peer_copies: 1 + usize::from(hold & 1),
            nonblocking: hold & 2 != 0,
            liveness,
            spin,
            handoff,
            fill_config,
            writes,
        }
    }

    /// Whether a write before opening may have changed the configuration.
    fn config_touched(&self) -> bool {
        self.fill_config.is_some()
            || self.writes.iter().any(|w| match w.target {
                Target::Field(offset, _) => offset < CONFIG_BYTES,
                // Modulo the file size, which is at least a page for every
                // kind that gets this far: any offset below 48 could be hit.
                Target::Raw(..) => true,
            })
    }

    /// Whether the hand-off message, if any, is a well-formed one.
    fn handoff_ok(&self) -> bool {
        match self.handoff {
            None => true,
            Some(m) => m & 3 < 2 && (m >> 2 & 7) < 4,
        }
    }

    /// What opening must give, from the kinds alone.
    fn expect(&self) -> Expect {
        if !self.handoff_ok() {
            return Expect::Refuse("a bad hand-off message", |e| {
                matches!(e, Error::Rejected(Rejection::BadHandoff(_)))
            });
        }
        fn not_memfd(e: &Error) -> bool {
            matches!(e, Error::Rejected(Rejection::NotMemfd))
        }
        let header_like = match self.kind {
            MemfdKind::Pipe | MemfdKind::EventFd | MemfdKind::Socket => {
                return Expect::Refuse("not a memfd", not_memfd)
            }
            MemfdKind::RegularFile => {
                // A file on tmpfs supports seals (it has only F_SEAL_SEAL).
                return Expect::Refuse("a regular file", |e| {
                    matches!(
                        e,
                        Error::Rejected(Rejection::NotMemfd | Rejection::MissingSeals { .. })
                    )
                });
            }
            MemfdKind::Unsealed => {
                return Expect::Refuse("unsealed", |e| {
                    matches!(e, Error::Rejected(Rejection::MissingSeals { .. }))
                })
            }
            MemfdKind::SomeSeals(mask) if mask & 7 != 7 => {
                return Expect::Refuse("missing seals", |e| {
                    matches!(e, Error::Rejected(Rejection::MissingSeals { .. }))
                })
            }
            MemfdKind::SomeSeals(mask) if mask & 24 != 0 => {
                return Expect::Refuse("write-sealed", |e| {
                    matches!(e, Error::Rejected(Rejection::WriteSealed { .. }))
                })
            }
            MemfdKind::TooSmall(_) => {
                return Expect::Refuse("too small", |e| {
                    matches!(e, Error::Rejected(Rejection::TooSmall { .. }))
                })
            }
            MemfdKind::Reopened(mode) => match mode % 4 {
                0 | 1 => {
                    return Expect::Refuse("not open read-write", |e| {
                        matches!(e, Error::Rejected(Rejection::NotWritable))
                    })
                }
                2 => {
                    return Expect::Refuse("an O_PATH fd", |e| {
                        matches!(e, Error::Rejected(_) | Error::Io { .. })
                    })
                }
                _ => true,
            },
            MemfdKind::OddSize(_) => false,
            MemfdKind::Ring | MemfdKind::Handmade | MemfdKind::SomeSeals(_) => true,
        };
        if self.config_touched() {
            if !self.wake.accepted() {
                // Whatever the header says now, this is no ring to open.
                return Expect::Refuse("a scribbled header and no wake-up socket", |e| {
                    matches!(e, Error::Rejected(_))
                });
            }
            return Expect::OpenOrRejected;
        }
        if self.ring_item != self.item {
            // Every pair of the three item types differs in size.
            return Expect::Refuse("another item type", |e| {
                matches!(e, Error::Rejected(Rejection::ItemSize { .. }))
            });
        }
        if self.expect_tag.is_some_and(|t| t != self.header_tag) {
            return Expect::Refuse("another type tag", |e| {
                matches!(e, Error::Rejected(Rejection::TypeTag { .. }))
            });
        }
        if !header_like {
            return Expect::Refuse("a size the header does not describe", |e| {
                matches!(e, Error::Rejected(Rejection::SizeMismatch { .. }))
            });
        }
        if !self.wake.accepted() {
            return Expect::NotWakeSocket(self.wake.found());
        }
        Expect::Open
    }

    /// The capacity a hand-made ring gets.
    fn handmade_capacity(&self, page: u64) -> u64 {
        self.ring_item.step(page) * (1 + u64::from(self.geometry & 1))
    }

    fn handmade_data_offset(&self, page: u64) -> u64 {
        page * (1 + u64::from(self.geometry >> 2 & 1))
    }

    /// The capacity asked of `Builder::build`.
    fn requested_capacity(&self, page: u64) -> usize {
        let step = self.ring_item.step(page) as usize;
        match self.geometry & 3 {
            0 => 1,
            1 => step,
            2 => step + 1,
            _ => 2 * step,
        }
    }

    /// Makes the fds the script describes.
    fn build(&self) -> Built {
        let page = rustix::param::page_size() as u64;
        let cap = self.handmade_capacity(page);
        let data_offset = self.handmade_data_offset(page);
        let exact = data_offset + cap * self.ring_item.size();
        let image = || header_image(self.ring_item, cap, data_offset, self.header_tag);
        let required = 7;
        let mut ring_wake = None;
        let memfd = match self.kind {
            MemfdKind::Ring | MemfdKind::Reopened(_) => {
                let (memfd, sender_wake, receiver_wake) = self.crate_ring(page);
                // The honest end gets its side's socket, the peer the other.
                ring_wake = Some(if self.receiver {
                    (receiver_wake, sender_wake)
                } else {
                    (sender_wake, receiver_wake)
                });
                self.pre_write(&memfd, cap);
                match self.kind {
                    MemfdKind::Reopened(mode) => reopen(&memfd, mode),
                    _ => memfd,
                }
            }
            MemfdKind::Handmade => self.handmade(exact, &image(), required, cap),
            MemfdKind::Unsealed => self.handmade(exact, &image(), 0, cap),
            MemfdKind::SomeSeals(mask) => self.handmade(exact, &image(), mask & 31, cap),
            MemfdKind::TooSmall(b) => {
                let sizes = [0, 1, HEADER_BYTES as u64 - 1, HEADER_BYTES as u64, page - 1];
                let size = sizes[usize::from(b) % sizes.len()];
                self.handmade(size, &image(), required, cap)
            }
            MemfdKind::OddSize(d) => {
                let delta = 1 + u64::from(d & 0x7fff) % (page - 1);
                let size = if d & 0x8000 != 0 {
                    exact - delta
                } else {
                    exact + delta
                };
                self.handmade(size, &image(), required, cap)
            }
            MemfdKind::RegularFile => {
                let file = temp_file();
                rustix::fs::ftruncate(&file, exact).expect("harness: sizing a file");
                pwrite_clipped(&file, 0, &image());
                self.pre_write(&file, cap);
                file
            }
            MemfdKind::Pipe => pipe(),
            MemfdKind::EventFd => eventfd(EventfdFlags::NONBLOCK),
            MemfdKind::Socket => socket(),
        };
        let (wake, peer_end) = wake_fd(self.wake, &memfd, ring_wake);
        if self.nonblocking {
            // Not on every kind (an O_PATH memfd refuses), but on sockets.
            if let Ok(flags) = rustix::fs::fcntl_getfl(&wake) {
                let set = rustix::fs::fcntl_setfl(&wake, flags | OFlags::NONBLOCK);
                assert!(set.is_ok() || !self.wake.accepted(), "harness: F_SETFL");
            }
        }
        let mut ends = Vec::new();
        if let Some(end) = peer_end {
            for _ in 1..self.peer_copies {
                ends.push(end.try_clone().expect("harness: dup"));
            }
            ends.push(end);
        }
        // A dup of the honest end's own socket, as its creator could keep.
        let honest = self
            .wake
            .accepted()
            .then(|| wake.try_clone().expect("harness: dup"));
        let flags = honest
            .as_ref()
            .map(|fd| rustix::fs::fcntl_getfl(fd).expect("harness: F_GETFL"));
        let peer = PeerWake {
            ends,
            honest,
            flags,
        };
        let (liveness, liveness_end, liveness_dead) = match self.liveness {
            LivenessKind::None => (None, None, false),
            LivenessKind::Socket => {
                let (a, b) = UnixStream::pair().expect("harness: socketpair");
                (Some(Liveness::socket(a)), Some(b), false)
            }
            LivenessKind::SocketGone => {
                let (a, _) = UnixStream::pair().expect("harness: socketpair");
                (Some(Liveness::socket(a)), None, true)
            }
            LivenessKind::Pidfd => (Liveness::process(std::process::id()).ok(), None, false),
        };
        let memfd_dup = memfd.try_clone().expect("harness: dup");
        let fds = Fds { memfd, wake };
        let (fds, liveness, liveness_end, liveness_dead) = match self.handoff {
            None => (Ok(fds), liveness, liveness_end, liveness_dead),
            Some(shape) => {
                let (ours, theirs) = UnixStream::pair().expect("harness: socketpair");
                Setup::send_handoff(&ours, fds, shape);
                // The peer keeps its end of the hand-off socket, and the
                // honest end watches it (as `Liveness::socket` suggests).
                let received = fdring::handoff::recv_fds(&theirs);
                (received, Some(Liveness::socket(theirs)), Some(ours), false)
            }
        };
        Built {
            fds,
            memfd_dup,
            peer,
            hung_up: self.wake == WakeKind::HungUp,
            liveness,
            liveness_end,
            liveness_dead,
        }
    }

    /// Sends the fds over `socket` as `handoff::send_fds` does, or not
    /// quite: `shape` bits 0-1 are the data (0-1 the right 16 bytes, 2 one
    /// byte changed, 3 only 15 bytes), bits 2-4 how many fds
    /// (0-3 the two, 4 none, 5 one, 6 three, 7 nine: more than the
    /// receiver has room for). Every fd sent is the memfd or the honest
    /// end's socket: never the peer's end, which must not outlive the peer.
    fn send_handoff(socket: &UnixStream, fds: Fds, shape: u8) {
        use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
        use std::io::IoSlice;

        let mut data = *b"fdring-fds-v2\0\0\0";
        let mut len = data.len();
        match shape & 3 {
            2 => data[usize::from(shape >> 5) % 16] ^= 0x20,
            3 => len -= 1,
            _ => {}
        }
        let (memfd, wake) = (fds.memfd.as_fd(), fds.wake.as_fd());
        let all = [memfd, wake, wake, memfd, wake, memfd, wake, memfd, wake];
        let count = match shape >> 2 & 7 {
            0..=3 => 2,
            4 => 0,
            5 => 1,
            6 => 3,
            _ => 9,
        };
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(9))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if count > 0 {
            assert!(control.push(SendAncillaryMessage::ScmRights(&all[..count])));
        }
        rustix::net::sendmsg(
            socket,
            &[IoSlice::new(&data[..len])],
            &mut control,
            SendFlags::NOSIGNAL,
        )
        .expect("harness: sendmsg");
        // A short message is left as it is, the socket still open: the
        // receiver must refuse it, not wait for the rest.
    }

    /// A ring made by the crate: its memfd, the sender's socket end and
    /// the receiver's, with neither end closed.
    fn crate_ring(&self, page: u64) -> (OwnedFd, OwnedFd, OwnedFd) {
        fn build<R: Pod>(builder: Builder) -> (Fds, Fds) {
            let (tx, rx) = builder.build::<R>().expect("harness: building a ring");
            let rx = rx.into_fds().expect("harness: into_fds");
            (tx.into_fds().expect("harness: into_fds"), rx)
        }
        let mut builder = Builder::new().capacity(self.requested_capacity(page));
        if self.header_tag != 0 {
            builder = builder.type_tag(self.header_tag);
        }
        let (tx, rx) = match self.ring_item {
            ItemKind::U64 => build::<u64>(builder),
            ItemKind::Bytes12 => build::<[u8; 12]>(builder),
            ItemKind::U8 => build::<u8>(builder),
        };
        (tx.memfd, tx.wake, rx.wake)
    }

    /// A memfd of `size` bytes holding `image`, with the script's writes,
    /// then sealed with `seals`.
    fn handmade(&self, size: u64, image: &[u8], seals: u8, cap: u64) -> OwnedFd {
        let fd = rustix::fs::memfd_create(
            "fdring-fuzz",
            MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
        )
        .expect("harness: memfd_create");
        rustix::fs::ftruncate(&fd, size).expect("harness: sizing a memfd");
        pwrite_clipped(&fd, 0, image);
        self.pre_write(&fd, cap);
        let seals = SealFlags::from_bits_truncate(u32::from(seals));
        if !seals.is_empty() {
            rustix::fs::fcntl_add_seals(&fd, seals).expect("harness: sealing");
        }
        fd
    }

    /// Applies the script's writes before opening, clipped to the file.
    fn pre_write(&self, fd: &OwnedFd, cap: u64) {
        if let Some(config) = &self.fill_config {
            pwrite_clipped(fd, 0, config);
        }
        let size = file_size(fd);
        for w in &self.writes {
            let (offset, width) = match w.target {
                Target::Field(offset, width) => (offset as u64, width),
                Target::Raw(offset, width) => (u64::from(offset) % size.max(1), width),
            };
            let mut current = [0u8; 8];
            let _ = rustix::io::pread(fd, &mut current[..width], offset);
            let value = w.value.resolve(u64::from_ne_bytes(current), cap);
            pwrite_clipped(fd, offset, &value.to_ne_bytes()[..width]);
        }
    }
}

/// A header describing a ring, as the creator writes it.
fn header_image(item: ItemKind, capacity: u64, data_offset: u64, tag: u64) -> Vec<u8> {
    let mut h = vec![0u8; HEADER_BYTES];
    h[MAGIC..MAGIC + 8].copy_from_slice(&fdring::MAGIC.to_ne_bytes());
    h[VERSION..VERSION + 4].copy_from_slice(&fdring::VERSION.to_ne_bytes());
    h[ITEM_SIZE..ITEM_SIZE + 4].copy_from_slice(&(item.size() as u32).to_ne_bytes());
    h[ITEM_ALIGN..ITEM_ALIGN + 4].copy_from_slice(&(item.align() as u32).to_ne_bytes());
    h[CAPACITY..CAPACITY + 8].copy_from_slice(&capacity.to_ne_bytes());
    h[DATA_OFFSET..DATA_OFFSET + 8].copy_from_slice(&data_offset.to_ne_bytes());
    h[TYPE_TAG..TYPE_TAG + 8].copy_from_slice(&tag.to_ne_bytes());
    h
}

fn file_size(fd: &OwnedFd) -> u64 {
    rustix::fs::fstat(fd).map_or(0, |st| st.st_size as u64)
}

/// Writes what fits below the end of the file (a write past it would grow
/// an unsealed file, and fails on a sealed one).
fn pwrite_clipped(fd: &OwnedFd, offset: u64, bytes: &[u8]) {
    let size = file_size(fd);
    if offset >= size {
        return;
    }
    let n = bytes.len().min((size - offset) as usize);
    let _ = rustix::io::pwrite(fd, &bytes[..n], offset);
}

/// The crate's memfd opened again, as a new open file description.
fn reopen(memfd: &OwnedFd, mode: u8) -> OwnedFd {
    let flags = match mode % 4 {
        0 => OFlags::RDONLY,
        1 => OFlags::WRONLY,
        2 => OFlags::PATH,
        _ => OFlags::RDWR,
    };
    let path = format!("/proc/self/fd/{}", memfd.as_raw_fd());
    rustix::fs::open(path.as_str(), flags | OFlags::CLOEXEC, Mode::empty())
        .expect("harness: reopening a memfd through /proc")
}

fn eventfd(flags: EventfdFlags) -> OwnedFd {
    rustix::event::eventfd(0, flags | EventfdFlags::CLOEXEC).expect("harness: eventfd")
}

fn socket() -> OwnedFd {
    let (a, _) = UnixStream::pair().expect("harness: socketpair");
    a.into()
}

/// A dup of one end of an anonymous pipe whose writer is gone (it reads
/// end-of-file and is always ready), made once per process: `std::io::pipe`
/// is newer than the crate's MSRV, and rustix's `pipe` feature is not on.
fn pipe() -> OwnedFd {
    static PIPE: OnceLock<Option<OwnedFd>> = OnceLock::new();
    let pipe = PIPE.get_or_init(|| {
        let mut child = std::process::Command::new("true")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .ok()?;
        let out = child.stdout.take()?;
        let _ = child.wait();
        Some(out.into())
    });
    match pipe {
        Some(fd) => fd.try_clone().expect("harness: dup"),
        None => socket(),
    }
}

/// An unnamed regular file in the temporary directory.
fn temp_file() -> OwnedFd {
    let dir = std::env::temp_dir();
    let rw = OFlags::RDWR | OFlags::CLOEXEC;
    if let Ok(fd) = rustix::fs::open(
        dir.as_path(),
        rw | OFlags::TMPFILE,
        Mode::from_raw_mode(0o600),
    ) {
        return fd;
    }
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let path = dir.join(format!(
        "fdring-fuzz-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let fd = rustix::fs::open(
        &path,
        rw | OFlags::CREATE | OFlags::EXCL,
        Mode::from_raw_mode(0o600),
    )
    .expect("harness: creating a temporary file");
    let _ = std::fs::remove_file(&path);
    fd
}

/// A Unix socket pair of `kind`, close-on-exec and blocking.
fn unix_pair(kind: SocketType) -> (OwnedFd, OwnedFd) {
    rustix::net::socketpair(AddressFamily::UNIX, kind, SocketFlags::CLOEXEC, None)
        .expect("harness: socketpair")
}

/// The fd handed over as the wake-up socket, and the peer's end of its
/// pair if it has one the peer keeps. `from_ring` is the crate's pair
/// (the honest end's, the peer's) for a ring the crate made.
fn wake_fd(
    kind: WakeKind,
    memfd: &OwnedFd,
    from_ring: Option<(OwnedFd, OwnedFd)>,
) -> (OwnedFd, Option<OwnedFd>) {
    let lone = |fd: OwnedFd| (fd, None);
    match kind {
        WakeKind::Real => {
            let (ours, theirs) = from_ring.unwrap_or_else(|| unix_pair(SocketType::STREAM));
            (ours, Some(theirs))
        }
        WakeKind::Fresh => {
            let (ours, theirs) = UnixStream::pair().expect("harness: socketpair");
            (ours.into(), Some(theirs.into()))
        }
        WakeKind::HungUp => lone(unix_pair(SocketType::STREAM).0),
        WakeKind::Datagram => lone(unix_pair(SocketType::DGRAM).0),
        WakeKind::SeqPacket => lone(unix_pair(SocketType::SEQPACKET).0),
        WakeKind::Unconnected => lone(
            rustix::net::socket_with(
                AddressFamily::UNIX,
                SocketType::STREAM,
                SocketFlags::CLOEXEC,
                None,
            )
            .expect("harness: socket"),
        ),
        WakeKind::Inet => lone(inet_socket()),
        WakeKind::EventFd => lone(eventfd(EventfdFlags::NONBLOCK)),
        WakeKind::Pipe => lone(pipe()),
        WakeKind::Memfd => lone(memfd.try_clone().expect("harness: dup")),
    }
}

/// A socket of a family other than `AF_UNIX`: `AF_INET`, or `AF_INET6`
/// where there is no IPv4.
fn inet_socket() -> OwnedFd {
    [AddressFamily::INET, AddressFamily::INET6]
        .into_iter()
        .find_map(|family| {
            rustix::net::socket_with(family, SocketType::DGRAM, SocketFlags::CLOEXEC, None).ok()
        })
        .expect("harness: an AF_INET or AF_INET6 socket")
}

/// The peer's hold on the wake-up sockets.
struct PeerWake {
    /// The copies of the peer's own end of the pair: the honest end sees
    /// the peer hang up once the last one is closed.
    ends: Vec<OwnedFd>,
    /// A dup of the honest end's socket (the same open file description),
    /// kept as the ring's hostile creator could.
    honest: Option<OwnedFd>,
    /// The file status flags of the honest end's socket as the peer last
    /// set them: fdring never changes them.
    flags: Option<OFlags>,
}

/// The fds to hand over, and what the peer keeps.
struct Built {
    /// The fds, or why `handoff::recv_fds` refused them.
    fds: Result<Fds, Error>,
    /// The harness's own dup of the memfd, to map it once an end opened.
    memfd_dup: OwnedFd,
    peer: PeerWake,
    /// The honest end's socket was handed over hung up.
    hung_up: bool,
    /// What the honest end watches with `watch_peer` once open.
    liveness: Option<Liveness>,
    /// The peer's end of a liveness socket.
    liveness_end: Option<UnixStream>,
    /// Whether the liveness fd already says the peer is gone.
    liveness_dead: bool,
}

// ---- the honest end's view, checked ----------------------------------------

/// Whether a pair of indices is one the crate must accept.
fn legal(write: u64, read: u64, cap: u64) -> bool {
    read <= write && write - read <= cap && write <= INDEX_LIMIT
}

/// A corruption the honest end may have recorded without reporting it yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    None,
    /// The next call that looks at the ring must report this.
    Exact(Corruption),
    /// The next call that looks at the ring must report a corruption.
    Some,
    /// The next call that looks at the ring may report a corruption.
    Maybe,
}

/// What the honest end may know, from what the peer did.
struct Model {
    sender: bool,
    cap: u64,
    /// The honest end's own index: what it published or consumed.
    mine: u64,
    /// Every value the peer's index had when the honest end could load it.
    seen: BTreeSet<u64>,
    /// The corruption reported, sticky from then on.
    stuck: Option<Corruption>,
    pending: Pending,
    /// The liveness fd says the peer is gone (the end may not know yet).
    liveness_dead: bool,
    /// The honest end's socket is hung up: every copy of the peer's end is
    /// closed, or the peer shut down its sending side, or the honest
    /// side's receiving side through its dup (the end may not know yet).
    hung_up: bool,
    /// A `prepare_wait` on a corrupted end may have replaced its recorded
    /// corruption (see [`Options::prepare_wait_sticky`]).
    restuck: bool,
    options: Options,
}

impl Model {
    /// Whether the honest end may know the peer is gone, and must find
    /// out when it waits.
    fn gone(&self) -> bool {
        self.liveness_dead || self.hung_up
    }

    fn check_payload(&self, c: Corruption, what: &str) {
        match c {
            Corruption::IndexOutOfRange {
                write,
                read,
                capacity,
            } => {
                assert_eq!(capacity, self.cap, "{what}: {c:?}");
                let (mine, peer) = if self.sender {
                    (write, read)
                } else {
                    (read, write)
                };
                assert_eq!(mine, self.mine, "{what}: not my index in {c:?}");
                assert!(
                    self.seen.contains(&peer),
                    "{what}: the peer never stored the index in {c:?}"
                );
                assert!(
                    !legal(write, read, self.cap),
                    "{what}: legal indices reported as corrupt: {c:?}"
                );
            }
            Corruption::IndexWentBack { before, now } => {
                assert!(
                    self.seen.contains(&before) && self.seen.contains(&now) && now < before,
                    "{what}: {c:?} is not what the peer stored"
                );
            }
            other => panic!("{what}: unknown corruption {other:?}"),
        }
    }

    /// Checks an answer that is not an error, from a call that looked.
    fn check_ok(&mut self, what: &str) {
        assert!(
            self.stuck.is_none(),
            "{what}: answered Ok after {:?}",
            self.stuck
        );
        assert!(
            !matches!(self.pending, Pending::Exact(_) | Pending::Some),
            "{what}: answered Ok on a ring with an invalid index ({:?})",
            self.pending
        );
        self.pending = Pending::None;
    }

    /// Checks an error from a call that looked at the ring. Returns the
    /// error back if it is one the caller must check further (`Full`,
    /// `Empty`, `Timeout`, `Disconnected`, `Io`).
    fn check_err(&mut self, e: Error, what: &str) -> Option<Error> {
        let corrupted =
            self.stuck.is_some() || matches!(self.pending, Pending::Exact(_) | Pending::Some);
        if corrupted
            && e == Error::Disconnected
            && self.sender
            && self.gone()
            && !self.options.corrupted_before_gone
        {
            // Known (see `Options::corrupted_before_gone`).
            return None;
        }
        if let Some(c) = self.stuck {
            match e {
                Error::Corrupted(now) if self.restuck && now != c => {
                    self.check_payload(now, what);
                    self.stuck = Some(now);
                }
                e => assert_eq!(e, Error::Corrupted(c), "{what}: corruption not sticky"),
            }
            self.restuck = false;
            return None;
        }
        match e {
            Error::Corrupted(c) => {
                if let Pending::Exact(p) = self.pending {
                    if !self.restuck {
                        assert_eq!(c, p, "{what}: not the corruption found at open");
                    }
                }
                self.restuck = false;
                self.check_payload(c, what);
                self.stuck = Some(c);
                self.pending = Pending::None;
                None
            }
            other => {
                assert!(
                    !matches!(self.pending, Pending::Exact(_) | Pending::Some),
                    "{what}: {other:?} on a ring with an invalid index ({:?})",
                    self.pending
                );
                self.pending = Pending::None;
                Some(other)
            }
        }
    }
}

/// The peer: its own mapping, its hold on the wake-up sockets, its liveness
/// end.
struct World {
    raw: Raw,
    m: Model,
    wake: PeerWake,
    liveness_end: Option<UnixStream>,
    /// What is left of [`WAIT_BUDGET`].
    wait_budget: Duration,
    options: Options,
}

impl World {
    /// The index the peer owns: the read index if the honest end sends.
    fn peer_index(&self) -> &AtomicU64 {
        if self.m.sender {
            self.raw.read_index()
        } else {
            self.raw.write_index()
        }
    }

    fn own_index(&self) -> &AtomicU64 {
        if self.m.sender {
            self.raw.write_index()
        } else {
            self.raw.read_index()
        }
    }

    /// The armed word the honest end takes when it publishes or releases.
    fn peer_armed(&self) -> u32 {
        let offset = if self.m.sender {
            CONSUMER_ARMED
        } else {
            PRODUCER_ARMED
        };
        self.raw.u32_at(offset).load(Ordering::Acquire)
    }

    fn own_armed(&self) -> u32 {
        let offset = if self.m.sender {
            PRODUCER_ARMED
        } else {
            CONSUMER_ARMED
        };
        self.raw.u32_at(offset).load(Ordering::Acquire)
    }

    fn peer_closed(&self) -> bool {
        let offset = if self.m.sender {
            CLOSED_CONSUMER
        } else {
            CLOSED_PRODUCER
        };
        self.raw.u32_at(offset).load(Ordering::Acquire) != 0
    }

    fn own_closed_offset(&self) -> usize {
        if self.m.sender {
            CLOSED_PRODUCER
        } else {
            CLOSED_CONSUMER
        }
    }

    /// The current value of the peer's index, noted as seen.
    fn note(&mut self) -> u64 {
        let v = self.peer_index().load(Ordering::Acquire);
        self.m.seen.insert(v);
        v
    }

    /// Items ready (receiver) or slots in use (sender) by the current
    /// shared indices, if they are legal.
    fn fill(&self) -> Option<u64> {
        let peer = self.peer_index().load(Ordering::Acquire);
        let (write, read) = if self.m.sender {
            (self.m.mine, peer)
        } else {
            (peer, self.m.mine)
        };
        legal(write, read, self.m.cap).then(|| write - read)
    }

    /// The timeout of a `_timeout` call: the script's, or [`GONE_WAIT`]
    /// once the peer is gone (see `check_call_err`).
    fn timeout(&mut self, s: &mut Script) -> Duration {
        let scripted = self.duration(s);
        if self.m.gone() {
            GONE_WAIT
        } else {
            scripted
        }
    }

    /// A timeout for a `_timeout` call: none, microseconds, or a
    /// millisecond, within what is left of the run's budget.
    fn duration(&mut self, s: &mut Script) -> Duration {
        let wanted = match s.below(8) {
            0..=2 => Duration::ZERO,
            3 => Duration::from_micros(1),
            4 => Duration::from_micros(20),
            5 => Duration::from_micros(50),
            6 => Duration::from_micros(200),
            _ => Duration::from_millis(1),
        };
        match self.wait_budget.checked_sub(wanted) {
            Some(left) => {
                self.wait_budget = left;
                wanted
            }
            None => Duration::ZERO,
        }
    }

    /// A value for the peer's index, from legal to wild.
    fn forge(&self, s: &mut Script) -> u64 {
        let (mine, cap) = (self.m.mine, self.m.cap);
        let current = self.peer_index().load(Ordering::Acquire);
        let k = u64::from(s.u16());
        let sender = self.m.sender;
        match s.below(10) {
            0..=2 if sender => mine.saturating_sub(k % (cap + 1)),
            0..=2 => mine.wrapping_add(k % (cap + 1)),
            3 if sender => current.saturating_add(k % (cap + 1)).min(mine),
            3 => current
                .saturating_add(k % (cap + 1))
                .max(mine)
                .min(mine.saturating_add(cap)),
            4 if sender => mine.wrapping_sub(cap + 1 + k % 4),
            4 => mine.wrapping_add(cap + 1 + k % 4),
            5 if sender => mine.wrapping_add(1 + k % 1024),
            5 => mine.wrapping_sub(1 + k % 1024),
            6 => u64::MAX - k % 4,
            7 => (INDEX_LIMIT - 2).wrapping_add(k % 4),
            8 => current.wrapping_sub(1 + k % 8),
            _ => s.u64(),
        }
    }

    /// One action of the peer. Inside a closure (`in_closure`) it touches
    /// only the header and the fds: the honest end holds a slice of the
    /// data region then.
    fn act(&mut self, s: &mut Script, action: usize, in_closure: bool) {
        let cap = self.m.cap;
        let before = self.peer_index().load(Ordering::Relaxed);
        match action {
            0 | 11 => {
                let v = self.forge(s);
                self.peer_index().store(v, Ordering::Release);
            }
            1 => {
                let current = self.own_index().load(Ordering::Relaxed);
                let v = ValueSpec::parse(s).resolve(current, cap);
                self.own_index().store(v, Ordering::Release);
            }
            2 if !in_closure => self.honest_step(s),
            2 => {
                let v = self.forge(s);
                self.peer_index().store(v, Ordering::Release);
            }
            3 => {
                let offset = if s.bit() {
                    PRODUCER_ARMED
                } else {
                    CONSUMER_ARMED
                };
                let v = word(s);
                self.raw.u32_at(offset).store(v, Ordering::Release);
            }
            4 => {
                let offset = if s.bit() {
                    CLOSED_PRODUCER
                } else {
                    CLOSED_CONSUMER
                };
                let v = word(s);
                self.raw.u32_at(offset).store(v, Ordering::Release);
            }
            5 => {
                let (offset, width) = FIELDS[s.below(8)];
                let current = match width {
                    4 => u64::from(self.raw.u32_at(offset).load(Ordering::Relaxed)),
                    _ => self.raw.u64_at(offset).load(Ordering::Relaxed),
                };
                let v = ValueSpec::parse(s).resolve(current, cap);
                self.raw.poke(offset, width, v);
            }
            6 => {
                let end = self.raw.data_offset.max(HEADER_BYTES);
                let offset = usize::from(s.u16()) % end;
                let width = WIDTHS[s.below(3)];
                let v = ValueSpec::parse(s).resolve(0, cap);
                if offset + width <= end {
                    self.raw.poke(offset, width, v);
                }
            }
            7 if !in_closure => {
                let offset = s.u32() as usize % self.raw.data_len();
                let bytes: Vec<u8> = (0..1 + s.below(16)).map(|_| s.byte()).collect();
                self.raw.write_data(offset, &bytes);
            }
            8 => self.wake_action(s),
            9 if !in_closure => {
                let len = self.raw.len as u64;
                let offset = u64::from(s.u32()) % len;
                let n = 1 + u64::from(s.u32()) % len;
                let _ = rustix::fs::fallocate(
                    &self.raw.memfd,
                    rustix::fs::FallocateFlags::PUNCH_HOLE | rustix::fs::FallocateFlags::KEEP_SIZE,
                    offset,
                    n,
                );
            }
            10 if s.bit() => {
                if self.liveness_end.take().is_some() {
                    self.m.liveness_dead = true;
                }
            }
            10 => {
                for offset in 0..CONFIG_BYTES {
                    self.raw.poke(offset, 1, u64::from(s.byte()));
                }
            }
            _ => {
                let v = self.forge(s);
                self.peer_index().store(v, Ordering::Release);
            }
        }
        let after = self.note();
        trace!(
            "  peer action {action}{}: peer index {before} -> {after}, mine {}",
            if in_closure { " (in a closure)" } else { "" },
            self.m.mine
        );
    }

    /// The peer following the protocol: it reads the wake-ups it was sent,
    /// consumes (if the honest end sends) or publishes items, then wakes
    /// the honest end if it is armed.
    fn honest_step(&mut self, s: &mut Script) {
        if let Some(end) = self.wake.ends.first() {
            take_all(end.as_fd(), usize::MAX);
        }
        let cap = self.m.cap;
        let write = self.raw.write_index().load(Ordering::Acquire);
        let read = self.raw.read_index().load(Ordering::Acquire);
        if !legal(write, read, cap) {
            return;
        }
        let k = u64::from(s.u16());
        if self.m.sender {
            let n = k % (write - read + 1);
            self.raw.read_index().store(read + n, Ordering::Release);
        } else {
            let n = k % (cap - (write - read) + 1);
            let seed = s.byte();
            let size = self.raw.item_size;
            let mut bytes = vec![0u8; size];
            for i in 0..n {
                for (b, byte) in bytes.iter_mut().enumerate() {
                    *byte = seed ^ (i as u8).wrapping_mul(31) ^ b as u8;
                }
                self.raw.write_data(self.raw.slot_offset(write + i), &bytes);
            }
            self.raw.write_index().store(write + n, Ordering::Release);
        }
        let offset = if self.m.sender {
            PRODUCER_ARMED
        } else {
            CONSUMER_ARMED
        };
        if self.raw.u32_at(offset).swap(0, Ordering::AcqRel) != 0 {
            if let Some(end) = self.wake.ends.first() {
                let _ = rustix::net::send(end, &[1], DONTWAIT);
            }
        }
    }

    /// One action of the peer on the wake-up sockets: on its own end, or
    /// on the honest end's through its dup. Every call it makes passes
    /// `MSG_DONTWAIT`, so none blocks whatever the flags; none raises
    /// `SIGPIPE`.
    fn wake_action(&mut self, s: &mut Script) {
        let action = s.below(11);
        let arg = s.byte();
        let end = self.wake.ends.first().map(|fd| fd.as_fd());
        let honest = self.wake.honest.as_ref().map(|fd| fd.as_fd());
        let chunk = [1, 64, 4096][usize::from(arg) % 3];
        match action {
            // A spurious wake-up.
            0 => {
                if let Some(end) = end {
                    let _ = rustix::net::send(end, &[1], DONTWAIT);
                }
            }
            // A flood, until the honest end's socket takes no more.
            1 => {
                if let Some(end) = end {
                    flood(end, chunk);
                }
            }
            // The honest end's send buffer filled from its own socket, so
            // that its next wake-up finds no room.
            2 => {
                if let Some(honest) = honest {
                    flood(honest, chunk);
                }
            }
            // The shared file status flags: clear O_NONBLOCK (or set it,
            // see `Options::clear_nonblock`) on both descriptions.
            3 => {
                let clear = self.options.clear_nonblock && arg & 1 == 0;
                for fd in end.into_iter().chain(honest) {
                    if let Ok(flags) = rustix::fs::fcntl_getfl(fd) {
                        let flags = if clear {
                            flags - OFlags::NONBLOCK
                        } else {
                            flags | OFlags::NONBLOCK
                        };
                        let _ = rustix::fs::fcntl_setfl(fd, flags);
                    }
                }
                if let Some(honest) = honest {
                    self.wake.flags = rustix::fs::fcntl_getfl(honest).ok();
                }
            }
            // Wake-ups stolen from the honest end: one byte, 64, or all.
            4 => {
                if let Some(honest) = honest {
                    let limit = [1, 64, usize::MAX][usize::from(arg) % 3];
                    take_all(honest, limit);
                }
            }
            // The peer reads what the honest end sent it.
            5 => {
                if let Some(end) = end {
                    take_all(end, usize::MAX);
                }
            }
            // The peer shuts its end down: for sending (the honest end
            // reads end-of-file: a hang-up), for receiving (the honest
            // end's wake-ups fail with EPIPE), or both.
            6 => {
                if let Some(end) = end {
                    let how =
                        [Shutdown::Write, Shutdown::Read, Shutdown::Both][usize::from(arg) % 3];
                    if rustix::net::shutdown(end, how).is_ok() && how != Shutdown::Read {
                        self.m.hung_up = true;
                    }
                }
            }
            // The peer closes one copy of its end; the last one is a
            // hang-up.
            7 => {
                if self.wake.ends.pop().is_some() && self.wake.ends.is_empty() {
                    self.m.hung_up = true;
                }
            }
            // The honest end's socket shut down through the dup: for
            // receiving (it reads end-of-file, as if the peer hung up),
            // or for sending (its wake-ups fail with EPIPE).
            8 => {
                if let Some(honest) = honest {
                    let how = if arg & 1 == 0 {
                        Shutdown::Read
                    } else {
                        Shutdown::Write
                    };
                    if rustix::net::shutdown(honest, how).is_ok() && how == Shutdown::Read {
                        self.m.hung_up = true;
                    }
                }
            }
            // The peer closes every copy of its end at once.
            9 => {
                if !self.wake.ends.is_empty() {
                    self.wake.ends.clear();
                    self.m.hung_up = true;
                }
            }
            // A wake-up sent from the honest end's socket: the peer's end
            // reads it as if the honest end had woken it.
            _ => {
                if let Some(honest) = honest {
                    let _ = rustix::net::send(honest, &[1], DONTWAIT);
                }
            }
        }
        trace!(
            "  wake action {action} ({arg}): {} copies of the peer's end, hung up: {}",
            self.wake.ends.len(),
            self.m.hung_up
        );
    }

    /// Whether the honest end's socket has no byte queued to read (known
    /// only through the dup; `false` without one).
    fn honest_queue_empty(&self) -> bool {
        self.wake
            .honest
            .as_ref()
            .is_some_and(|fd| rustix::io::ioctl_fionread(fd).is_ok_and(|n| n == 0))
    }

    /// Checks that the honest end left its socket's file status flags as
    /// the peer last set them.
    fn check_flags(&self, what: &str) {
        if let (Some(honest), Some(flags)) = (&self.wake.honest, self.wake.flags) {
            let now = rustix::fs::fcntl_getfl(honest).expect("harness: F_GETFL");
            assert_eq!(
                now, flags,
                "{what}: the wake-up socket's file status flags changed"
            );
        }
    }
}

/// The flags of every send of the harness: it never blocks, and a closed
/// peer is `EPIPE`, not `SIGPIPE` (the fuzzer's process keeps its default
/// handler).
const DONTWAIT: SendFlags = SendFlags::DONTWAIT.union(SendFlags::NOSIGNAL);

fn ready(fd: BorrowedFd<'_>, flags: PollFlags) -> bool {
    let mut fds = [PollFd::new(&fd, flags)];
    let zero = rustix::time::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    matches!(rustix::event::poll(&mut fds, Some(&zero)), Ok(n) if n > 0)
}

/// Sends `chunk`-byte messages on `fd` until it takes no more.
fn flood(fd: BorrowedFd<'_>, chunk: usize) {
    let bytes = [0x5a; 4096];
    for _ in 0..MAX_ROUNDS {
        match rustix::net::send(fd, &bytes[..chunk], DONTWAIT) {
            Ok(_) | Err(Errno::INTR) => {}
            Err(_) => break,
        }
    }
}

/// Receives up to `limit` bytes from `fd`, without waiting.
fn take_all(fd: BorrowedFd<'_>, limit: usize) {
    let mut buf = [0u8; 4096];
    let mut left = limit;
    for _ in 0..MAX_ROUNDS {
        if left == 0 {
            break;
        }
        let n = left.min(buf.len());
        match rustix::net::recv(fd, &mut buf[..n], RecvFlags::DONTWAIT) {
            Ok((0, _)) => break,
            Ok((got, _)) => left = left.saturating_sub(got),
            Err(Errno::INTR) => {}
            Err(_) => break,
        }
    }
}

// ---- the sessions ----------------------------------------------------------

fn session<T: Item>(
    s: &mut Script,
    builder: &Builder,
    built: Built,
    expect: &Expect,
    receiver: bool,
    options: Options,
) {
    let Built {
        fds,
        memfd_dup,
        peer,
        hung_up,
        liveness,
        liveness_end,
        liveness_dead,
    } = built;
    let fds = match fds {
        Ok(fds) => fds,
        Err(e) => {
            check_open::<()>(Err(e), expect);
            return;
        }
    };
    let opened = if receiver {
        check_open(builder.open_receiver::<T>(fds), expect).map(End::Receiver)
    } else {
        check_open(builder.open_sender::<T>(fds), expect).map(End::Sender)
    };
    let Some(mut end) = opened else {
        return;
    };
    if let Some(liveness) = liveness {
        end.watch_peer(liveness);
    }
    let raw = Raw::map(&memfd_dup);
    drop(memfd_dup);
    assert_eq!(
        raw.item_size,
        size_of::<T>(),
        "opened with another item size"
    );
    assert_eq!(
        raw.capacity,
        end.capacity(),
        "capacity() is not the header's"
    );
    let mut world = World {
        m: Model {
            sender: !receiver,
            cap: raw.capacity,
            mine: 0,
            seen: BTreeSet::new(),
            stuck: None,
            pending: Pending::None,
            liveness_dead,
            hung_up,
            restuck: false,
            options,
        },
        raw,
        wake: peer,
        liveness_end,
        wait_budget: WAIT_BUDGET,
        options,
    };
    world.opened();
    let mut end = Some(end);
    let mut seq = 0u64;
    for _ in 0..MAX_OPS {
        if s.done() {
            break;
        }
        let Some(e) = end.as_mut() else {
            break;
        };
        let op = s.below(24);
        if op >= 12 {
            world.act(s, op - 12, false);
            continue;
        }
        trace!("call {op}");
        let start = Instant::now();
        let mut limit = Duration::ZERO;
        if op == 9 {
            end = world.reopen(end.take().expect("an end"), builder);
        } else {
            match e {
                End::Sender(tx) => limit = world.sender_op(s, tx, op, &mut seq),
                End::Receiver(rx) => limit = world.receiver_op(s, rx, op),
            }
        }
        let took = start.elapsed();
        assert!(
            took <= limit + SLACK,
            "op {op} took {took:?} with a timeout of {limit:?}: hung"
        );
        world.check_flags("a call");
    }
    if let Some(end) = end {
        drop(end);
        let closed = world.raw.u32_at(world.own_closed_offset());
        assert_eq!(
            closed.load(Ordering::Acquire),
            1,
            "a dropped end did not store its closed word"
        );
    }
}

/// Checks the result of opening against what the script calls for.
fn check_open<E>(result: Result<E, Error>, expect: &Expect) -> Option<E> {
    match (result, expect) {
        (Ok(end), Expect::Open | Expect::OpenOrRejected) => Some(end),
        (Ok(_), Expect::Refuse(why, _)) => panic!("opened a ring that must be refused: {why}"),
        (Ok(_), Expect::NotWakeSocket(found)) => {
            panic!("opened a ring whose wake-up fd is {found}")
        }
        (Err(e), Expect::Open) => panic!("a valid ring was refused: {e:?}"),
        (Err(e), Expect::Refuse(why, ok)) => {
            assert!(ok(&e), "{why}: refused with the wrong error {e:?}");
            None
        }
        (Err(e), Expect::NotWakeSocket(found)) => {
            assert_eq!(
                e,
                Error::Rejected(Rejection::NotWakeSocket { found }),
                "a wake-up fd that is {found}: refused with the wrong error"
            );
            None
        }
        (Err(e), Expect::OpenOrRejected) => {
            assert!(
                matches!(e, Error::Rejected(_)),
                "a scribbled header gave {e:?}, not a rejection"
            );
            None
        }
    }
}

enum End<T: Item> {
    Sender(Sender<T>),
    Receiver(Receiver<T>),
}

impl<T: Item> End<T> {
    fn capacity(&self) -> u64 {
        match self {
            End::Sender(tx) => tx.capacity() as u64,
            End::Receiver(rx) => rx.capacity() as u64,
        }
    }

    fn watch_peer(&mut self, liveness: Liveness) {
        match self {
            End::Sender(tx) => tx.watch_peer(liveness),
            End::Receiver(rx) => rx.watch_peer(liveness),
        }
    }
}

/// How many of the `len` items lent a closure takes.
fn pick(k: u8, len: usize) -> usize {
    match k % 4 {
        0 => len,
        1 => 1,
        2 => 0,
        _ => usize::from(k) * 37 % (len + 1),
    }
}

impl World {
    /// Learns the state an end starts from, just after it was opened.
    fn opened(&mut self) {
        self.m.mine = self.own_index().load(Ordering::Acquire);
        let peer = self.note();
        let (write, read) = if self.m.sender {
            (self.m.mine, peer)
        } else {
            (peer, self.m.mine)
        };
        self.m.stuck = None;
        self.m.pending = if legal(write, read, self.m.cap) {
            Pending::None
        } else {
            Pending::Exact(Corruption::IndexOutOfRange {
                write,
                read,
                capacity: self.m.cap,
            })
        };
    }

    /// Hands the end's fds on and opens the same side again from them.
    fn reopen<T: Item>(&mut self, end: End<T>, builder: &Builder) -> Option<End<T>> {
        let fds = match end {
            End::Sender(tx) => tx.into_fds(),
            End::Receiver(rx) => rx.into_fds(),
        };
        let fds = match fds {
            Ok(fds) => fds,
            Err(e) => {
                assert!(matches!(e, Error::Io { .. }), "into_fds gave {e:?}");
                return None;
            }
        };
        let reopened = if self.m.sender {
            builder.open_sender::<T>(fds).map(End::Sender)
        } else {
            builder.open_receiver::<T>(fds).map(End::Receiver)
        };
        match reopened {
            Ok(end) => {
                // The liveness went with the old end: the peer's end of it
                // means nothing any more. The socket came along, hung up or
                // not.
                self.m.liveness_dead = false;
                self.liveness_end = None;
                self.opened();
                Some(end)
            }
            Err(e) => {
                assert!(
                    matches!(e, Error::Rejected(_)),
                    "reopening gave {e:?}, not a rejection"
                );
                None
            }
        }
    }

    /// Checks a lent run of `len` free slots at the sender's index.
    fn check_lent_sender(&self, len: usize) {
        let len = len as u64;
        assert!(
            (1..=self.m.cap).contains(&len),
            "lent {len} slots of {}",
            self.m.cap
        );
        let implied = i128::from(self.m.mine) + i128::from(len) - i128::from(self.m.cap);
        assert!(
            u64::try_from(implied).is_ok_and(|r| self.m.seen.contains(&r)),
            "lent {len} slots at write {}: the peer never stored read index {implied}",
            self.m.mine
        );
    }

    /// Checks a lent run of items at the receiver's index, and that they
    /// are the bytes in their slots.
    fn check_lent_receiver<T: Item>(&self, items: &[T]) {
        let len = items.len() as u64;
        assert!(
            (1..=self.m.cap).contains(&len),
            "lent {len} items of {}",
            self.m.cap
        );
        assert!(
            self.m
                .mine
                .checked_add(len)
                .is_some_and(|w| self.m.seen.contains(&w)),
            "lent {len} items at read {}: the peer never stored that write index",
            self.m.mine
        );
        self.check_slots(items, self.m.mine);
    }

    /// Checks that `items` are the bytes in the slots from index `first`.
    fn check_slots<T: Item>(&self, items: &[T], first: u64) {
        let expected: &[u8] = bytemuck::cast_slice(items);
        let mut slots = vec![0u8; expected.len()];
        self.raw.read_data(self.raw.slot_offset(first), &mut slots);
        if slots != expected {
            let size = size_of::<T>();
            let bad = (0..items.len())
                .find(|i| slots[i * size..][..size] != expected[i * size..][..size])
                .expect("a differing item");
            panic!("item {bad} of {} is not the bytes in its slot", items.len());
        }
    }

    /// After the honest end published or released `n > 0` slots: its index
    /// is in the header, and the peer was woken if and only if armed (and
    /// then its end of the pair has something to read, unless it closed
    /// every copy: the wake-up byte, or what the peer queued itself, or a
    /// shutdown).
    fn committed(&mut self, n: usize, armed: u32, writes_before: u64, writes_after: u64) {
        trace!("  committed {n} (peer armed: {armed})");
        self.m.mine += n as u64;
        assert_eq!(
            self.own_index().load(Ordering::Acquire),
            self.m.mine,
            "the header does not hold the index just stored"
        );
        if armed != 0 {
            assert_eq!(self.peer_armed(), 0, "an armed peer was not disarmed");
            assert_eq!(
                writes_after,
                writes_before + 1,
                "an armed peer was not woken"
            );
            if let Some(end) = self.wake.ends.first() {
                assert!(
                    ready(end.as_fd(), PollFlags::IN),
                    "an armed peer was woken, but its socket end has nothing to read"
                );
            }
        } else {
            assert_eq!(writes_after, writes_before, "an unarmed peer was woken");
        }
    }

    /// A sender's "would block": the ring is full by the current indices.
    fn check_full(&self, what: &str) {
        let read = self.peer_index().load(Ordering::Acquire);
        assert_eq!(
            self.m.mine.checked_sub(read),
            Some(self.m.cap),
            "{what} at write {} with read {read}",
            self.m.mine
        );
        assert!(!self.peer_closed(), "{what} though the receiver closed");
    }

    /// A receiver's "would block": no item by the current indices.
    fn check_empty(&self, what: &str) {
        let write = self.peer_index().load(Ordering::Acquire);
        assert_eq!(
            write, self.m.mine,
            "{what} at read {} with write {write}",
            self.m.mine
        );
        assert!(!self.peer_closed(), "{what} though the sender closed");
    }

    fn check_disconnected(&self, what: &str) {
        assert!(
            self.peer_closed() || self.m.gone(),
            "{what}: Disconnected though the peer is neither closed nor gone"
        );
        if !self.m.sender {
            let write = self.peer_index().load(Ordering::Acquire);
            assert_eq!(
                write, self.m.mine,
                "{what}: Disconnected before the last item"
            );
        }
    }

    /// Checks the error of a call; `would_block` is what it may say when
    /// there is nothing to do, `io` whether it makes system calls that may
    /// fail.
    fn check_call_err(&mut self, e: Error, what: &str, would_block: Error, io: bool) {
        trace!("  {what}: {e:?}");
        let Some(e) = self.m.check_err(e, what) else {
            return;
        };
        match e {
            Error::Disconnected => self.check_disconnected(what),
            Error::Timeout if self.m.gone() => panic!(
                "{what}: Timeout though the peer is gone (socket hung up: {}, liveness fired: \
                 {}): a wait must see that and answer Disconnected",
                self.m.hung_up, self.m.liveness_dead
            ),
            Error::Io { .. } if io => {}
            e if e == would_block && self.m.sender => self.check_full(what),
            e if e == would_block => self.check_empty(what),
            other => panic!("{what}: unexpected {other:?}"),
        }
    }

    /// `len`, `is_full` or `is_empty`: the fill level by the current
    /// indices, or the corruption.
    fn check_len(&mut self, result: Result<usize, Error>, what: &str) {
        match result {
            Ok(len) => {
                self.m.check_ok(what);
                let fill = self.fill();
                assert_eq!(
                    fill,
                    Some(len as u64),
                    "{what}: {len} with mine {} and the peer's {}",
                    self.m.mine,
                    self.peer_index().load(Ordering::Acquire)
                );
            }
            Err(e) => {
                if let Some(e) = self.m.check_err(e, what) {
                    panic!("{what}: unexpected {e:?}");
                }
            }
        }
    }

    /// `quiet` says whether the honest end's socket had nothing queued
    /// before the call (so its drain found it empty and it armed).
    fn check_prepare_wait(&mut self, result: Result<bool, Error>, quiet: bool, what: &str) {
        trace!("  {what}: {result:?} (nothing queued before: {quiet})");
        let corrupted =
            self.m.stuck.is_some() || matches!(self.m.pending, Pending::Exact(_) | Pending::Some);
        if corrupted && !self.options.prepare_wait_sticky && result.is_ok() {
            // Known (see `Options::prepare_wait_sticky`): any answer, and
            // the next error may name another (valid) corruption.
            self.m.restuck = true;
            return;
        }
        match result {
            Ok(true) => {
                assert!(
                    self.m.stuck.is_none(),
                    "{what}: may wait on a ring known corrupted ({:?})",
                    self.m.stuck
                );
                assert!(
                    !matches!(self.m.pending, Pending::Exact(_) | Pending::Some),
                    "{what}: may wait on a ring with an invalid index ({:?})",
                    self.m.pending
                );
                assert!(
                    !self.peer_closed(),
                    "{what}: may wait though the peer closed"
                );
                assert!(
                    !self.m.gone(),
                    "{what}: may wait though the peer is gone (socket hung up: {}, liveness \
                     fired: {})",
                    self.m.hung_up,
                    self.m.liveness_dead
                );
                assert_eq!(self.own_armed(), 1, "{what}: may wait unarmed");
                if self.m.sender {
                    self.check_full(what);
                } else {
                    self.check_empty(what);
                }
            }
            Ok(false) => {
                // Unless the peer is closed or gone, or wake-ups were queued
                // (a flood may be left partly undrained, and then it says
                // "retry" without arming), it armed and so looked at the
                // peer's index: it may have found it bad.
                let looked = !self.peer_closed() && !self.m.gone() && quiet;
                if looked && self.m.stuck.is_none() && self.m.pending == Pending::None {
                    self.m.pending = if self.fill().is_none() {
                        Pending::Some
                    } else {
                        Pending::Maybe
                    };
                }
            }
            Err(e) => assert!(matches!(e, Error::Io { .. }), "{what}: {e:?}"),
        }
    }

    fn sender_op<T: Item>(
        &mut self,
        s: &mut Script,
        tx: &mut Sender<T>,
        op: usize,
        seq: &mut u64,
    ) -> Duration {
        let armed = self.peer_armed();
        let writes = tx.stats().wakeups;
        let mut limit = Duration::ZERO;
        match op {
            0 | 10 => {
                let item = T::seq(*seq);
                match tx.try_send(item) {
                    Ok(()) => self.sent(tx, &[item], seq, armed, writes, "try_send"),
                    Err(e) => self.check_call_err(e, "try_send", Error::Full, false),
                }
            }
            3 => {
                limit = self.timeout(s);
                let item = T::seq(*seq);
                match tx.send_timeout(item, limit) {
                    Ok(()) => self.sent(tx, &[item], seq, armed, writes, "send_timeout"),
                    Err(e) => self.check_call_err(e, "send_timeout", Error::Timeout, true),
                }
            }
            1 | 4 | 11 => {
                let k = s.byte();
                let act = op == 11 || k & 0x80 != 0;
                if op == 4 {
                    limit = self.timeout(s);
                }
                let mut lent = None;
                let mut armed_at_commit = armed;
                let first = *seq;
                let mut fill = |slots: &mut [MaybeUninit<T>]| {
                    self.check_lent_sender(slots.len());
                    // Touch every slot lent: one out of bounds would fault.
                    for slot in slots.iter_mut() {
                        slot.write(T::seq(u64::MAX));
                    }
                    let n = pick(k, slots.len());
                    for (i, slot) in slots[..n].iter_mut().enumerate() {
                        slot.write(T::seq(first + i as u64));
                    }
                    if act {
                        let action = s.below(12);
                        self.act(s, action, true);
                    }
                    armed_at_commit = self.peer_armed();
                    lent = Some(slots.len());
                    n
                };
                let (result, what) = if op == 4 {
                    (tx.send_with_timeout(limit, &mut fill), "send_with_timeout")
                } else {
                    (tx.try_send_with(&mut fill), "try_send_with")
                };
                match result {
                    Ok(n) => {
                        let lent = lent.expect("Ok without calling the closure");
                        assert_eq!(n, pick(k, lent), "{what}: not the count the closure gave");
                        let items: Vec<T> = (first..first + n as u64).map(T::seq).collect();
                        self.sent(tx, &items, seq, armed_at_commit, writes, what);
                    }
                    Err(e) => {
                        assert!(lent.is_none(), "{what}: lent slots, then failed");
                        let block = if op == 4 { Error::Timeout } else { Error::Full };
                        self.check_call_err(e, what, block, op == 4);
                    }
                }
            }
            2 => {
                let n = match s.below(4) {
                    0 => 0,
                    1 => usize::from(s.byte()),
                    2 => self.m.cap as usize,
                    _ => self.m.cap as usize + 1,
                };
                let items: Vec<T> = (*seq..*seq + n as u64).map(T::seq).collect();
                match tx.try_send_slice(&items) {
                    Ok(0) if n == 0 => {}
                    Ok(sent) => {
                        assert!((1..=n).contains(&sent), "try_send_slice: {sent} of {n}");
                        if sent < n {
                            self.check_lent_sender(sent);
                        }
                        self.sent(tx, &items[..sent], seq, armed, writes, "try_send_slice");
                    }
                    Err(e) => {
                        assert!(n > 0, "try_send_slice of nothing gave {e:?}");
                        self.check_call_err(e, "try_send_slice", Error::Full, false);
                    }
                }
            }
            5 => {
                let len = tx.len();
                self.check_len(len, "len");
            }
            6 => {
                let full = tx.is_full();
                let cap = self.m.cap as usize;
                self.check_len(
                    full.map(|f| if f { cap } else { self.fill_or(cap) }),
                    "is_full",
                );
            }
            7 => {
                let empty = tx.is_empty();
                self.check_len(
                    empty.map(|e| if e { 0 } else { self.fill_or(0) }),
                    "is_empty",
                );
            }
            _ => {
                let quiet = self.honest_queue_empty();
                let r = tx.prepare_wait();
                self.check_prepare_wait(r, quiet, "prepare_wait");
            }
        }
        limit
    }

    /// For `is_full`/`is_empty`: the fill level if it is not `avoid`, so
    /// that `check_len` compares the answer with the truth.
    fn fill_or(&self, avoid: usize) -> usize {
        match self.fill() {
            Some(f) if f as usize != avoid => f as usize,
            // The answer said "not `avoid`" though it is: report a level
            // that cannot match.
            _ => usize::MAX,
        }
    }

    fn sent<T: Item>(
        &mut self,
        tx: &Sender<T>,
        items: &[T],
        seq: &mut u64,
        armed: u32,
        writes: u64,
        what: &str,
    ) {
        self.m.check_ok(what);
        *seq += items.len() as u64;
        if items.is_empty() {
            return;
        }
        self.check_slots(items, self.m.mine);
        self.committed(items.len(), armed, writes, tx.stats().wakeups);
    }

    fn receiver_op<T: Item>(
        &mut self,
        s: &mut Script,
        rx: &mut Receiver<T>,
        op: usize,
    ) -> Duration {
        let armed = self.peer_armed();
        let writes = rx.stats().wakeups;
        let mut limit = Duration::ZERO;
        match op {
            0 | 3 | 10 => {
                let result = if op == 3 {
                    limit = self.timeout(s);
                    rx.recv_timeout(limit)
                } else {
                    rx.try_recv()
                };
                let what = if op == 3 { "recv_timeout" } else { "try_recv" };
                match result {
                    Ok(item) => self.received(rx, &[item], armed, writes, what),
                    Err(e) => {
                        let block = if op == 3 {
                            Error::Timeout
                        } else {
                            Error::Empty
                        };
                        self.check_call_err(e, what, block, op == 3);
                    }
                }
            }
            1 | 4 | 11 => {
                let k = s.byte();
                let act = op == 11 || k & 0x80 != 0;
                if op == 4 {
                    limit = self.timeout(s);
                }
                let mut lent = None;
                let mut armed_at_commit = armed;
                let mut consume = |items: &[T]| {
                    self.check_lent_receiver(items);
                    let n = pick(k, items.len());
                    if act {
                        let action = s.below(12);
                        self.act(s, action, true);
                    }
                    armed_at_commit = self.peer_armed();
                    lent = Some(items.len());
                    n
                };
                let (result, what) = if op == 4 {
                    (
                        rx.recv_with_timeout(limit, &mut consume),
                        "recv_with_timeout",
                    )
                } else {
                    (rx.try_recv_with(&mut consume), "try_recv_with")
                };
                match result {
                    Ok(n) => {
                        let lent = lent.expect("Ok without calling the closure");
                        assert_eq!(n, pick(k, lent), "{what}: not the count the closure gave");
                        self.m.check_ok(what);
                        if n > 0 {
                            let after = rx.stats().wakeups;
                            self.committed(n, armed_at_commit, writes, after);
                        }
                    }
                    Err(e) => {
                        assert!(lent.is_none(), "{what}: lent items, then failed");
                        let block = if op == 4 {
                            Error::Timeout
                        } else {
                            Error::Empty
                        };
                        self.check_call_err(e, what, block, op == 4);
                    }
                }
            }
            2 => {
                let n = match s.below(4) {
                    0 => 0,
                    1 => usize::from(s.byte()),
                    2 => self.m.cap as usize,
                    _ => self.m.cap as usize + 1,
                };
                let mut buf = vec![T::seq(u64::MAX); n];
                match rx.try_recv_slice(&mut buf) {
                    Ok(0) if n == 0 => {}
                    Ok(got) => {
                        assert!((1..=n).contains(&got), "try_recv_slice: {got} of {n}");
                        if got < n {
                            assert!(
                                self.m.seen.contains(&(self.m.mine + got as u64)),
                                "try_recv_slice: {got} items by no stored write index"
                            );
                        }
                        self.received(rx, &buf[..got], armed, writes, "try_recv_slice");
                    }
                    Err(e) => {
                        assert!(n > 0, "try_recv_slice of nothing gave {e:?}");
                        self.check_call_err(e, "try_recv_slice", Error::Empty, false);
                    }
                }
            }
            5 => {
                let len = rx.len();
                self.check_len(len, "len");
            }
            6 => {
                let full = rx.is_full();
                let cap = self.m.cap as usize;
                self.check_len(
                    full.map(|f| if f { cap } else { self.fill_or(cap) }),
                    "is_full",
                );
            }
            7 => {
                let empty = rx.is_empty();
                self.check_len(
                    empty.map(|e| if e { 0 } else { self.fill_or(0) }),
                    "is_empty",
                );
            }
            _ => {
                let quiet = self.honest_queue_empty();
                let r = rx.prepare_wait();
                self.check_prepare_wait(r, quiet, "prepare_wait");
            }
        }
        limit
    }

    fn received<T: Item>(
        &mut self,
        rx: &Receiver<T>,
        items: &[T],
        armed: u32,
        writes: u64,
        what: &str,
    ) {
        self.m.check_ok(what);
        if items.is_empty() {
            return;
        }
        assert!(
            self.m
                .mine
                .checked_add(items.len() as u64)
                .is_some_and(|w| w <= *self.m.seen.last().expect("seen")),
            "{what}: received past every write index the peer stored"
        );
        self.check_slots(items, self.m.mine);
        self.committed(items.len(), armed, writes, rx.stats().wakeups);
    }
}
