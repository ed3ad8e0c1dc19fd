//! The sized frame cases: fdring's frame layer against the floor, a
//! `SOCK_SEQPACKET` socket and a pipe with length prefixes (the video
//! cases, which use the frame layer too, are `video`'s).

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::os::fd::OwnedFd;

use fdring::{Builder, FrameReceiver, FrameSender, Receiver, Sender};

use crate::cases::{Case, Contender, Metric, GBPS};
use crate::data::{check, fill_init, rx_side, tx_side, Rx, Tx};
use crate::floors::floor_stream;
use crate::ours::stats;
use crate::peers::pipe;
use crate::process::{child, child_with_env, pair, Cfg, Gate, Peer, Run};
use crate::{Res, CAP};

/// Payload alignment of the frame rings: a cache line, as the video and
/// audio examples use.
pub const FRAME_ALIGN: usize = 64;
/// The byte ring of the 1 KiB and 64 KiB frame cases: 512 KiB, the size of
/// the `u64` rings.
pub const FRAME_RING_BYTES: usize = CAP * 8;

/// fdring's frame layer: one frame of `max` words per call, written in
/// place (`send_frame_with`) into the ring.
impl Tx for FrameSender {
    fn put(&mut self, first: u64, max: usize) -> Res<usize> {
        self.send_frame_with(max * 8, |frame| {
            fill_init(bytemuck::cast_slice_mut(frame.bytes_mut()), first);
            max * 8
        })?;
        Ok(max)
    }
    fn counters(&self) -> [u64; 2] {
        stats(self.stats().ring)
    }
}

/// ... checked in place (`recv_frame_with`); a frame of another length is
/// wrong data.
impl Rx for FrameReceiver {
    fn take(&mut self, first: u64, max: usize) -> Res<(usize, u64)> {
        let (len, diff) = self.recv_frame_with(|frame| {
            let words: &[u64] = bytemuck::cast_slice(frame.bytes());
            (words.len(), check(words, first))
        })?;
        Ok((max, diff | u64::from(len != max)))
    }
    fn counters(&self) -> [u64; 2] {
        stats(self.stats().ring)
    }
}

/// A byte ring of `ring_bytes` whose receiving end went to a child
/// running `role`, told the payload alignment.
fn frame_peer(role: &str, c: &Cfg, ring_bytes: usize, align: usize) -> Res<(Sender<u8>, Peer)> {
    let (tx, rx) = Builder::new()
        .capacity(ring_bytes)
        .spin(c.spin)
        .mlock(c.mlock)
        .build::<u8>()?;
    let align_text = align.to_string();
    let env = [(ALIGN_VAR, align_text.as_str())];
    let peer = child_with_env(role, c, vec![rx.into_fds()?], vec![], &env)?;
    Ok((tx, peer))
}

/// The frame layer between two processes over a ring of `ring_bytes`,
/// payloads aligned to `align`.
pub fn fdring_frames(c: &Cfg, ring_bytes: usize, align: usize) -> Res<Run> {
    let (tx, peer) = frame_peer("fdring-framelayer", c, ring_bytes, align)?;
    pair(peer, |gate| {
        tx_side(FrameSender::with_align(tx, align), c, gate)
    })
}

/// The child's side of [`fdring_frames`].
pub fn frames_rx(rx: Receiver<u8>, c: &Cfg, gate: Gate) -> Res<Run> {
    let align = std::env::var(ALIGN_VAR)?.parse()?;
    rx_side(FrameReceiver::with_align(rx, align), c, gate)
}

/// The child's environment variable for the receiver's payload alignment.
const ALIGN_VAR: &str = "FDRING_BENCH_FRAME_ALIGN";

/// fdring's frame layer with the batched calls: the sender writes as many
/// frames as fit per call, up to [`BATCH_BYTES`] of records, in place
/// (`send_frames_with`, `FrameBatch::push_with`) and publishes them at
/// once; the receiver checks every ready frame in place and releases them
/// at once (`recv_frames_with`).
pub struct Batched<E> {
    end: E,
    /// Words per frame.
    frame: usize,
    /// Frames per batch, at most.
    batch: usize,
    /// Words to send in all (the sender's).
    total: u64,
}

/// The most record bytes a batched send writes before it publishes: an
/// eighth of the ring, as the item cases' `CHUNK`, so that both sides work
/// at once.
pub const BATCH_BYTES: usize = FRAME_RING_BYTES / 8;

impl Tx for Batched<FrameSender> {
    fn put(&mut self, first: u64, _max: usize) -> Res<usize> {
        let (frame, len) = (self.frame, self.frame * 8);
        let left = ((self.total - first) / frame as u64) as usize;
        let mut next = first;
        let sent = self.end.send_frames_with(len, |batch| {
            for _ in 0..left.min(self.batch) {
                let pushed = batch.push_with(len, |bytes| {
                    fill_init(bytemuck::cast_slice_mut(bytes.bytes_mut()), next);
                    len
                });
                if pushed.is_none() {
                    break;
                }
                next += frame as u64;
            }
        })?;
        Ok(sent * frame)
    }
    fn counters(&self) -> [u64; 2] {
        stats(self.end.stats().ring)
    }
}

impl Rx for Batched<FrameReceiver> {
    fn take(&mut self, first: u64, _max: usize) -> Res<(usize, u64)> {
        let frame = self.frame;
        let mut diff = 0;
        let taken = self.end.recv_frames_with(|frames| {
            // Locals, as the floor's: not a read-modify-write of a captured
            // variable per frame.
            let (mut taken, mut wrong, mut next) = (0, 0, first);
            for bytes in frames {
                let words: &[u64] = bytemuck::cast_slice(bytes.bytes());
                wrong |= check(words, next) | u64::from(words.len() != frame);
                next += frame as u64;
                taken += 1;
            }
            diff = wrong;
            taken
        })?;
        Ok((taken * frame, diff))
    }
    fn counters(&self) -> [u64; 2] {
        stats(self.end.stats().ring)
    }
}

/// The frame layer between two processes with the batched calls, over a
/// ring of `ring_bytes`, payloads aligned to `align`.
pub fn fdring_frame_batches(c: &Cfg, ring_bytes: usize, align: usize) -> Res<Run> {
    let (tx, peer) = frame_peer("fdring-framebatches", c, ring_bytes, align)?;
    let tx = Batched {
        end: FrameSender::with_align(tx, align),
        frame: c.wpm as usize,
        batch: (BATCH_BYTES / FrameSender::capacity_for(1, c.wpm as usize * 8, align)).max(1),
        total: c.words(),
    };
    pair(peer, |gate| tx_side(tx, c, gate))
}

/// The child's side of [`fdring_frame_batches`].
pub fn frame_batches_rx(rx: Receiver<u8>, c: &Cfg, gate: Gate) -> Res<Run> {
    let align = std::env::var(ALIGN_VAR)?.parse()?;
    let rx = Batched {
        end: FrameReceiver::with_align(rx, align),
        frame: c.wpm as usize,
        batch: FrameReceiver::MAX_BATCH,
        total: c.words(),
    };
    rx_side(rx, c, gate)
}

/// One message per frame on a `SOCK_SEQPACKET` Unix socket pair (the
/// kernel keeps the boundaries): the buffer is filled, then sent with one
/// `send`; received with one `recv`, then checked.
pub struct Packets(pub OwnedFd, pub Vec<u64>);

impl Tx for Packets {
    fn put(&mut self, first: u64, max: usize) -> Res<usize> {
        self.1.resize(max, 0);
        fill_init(&mut self.1, first);
        let bytes: &[u8] = bytemuck::cast_slice(&self.1);
        let sent = rustix::net::send(&self.0, bytes, rustix::net::SendFlags::empty())?;
        if sent != bytes.len() {
            return Err(format!("a packet of {} bytes went out as {sent}", bytes.len()).into());
        }
        Ok(max)
    }
}

impl Rx for Packets {
    fn take(&mut self, first: u64, max: usize) -> Res<(usize, u64)> {
        // One word more than expected, to see a longer packet.
        self.1.resize(max + 1, 0);
        let buf: &mut [u8] = bytemuck::cast_slice_mut(&mut self.1);
        let (got, _) = rustix::net::recv(&self.0, buf, rustix::net::RecvFlags::empty())?;
        let diff = check(&self.1[..max], first) | u64::from(got != max * 8);
        Ok((max, diff))
    }
}

/// `(mine, theirs)`: a `SOCK_SEQPACKET` pair, its buffers raised to 1 MiB
/// as far as the system allows (as the pipe's are).
pub fn seqpacket() -> Res<(OwnedFd, OwnedFd)> {
    use rustix::net::{sockopt, AddressFamily, SocketFlags, SocketType};
    let (a, b) = rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )?;
    for fd in [&a, &b] {
        sockopt::set_socket_send_buffer_size(fd, 1 << 20)?;
        sockopt::set_socket_recv_buffer_size(fd, 1 << 20)?;
    }
    Ok((a, b))
}

pub fn packets(c: &Cfg) -> Res<Run> {
    let (mine, theirs) = seqpacket()?;
    let peer = child("packets", c, vec![], vec![theirs])?;
    pair(peer, |gate| tx_side(Packets(mine, Vec::new()), c, gate))
}

/// Frames through a pipe, each after a `u32` length prefix: the writer
/// sends prefix and frame with one `write_all` from one buffer; the
/// reader reads through a 1 MiB `BufReader` (so a small frame costs no
/// system call of its own), the prefix then the frame, and checks it.
pub enum Prefixed {
    Writer(File, Vec<u64>),
    Reader(BufReader<File>, Vec<u64>),
}

impl Prefixed {
    pub fn reader(file: File) -> Prefixed {
        Prefixed::Reader(BufReader::with_capacity(1 << 20, file), Vec::new())
    }
}

impl Tx for Prefixed {
    fn put(&mut self, first: u64, max: usize) -> Res<usize> {
        let Prefixed::Writer(file, buf) = self else {
            return Err("not a writer".into());
        };
        // Word 0 holds the prefix (in its first 4 bytes), then the frame.
        buf.resize(max + 1, 0);
        fill_init(&mut buf[1..], first);
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(buf);
        let prefix = ((max * 8) as u32).to_ne_bytes();
        bytes[4..8].copy_from_slice(&prefix);
        file.write_all(&bytes[4..])?;
        Ok(max)
    }
}

impl Rx for Prefixed {
    fn take(&mut self, first: u64, max: usize) -> Res<(usize, u64)> {
        let Prefixed::Reader(file, buf) = self else {
            return Err("not a reader".into());
        };
        let mut prefix = [0u8; 4];
        file.read_exact(&mut prefix)?;
        let len = u32::from_ne_bytes(prefix) as usize;
        if len != max * 8 {
            return Err(format!("a frame of {len} bytes, expected {}", max * 8).into());
        }
        buf.resize(max, 0);
        file.read_exact(bytemuck::cast_slice_mut(buf))?;
        Ok((max, check(buf, first)))
    }
}

pub fn prefixed_pipe(c: &Cfg) -> Res<Run> {
    let (mine, theirs) = pipe()?;
    let peer = child("prefixed", c, vec![], vec![theirs])?;
    pair(peer, |gate| {
        tx_side(Prefixed::Writer(mine.into(), Vec::new()), c, gate)
    })
}

pub const KFRAMES: Metric = ("kframes/s", |c, r| c.n as f64 / r.secs / 1e3);

/// The sized frame cases: 64-byte, 1 KiB and 64 KiB frames against the floor SPSC
/// (which publishes one frame's worth of words per call), a
/// `SOCK_SEQPACKET` socket and a pipe with length prefixes. The goals of
/// `frames_64` and `frames_1k` are BENCHMARKS.md's (issue 15: fdring with
/// the batched calls); `frames_64k`'s are issue 7's own, and the report
/// says so (`OWN_GOALS`).
pub const SMALL_FRAMES_GOALS: &[(&str, &str, f64)] =
    &[("floor SPSC", "≥", 0.9), ("SEQPACKET", "≥", 2.0)];
pub const FRAMES_64K_GOALS: &[(&str, &str, f64)] = &[
    ("floor SPSC", "≥", 0.8),
    ("SEQPACKET", "≥", 1.0),
    ("pipe + prefix", "≥", 1.0),
];

/// The peers of every sized frames case: the floor, a SEQPACKET socket
/// and a pipe with length prefixes.
pub const SIZED_PEERS: [(&str, Contender); 3] = [
    ("floor SPSC", floor_stream),
    ("SEQPACKET", packets),
    ("pipe + prefix", prefixed_pipe),
];

/// A frames case of one frame size: fdring's frame layer (`own`) against
/// [`SIZED_PEERS`].
pub fn sized(
    name: &'static str,
    cfg: Cfg,
    mut own: Vec<(&'static str, Contender)>,
    goals: &'static [(&'static str, &'static str, f64)],
) -> Case {
    own.extend(SIZED_PEERS);
    Case {
        name,
        cfg,
        metrics: &[GBPS, KFRAMES],
        contenders: own,
        goals,
    }
}

pub fn frame_cases(quick: bool, base: Cfg) -> Vec<Case> {
    let q = |quick_n: u64, full_n: u64| if quick { quick_n } else { full_n };
    let frames = |words: usize, n: u64| Cfg {
        n,
        wpm: words as u64,
        chunk: words,
        ..base
    };
    vec![
        // Small frames: "fdring" with the batched calls, "fdring 1/call"
        // one frame per call (`send_frame_with`, `recv_frame_with`).
        sized(
            "frames_64",
            frames(64 / 8, q(1 << 19, 1 << 22)),
            vec![
                ("fdring", |c| fdring_frame_batches(c, FRAME_RING_BYTES, 8)),
                ("fdring 1/call", |c| fdring_frames(c, FRAME_RING_BYTES, 8)),
            ],
            SMALL_FRAMES_GOALS,
        ),
        sized(
            "frames_1k",
            frames(1024 / 8, q(1 << 16, 1 << 18)),
            vec![
                ("fdring", |c| {
                    fdring_frame_batches(c, FRAME_RING_BYTES, FRAME_ALIGN)
                }),
                ("fdring 1/call", |c| {
                    fdring_frames(c, FRAME_RING_BYTES, FRAME_ALIGN)
                }),
            ],
            SMALL_FRAMES_GOALS,
        ),
        // At 64 KiB the floor itself is only about 1.4x a SEQPACKET socket
        // on the 2-vCPU test machine: the goal against the peers is to be
        // ahead; the floor is the real target.
        sized(
            "frames_64k",
            frames(65536 / 8, q(1 << 11, 1 << 13)),
            vec![("fdring", |c| {
                fdring_frames(c, FRAME_RING_BYTES, FRAME_ALIGN)
            })],
            FRAMES_64K_GOALS,
        ),
    ]
}
