//! Frames: variable-length messages written and read in place in a ring
//! of bytes, for audio periods and video frames.
//!
//! This module owns the frame layer: [`FrameSender`] and [`FrameReceiver`]
//! over a [`Sender<u8>`] and a [`Receiver<u8>`], the frame header and its
//! validation, payload alignment, and latest-frame-wins. It builds on the
//! closure API of `channel` (every free byte, or every ready byte, is
//! lent as one contiguous slice thanks to the mirrored mapping, so a frame
//! never breaks at the wrap), and for the two-step calls
//! ([`FrameSender::try_reserve_frame`] and
//! [`FrameReceiver::try_recv_frame_in_place`], for callers that cannot
//! pass a closure) on the same lending split in two; it knows nothing of
//! indices, mappings or wake-up sockets.
//!
//! # The records
//!
//! Each frame is one *record* in the byte stream (normative in
//! `docs/format.md`, section 8): a 24-byte header (`len: u64`, `tag: u64`,
//! `gap: u32`, `marker: u32`, native byte order), `gap` bytes of padding
//! so that the payload starts on the sender's alignment, the `len` payload
//! bytes, and padding up to a multiple of 8 bytes. Records start at stream
//! offsets that are multiples of 8, and the sender publishes each record
//! with a single publish, so whenever a byte is ready a whole record is.
//! The receiver copies each header out of shared memory once and checks it
//! (marker, gap, alignment, and that the record lies within the bytes
//! published) before it lends a byte of the payload: a hostile length is
//! `Error::Corrupted`, never an out-of-bounds slice.
//!
//! # Batches
//!
//! Small frames can be sent and received many at a time: the sender
//! [writes several](FrameSender::send_frames_with) into the free bytes
//! ([`FrameBatch`]) and publishes them with one store; the receiver is
//! [lent every ready frame](FrameReceiver::recv_frames_with) ([`Frames`])
//! and releases those it consumed with one store. The records are the
//! same, each checked as a lone frame's; either end may batch or not
//! whatever the other does.
//!
//! # Latest-frame-wins
//!
//! For video, where a fresh frame matters more than every frame, the sender
//! [offers](FrameSender::offer_frame_with) frames (never waiting: a frame
//! that does not fit now is dropped and counted) and the receiver asks for
//! the [latest](FrameReceiver::recv_latest_with) (it releases every older
//! frame unread and lends the newest). What that guarantees is stated on
//! [`FrameReceiver::recv_latest_with`].

mod receiver;
mod record;
mod sender;

pub use receiver::{Frame, FrameReceiver, Frames, LentFrame};
pub use sender::{FrameBatch, FrameMut, FrameSender};
// The alignment rule, for the `service` negotiation of frame rings.
pub(crate) use record::check_align;

use crate::channel::Stats;
// Named in the documentation only.
#[cfg(doc)]
use crate::channel::{Receiver, Sender};

/// Counters kept by a frame end, next to its ring's [`Stats`].
///
/// ```
/// let (tx, rx) = fdring::channel::<u8>(4096)?;
/// let (mut tx, mut rx) = (fdring::FrameSender::new(tx), fdring::FrameReceiver::new(rx));
/// tx.send_frame(7, b"hello")?;
/// rx.recv_frame_with(|frame| assert_eq!(&frame[..], b"hello"))?;
/// assert_eq!((tx.stats().frames, tx.stats().bytes), (1, 5));
/// assert_eq!((rx.stats().frames, rx.stats().bytes), (1, 5));
/// # Ok::<(), fdring::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FrameStats {
    /// Frames committed (sender) or lent to a closure (receiver).
    pub frames: u64,
    /// Payload bytes of those frames.
    pub bytes: u64,
    /// Sender only: frames [`offer_frame_with`](FrameSender::offer_frame_with)
    /// dropped because they did not fit.
    pub dropped: u64,
    /// Receiver only: frames the `recv_latest` calls released without
    /// lending them.
    pub skipped: u64,
    /// The ring's counters (wake-ups sent, sleeps).
    pub ring: Stats,
}
