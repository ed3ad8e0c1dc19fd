//! The topologies' socket contenders share this: `UnixStream` pairs with
//! the buffers raised, whole words read out of a byte stream, and the
//! fair queue of streams that one `mio::Poll` serves.
//!
//! It knows nothing of which case uses it, nor of fdring.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::os::unix::net::UnixStream;

use crate::Res;

/// `(mine, theirs)`: a `UnixStream` pair, `mine` non-blocking for a
/// `mio::Poll`, `theirs` blocking for a child. The send buffers are
/// raised to 1 MiB, as the pipe's and `SOCK_SEQPACKET`'s are, so that a
/// socket holds at least what an fdring ring of `CAP` items does: for a
/// Unix stream the sender's buffer is the one that bounds what is queued.
pub fn stream_pair() -> Res<(mio::net::UnixStream, UnixStream)> {
    use rustix::net::sockopt;
    let (mine, theirs) = UnixStream::pair()?;
    for end in [&mine, &theirs] {
        sockopt::set_socket_send_buffer_size(end, 1 << 20)?;
        sockopt::set_socket_recv_buffer_size(end, 1 << 20)?;
    }
    mine.set_nonblocking(true)?;
    Ok((mio::net::UnixStream::from_std(mine), theirs))
}

/// Whole `u64` words out of a byte stream: a read may end inside a word,
/// whose first bytes then wait at the front of the buffer for the rest.
pub struct Words {
    buf: Vec<u64>,
    /// Bytes in `buf`, whole words and then a partial one.
    bytes: usize,
}

impl Words {
    /// A buffer of `capacity` words (one read's worth).
    pub fn new(capacity: usize) -> Words {
        Words {
            buf: vec![0; capacity],
            bytes: 0,
        }
    }

    /// One `read` into the free part of the buffer; `Ok(0)` at the end
    /// of the stream.
    pub fn read_from(&mut self, stream: &mut impl Read) -> io::Result<usize> {
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut self.buf);
        let got = stream.read(&mut bytes[self.bytes..])?;
        self.bytes += got;
        Ok(got)
    }

    /// The whole words read so far.
    pub fn words(&self) -> &[u64] {
        &self.buf[..self.bytes / 8]
    }

    /// Drops the whole words, keeping a partial one.
    pub fn consume(&mut self) {
        let whole = self.bytes / 8 * 8;
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut self.buf);
        bytes.copy_within(whole..self.bytes, 0);
        self.bytes -= whole;
    }

    /// True if no bytes wait: a stream that ends here ended on a word.
    pub fn is_empty(&self) -> bool {
        self.bytes == 0
    }
}

/// The streams that may have work, in turn. An edge-triggered poll reports
/// a stream once per change, so a stream that moved something goes to
/// the back of the queue to be tried again, and leaves it only when it
/// would block; each gets one turn per pass, so that none waits for
/// another to be drained.
pub struct Turns {
    queue: VecDeque<usize>,
    queued: Vec<bool>,
}

impl Turns {
    /// Streams `0..n`, all queued: each may have work before any event.
    pub fn all(n: usize) -> Turns {
        Turns {
            queue: (0..n).collect(),
            queued: vec![true; n],
        }
    }

    /// Queues `i` unless it is queued already.
    pub fn push(&mut self, i: usize) {
        if !self.queued[i] {
            self.queued[i] = true;
            self.queue.push_back(i);
        }
    }

    pub fn pop(&mut self) -> Option<usize> {
        let i = self.queue.pop_front()?;
        self.queued[i] = false;
        Some(i)
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

/// `poll.poll`, again if a signal interrupted it.
pub fn poll(
    poll: &mut mio::Poll,
    events: &mut mio::Events,
    timeout: Option<std::time::Duration>,
) -> io::Result<()> {
    loop {
        match poll.poll(events, timeout) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            done => return done,
        }
    }
}
