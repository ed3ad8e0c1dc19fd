//! The peer: its own mapping of the ring, its hold on the wake-up sockets
//! and its liveness end, and every action it takes between (and inside) the
//! honest end's calls. The calls themselves, and the checks of their
//! answers, are in `session`.

use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rustix::event::{PollFd, PollFlags};
use rustix::fs::OFlags;
use rustix::io::Errno;
use rustix::net::{RecvFlags, SendFlags, Shutdown};

use super::model::{legal, Model};
use super::script::{word, Script, ValueSpec, FIELDS, WIDTHS};
use super::setup::PeerWake;
use super::{
    tracing, Options, Raw, CLOSED_CONSUMER, CLOSED_PRODUCER, CONFIG_BYTES, CONSUMER_ARMED,
    GONE_WAIT, HEADER_BYTES, INDEX_LIMIT, MAX_ROUNDS, PRODUCER_ARMED,
};

/// The peer: its own mapping, its hold on the wake-up sockets, its liveness
/// end.
pub(super) struct World {
    pub(super) raw: Raw,
    pub(super) m: Model,
    pub(super) wake: PeerWake,
    pub(super) liveness_end: Option<UnixStream>,
    /// What is left of [`WAIT_BUDGET`].
    ///
    /// [`WAIT_BUDGET`]: super::WAIT_BUDGET
    pub(super) wait_budget: Duration,
    pub(super) options: Options,
}

impl World {
    /// The index the peer owns: the read index if the honest end sends.
    pub(super) fn peer_index(&self) -> &AtomicU64 {
        if self.m.sender {
            self.raw.read_index()
        } else {
            self.raw.write_index()
        }
    }

    pub(super) fn own_index(&self) -> &AtomicU64 {
        if self.m.sender {
            self.raw.write_index()
        } else {
            self.raw.read_index()
        }
    }

    /// The armed word the honest end takes when it publishes or releases.
    pub(super) fn peer_armed(&self) -> u32 {
        let offset = if self.m.sender {
            CONSUMER_ARMED
        } else {
            PRODUCER_ARMED
        };
        self.raw.u32_at(offset).load(Ordering::Acquire)
    }

    pub(super) fn own_armed(&self) -> u32 {
        let offset = if self.m.sender {
            PRODUCER_ARMED
        } else {
            CONSUMER_ARMED
        };
        self.raw.u32_at(offset).load(Ordering::Acquire)
    }

    pub(super) fn peer_closed(&self) -> bool {
        let offset = if self.m.sender {
            CLOSED_CONSUMER
        } else {
            CLOSED_PRODUCER
        };
        self.raw.u32_at(offset).load(Ordering::Acquire) != 0
    }

    pub(super) fn own_closed_offset(&self) -> usize {
        if self.m.sender {
            CLOSED_PRODUCER
        } else {
            CLOSED_CONSUMER
        }
    }

    /// The current value of the peer's index, noted as seen.
    pub(super) fn note(&mut self) -> u64 {
        let v = self.peer_index().load(Ordering::Acquire);
        self.m.seen.insert(v);
        v
    }

    /// Items ready (receiver) or slots in use (sender) by the current
    /// shared indices, if they are legal.
    pub(super) fn fill(&self) -> Option<u64> {
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
    pub(super) fn timeout(&mut self, s: &mut Script) -> Duration {
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
    pub(super) fn act(&mut self, s: &mut Script, action: usize, in_closure: bool) {
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
    pub(super) fn honest_queue_empty(&self) -> bool {
        self.wake
            .honest
            .as_ref()
            .is_some_and(|fd| rustix::io::ioctl_fionread(fd).is_ok_and(|n| n == 0))
    }

    /// Checks that the honest end left its socket's file status flags as
    /// the peer last set them.
    pub(super) fn check_flags(&self, what: &str) {
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

pub(super) fn ready(fd: BorrowedFd<'_>, flags: PollFlags) -> bool {
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
