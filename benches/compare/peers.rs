//! The peers a user would pick instead of fdring: pipes, Unix sockets and
//! eventfds through `Read` / `Write`, shmem-ipc, rtrb and
//! crossbeam-channel.

use std::error::Error;
use std::fs::File;
use std::hint::spin_loop;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use shmem_ipc::sharedring;

use crate::data::{check, fill, fill_init, pingpong_side, tx_side, Duplex, Rx, Tx};
use crate::ours::One;
use crate::process::{child, pair, Cfg, Run};
use crate::{Res, CAP, FRAME_RING, FRAME_WORDS};

/// A pipe, a `UnixStream` or an eventfd, through `Read` / `Write`: a
/// buffer of words is filled, then written; read whole, then checked.
pub struct Io(pub File, pub Vec<u64>);

impl Tx for Io {
    fn put(&mut self, first: u64, max: usize) -> Res<usize> {
        self.1.resize(max, 0);
        fill_init(&mut self.1, first);
        self.0.write_all(bytemuck::cast_slice(&self.1))?;
        Ok(max)
    }
}

impl Rx for Io {
    fn take(&mut self, first: u64, max: usize) -> Res<(usize, u64)> {
        self.1.resize(max, 0);
        self.0.read_exact(bytemuck::cast_slice_mut(&mut self.1))?;
        Ok((max, check(&self.1, first)))
    }
}

/// Reads from the first file, writes to the second.
pub struct IoPair(pub File, pub File);

impl Duplex for IoPair {
    fn send(&mut self, v: u64) -> Res<()> {
        Ok(self.1.write_all(&v.to_ne_bytes())?)
    }
    fn recv(&mut self) -> Res<u64> {
        let mut bytes = [0; 8];
        self.0.read_exact(&mut bytes)?;
        Ok(u64::from_ne_bytes(bytes))
    }
}

/// `(mine, theirs)`: a pipe's write and read ends, its buffer raised to
/// 1 MiB (the most an unprivileged process may ask) from the default 64 KiB.
pub fn pipe() -> Res<(OwnedFd, OwnedFd)> {
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    rustix::pipe::fcntl_setpipe_size(&w, 1 << 20)?;
    Ok((w, r))
}

pub fn unix() -> Res<(OwnedFd, OwnedFd)> {
    let (a, b) = UnixStream::pair()?;
    Ok((a.into(), b.into()))
}

pub fn io_stream(c: &Cfg, (mine, theirs): (OwnedFd, OwnedFd)) -> Res<Run> {
    let peer = child("io", c, vec![], vec![theirs])?;
    pair(peer, |gate| tx_side(Io(mine.into(), Vec::new()), c, gate))
}

/// `mine` and `theirs` are (read, write) pairs.
pub fn io_pingpong(c: &Cfg, mine: [OwnedFd; 2], theirs: [OwnedFd; 2]) -> Res<Run> {
    let peer = child("io-pong", c, vec![], theirs.into())?;
    let [r, w] = mine;
    pair(peer, |gate| {
        pingpong_side(IoPair(r.into(), w.into()), c, true, gate)
    })
}

/// Waits the way fdring's blocking calls do, for peers that offer only
/// "try" and "block": yield for `spin`, then block.
pub struct Patience(pub Duration, pub Option<Instant>);

impl Patience {
    pub fn wait<E: Error + Send + Sync + 'static>(
        &mut self,
        block: impl FnOnce() -> Result<shmem_ipc::ringbuf::Status, E>,
    ) -> Res<()> {
        let since = *self.1.get_or_insert_with(Instant::now);
        if since.elapsed() < self.0 {
            std::thread::yield_now();
            return Ok(());
        }
        self.1 = None;
        block()?;
        Ok(())
    }
}

/// shmem-ipc's ring of bytes, carrying whole words.
pub struct ShmTx(pub sharedring::Sender<u8>, pub Patience);
pub struct ShmRx(pub sharedring::Receiver<u8>, pub Patience);

impl Tx for ShmTx {
    fn put(&mut self, first: u64, max: usize) -> Res<usize> {
        loop {
            let mut k = 0;
            // SAFETY: this ring has one sender (this one) and one receiver,
            // both opened through shmem-ipc; the bytes are plain data.
            unsafe {
                self.0.send_trusted(|bytes| {
                    k = (bytes.len() / 8).min(max);
                    fill_init(bytemuck::cast_slice_mut(&mut bytes[..k * 8]), first);
                    k * 8
                })?
            };
            if k > 0 {
                self.1 .1 = None;
                return Ok(k);
            }
            self.1.wait(|| self.0.block_until_writable())?;
        }
    }
}

impl Rx for ShmRx {
    fn take(&mut self, first: u64, max: usize) -> Res<(usize, u64)> {
        loop {
            let mut got = (0, 0);
            // SAFETY: as for `ShmTx`.
            unsafe {
                self.0.receive_trusted(|bytes| {
                    let k = (bytes.len() / 8).min(max);
                    got = (k, check(bytemuck::cast_slice(&bytes[..k * 8]), first));
                    k * 8
                })?
            };
            if got.0 > 0 {
                self.1 .1 = None;
                return Ok(got);
            }
            self.1.wait(|| self.0.block_until_readable())?;
        }
    }
}

pub struct ShmPair(pub sharedring::Sender<u8>, pub sharedring::Receiver<u8>);

impl Duplex for ShmPair {
    fn send(&mut self, v: u64) -> Res<()> {
        // SAFETY: as for `ShmTx`. A ping-pong never fills the ring, and its
        // length is a multiple of 8, so there is room for a whole word.
        unsafe {
            self.0.send_trusted(|bytes| {
                bytes[..8].copy_from_slice(&v.to_ne_bytes());
                8
            })?
        };
        Ok(())
    }
    fn recv(&mut self) -> Res<u64> {
        loop {
            let mut got = None;
            // SAFETY: as for `ShmTx`.
            unsafe {
                self.1.receive_trusted(|bytes| {
                    got = bytes
                        .get(..8)
                        .map(|b| u64::from_ne_bytes(b.try_into().unwrap()));
                    got.map_or(0, |_| 8)
                })?
            };
            if let Some(v) = got {
                return Ok(v);
            }
            self.1.block_until_readable()?;
        }
    }
}

/// The memfd and the two eventfds of a shmem-ipc ring, for the child.
pub fn shmem_fds(
    memfd: &shmem_ipc::mem::mfd::Memfd,
    empty: &File,
    full: &File,
) -> Res<Vec<OwnedFd>> {
    [memfd.as_file(), empty, full]
        .iter()
        .map(|f| Ok(f.try_clone()?.into()))
        .collect()
}

/// (memfd, empty, full) from the child's fds, and the ring's capacity.
pub fn shmem_open(fds: &mut Vec<OwnedFd>) -> Res<(usize, File, File, File)> {
    let mut take = || -> Res<File> { Ok(File::from(fds.remove(0))) };
    let (memfd, empty, full) = (take()?, take()?, take()?);
    // shmem-ipc adds a 64-byte header and rounds up to pages.
    let capacity = memfd.metadata()?.len() as usize - 64;
    Ok((capacity, memfd, empty, full))
}

pub fn shmem_stream(c: &Cfg) -> Res<Run> {
    let capacity = if c.wpm > 1 {
        FRAME_RING * FRAME_WORDS * 8
    } else {
        CAP * 8
    };
    let tx = sharedring::Sender::<u8>::new(capacity)?;
    let fds = shmem_fds(tx.memfd(), tx.empty_signal(), tx.full_signal())?;
    let peer = child("shmem", c, vec![], fds)?;
    pair(peer, |gate| {
        tx_side(ShmTx(tx, Patience(c.spin, None)), c, gate)
    })
}

pub fn shmem_pingpong(c: &Cfg) -> Res<Run> {
    let tx = sharedring::Sender::<u8>::new(4096)?;
    let rx = sharedring::Receiver::<u8>::new(4096)?;
    let mut fds = shmem_fds(tx.memfd(), tx.empty_signal(), tx.full_signal())?;
    fds.extend(shmem_fds(rx.memfd(), rx.empty_signal(), rx.full_signal())?);
    let peer = child("shmem-pong", c, vec![], fds)?;
    pair(peer, |gate| pingpong_side(ShmPair(tx, rx), c, true, gate))
}

impl Tx for One<rtrb::Producer<u64>> {
    fn put(&mut self, first: u64, _max: usize) -> Res<usize> {
        while self.0.push(first).is_err() {
            spin_loop();
        }
        Ok(1)
    }
}

impl Rx for One<rtrb::Consumer<u64>> {
    fn take(&mut self, first: u64, _max: usize) -> Res<(usize, u64)> {
        loop {
            if let Ok(v) = self.0.pop() {
                return Ok((1, v ^ first));
            }
            spin_loop();
        }
    }
}

/// rtrb's chunks, written and read in place.
impl Tx for rtrb::Producer<u64> {
    fn put(&mut self, first: u64, max: usize) -> Res<usize> {
        let k = loop {
            match self.slots().min(max) {
                0 => spin_loop(),
                k => break k,
            }
        };
        let mut chunk = self.write_chunk_uninit(k)?;
        let (a, b) = chunk.as_mut_slices();
        let split = a.len() as u64;
        fill(a, first);
        fill(b, first + split);
        // SAFETY: every one of the chunk's `k` slots was written above.
        unsafe { chunk.commit_all() };
        Ok(k)
    }
}

impl Rx for rtrb::Consumer<u64> {
    fn take(&mut self, first: u64, max: usize) -> Res<(usize, u64)> {
        let k = loop {
            match self.slots().min(max) {
                0 => spin_loop(),
                k => break k,
            }
        };
        let chunk = self.read_chunk(k)?;
        let (a, b) = chunk.as_slices();
        let diff = check(a, first) | check(b, first + a.len() as u64);
        chunk.commit_all();
        Ok((k, diff))
    }
}

impl Tx for One<crossbeam_channel::Sender<u64>> {
    fn put(&mut self, first: u64, _max: usize) -> Res<usize> {
        loop {
            match self.0.try_send(first) {
                Err(crossbeam_channel::TrySendError::Full(_)) => spin_loop(),
                r => return r.map(|()| 1).map_err(|e| e.to_string().into()),
            }
        }
    }
}

impl Rx for One<crossbeam_channel::Receiver<u64>> {
    fn take(&mut self, first: u64, _max: usize) -> Res<(usize, u64)> {
        loop {
            match self.0.try_recv() {
                Err(crossbeam_channel::TryRecvError::Empty) => spin_loop(),
                r => return Ok((1, r? ^ first)),
            }
        }
    }
}
