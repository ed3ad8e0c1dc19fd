//! `Sender<T>` and `Receiver<T>`: a ring, a mapping and a wake-up socket.
//!
//! This module owns the typed ends: the closure API, the item and slice
//! helpers, blocking with a spin-then-sleep strategy, timeouts, disconnect,
//! and the bundle of fds an end is made of. It builds on `ring` (the
//! algorithm), `memfd` (the mapping) and `signal` (wake-ups and liveness);
//! it does not know how the fds reach the other process (`handoff`).

mod builder;
mod end;
mod fds;
mod receiver;
mod sender;
mod stats;
mod untyped;

use std::time::Duration;

use bytemuck::Pod;

use crate::error::Error;

pub use builder::Builder;
pub(crate) use end::Wait;
pub use fds::Fds;
pub use receiver::{Iter, Receiver, TryIter};
pub use sender::Sender;
pub use stats::Stats;
pub use untyped::{ItemLayout, Lent, UntypedReceiver, UntypedSender};

/// How long a blocking call spins, re-checking the ring, before it sleeps
/// on its wake-up socket; see [`Builder::spin`]. About the cost of one wake-up
/// through the kernel on a virtual machine (the measurement is in
/// `docs/design.md`).
///
/// ```
/// assert_eq!(fdring::DEFAULT_SPIN, std::time::Duration::from_micros(20));
/// ```
pub const DEFAULT_SPIN: Duration = Duration::from_micros(20);

/// The largest data region, in bytes, that the `open_` calls and
/// `from_fds` accept from a peer unless [`Builder::max_capacity`] says
/// otherwise: 1 GiB.
///
/// A ring received from elsewhere is the peer's to size; this bounds what it
/// can make this end map (twice, for the mirror) and what
/// [`FrameReceiver::recv_frame`](crate::FrameReceiver::recv_frame) may
/// allocate for one frame. 1 GiB holds 32 frames of 4K RGBA video, or
/// hours of audio; a program that needs more raises it.
///
/// ```
/// assert_eq!(fdring::DEFAULT_MAX_DATA_BYTES, 1 << 30);
/// ```
pub const DEFAULT_MAX_DATA_BYTES: u64 = 1 << 30;

/// Creates a ring of at least `capacity` items in a new sealed memfd and
/// returns its two ends.
///
/// The capacity is rounded up so that the data region is a whole number of
/// pages (for `u64`, a multiple of 512); [`Sender::capacity`] tells the real
/// value. Use [`Builder`] for the other options.
///
/// The memory is committed at creation: the whole ring (a header page and
/// `capacity * size_of::<T>()` bytes) is faulted in now, so that the stream
/// never waits for a page fault (see [`Builder::capacity`]).
///
/// # Errors
///
/// `Rejected(ZeroCapacity)` for a capacity of 0, `Rejected(ZeroSizedItem)`
/// for a zero-sized `T`, `Rejected(BadCapacity)` if the ring would not fit
/// the address space, `Exhausted(Memory)` if it is larger than the memory
/// available (naming both), `Io` if the kernel refuses the memfd or the
/// mapping.
///
/// # Examples
///
/// ```
/// let (mut tx, mut rx) = fdring::channel::<u64>(1000)?;
/// assert_eq!(tx.capacity(), 1024);
/// tx.send(7)?;
/// assert_eq!(rx.recv()?, 7);
/// # Ok::<(), fdring::Error>(())
/// ```
pub fn channel<T: Pod>(capacity: usize) -> Result<(Sender<T>, Receiver<T>), Error> {
    Builder::new().capacity(capacity).build()
}
