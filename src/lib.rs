//! A single-producer single-consumer ring in a sealed memfd, with wake-ups
//! sent only when the other side really sleeps: zero-copy
//! streaming of plain-data items between processes (or threads) on Linux.
//!
//! ```
//! use std::mem::MaybeUninit;
//!
//! let (mut tx, mut rx) = fdring::channel::<u64>(4096)?;
//! // Write in place into the ring: one contiguous slice of free slots.
//! tx.try_send_with(|slots: &mut [MaybeUninit<u64>]| {
//!     for (i, slot) in slots.iter_mut().take(3).enumerate() {
//!         slot.write(i as u64);
//!     }
//!     3
//! })?;
//! // Read in place: one contiguous slice of ready items.
//! rx.try_recv_with(|items: &[u64]| {
//!     assert_eq!(items, &[0, 1, 2]);
//!     items.len()
//! })?;
//! # Ok::<(), fdring::Error>(())
//! ```
//!
//! To move an end to another process, see [`handoff`]. The on-memory
//! format is specified in `docs/format.md`, the design in `docs/design.md`.
//!
//! # Layers
//!
//! | module | owns |
//! |---|---|
//! | `layout` | the header format and its validation |
//! | `ring` | the SPSC algorithm and the armed wake-up flags |
//! | `memfd` | the sealed memfd and its mirrored mapping |
//! | `signal` | the wake-up socket and peer liveness |
//! | `channel` | [`Sender`] and [`Receiver`], and untyped ends for item layouts known only at run time ([`UntypedSender`], [`UntypedReceiver`], for the C library) |
//! | `frame` | [`FrameSender`] and [`FrameReceiver`]: variable-length frames in a byte ring, in batches ([`FrameBatch`], [`Frames`]), latest-frame-wins |
//! | [`handoff`] | moving the fds to another process |
//! | [`service`] | unrelated processes finding each other by name, with access control and typed negotiation |
//! | [`topology`] | many rings as one: fan-in ([`topology::Merge`]), fan-out and worker pools ([`topology::Dispatch`], [`topology::Pool`]), drain, and a dead worker's unread items given back |
//! | `mio`, `tokio` | event-loop adapters, cargo features of the same names: every end (items and frames), a service's listener and connections, and the topologies (one registration each) as `mio` sources, and `AsyncSender` / `AsyncReceiver` / `AsyncFrameSender` / `AsyncFrameReceiver` / `AsyncListener` / `AsyncMerge` / `AsyncDispatch` / `AsyncPool` on tokio's `AsyncFd` |

#![deny(missing_docs, missing_debug_implementations, unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]
// Under loom only the ring core is built, and the tests that use it.
#![cfg_attr(loom, allow(dead_code))]

#[cfg(not(target_os = "linux"))]
compile_error!(
    "fdring supports Linux only: it is built on memfd, file seals, Unix sockets and pidfd"
);

mod error;
mod layout;
mod ring;

#[cfg(not(loom))]
mod channel;
#[cfg(not(loom))]
mod frame;
#[cfg(not(loom))]
pub mod handoff;
#[cfg(not(loom))]
mod memfd;
#[cfg(not(loom))]
pub mod service;
#[cfg(not(loom))]
mod signal;
#[cfg(not(loom))]
pub mod topology;

#[cfg(not(loom))]
mod event_loop;
#[cfg(all(feature = "mio", not(loom)))]
pub mod mio;
#[cfg(all(feature = "tokio", not(loom)))]
pub mod tokio;

#[cfg(not(loom))]
pub use channel::{
    channel, Builder, Fds, ItemLayout, Iter, Lent, Receiver, Sender, Stats, TryIter,
    UntypedReceiver, UntypedSender, DEFAULT_MAX_DATA_BYTES, DEFAULT_SPIN,
};
pub use error::{Corruption, Error, Exhaustion, Field, Rejection, Role};
#[cfg(not(loom))]
pub use frame::{
    Frame, FrameBatch, FrameMut, FrameReceiver, FrameSender, FrameStats, Frames, LentFrame,
};
pub use layout::{MAGIC, VERSION};
#[cfg(not(loom))]
pub use signal::{poll_timeout, Liveness};
