//! The record format of the frame layer: the header's size and marker,
//! record and payload alignment, the room a record needs, the parsing and
//! checking of a header read from the ready bytes, and the errors a frame
//! that breaks the format gives. It knows nothing of waiting or of the
//! channel.

use std::io;

use super::receiver::Frame;
use crate::error::Error;
// Named in the documentation only.
#[cfg(doc)]
use super::{FrameReceiver, FrameSender};

/// Bytes of a frame header: `len` (u64), `tag` (u64), `gap` (u32) and
/// `marker` (u32).
pub(super) const HEADER: usize = 24;

/// The `marker` of every frame header: the bytes `F R M 1` in memory
/// order. A record without it is not a frame (for instance bytes written
/// through `io::Write` into a frame ring).
pub(super) const MARKER: u32 = u32::from_ne_bytes(*b"FRM1");

/// Records start at stream offsets that are multiples of this, and are a
/// multiple of it long.
pub(super) const RECORD_ALIGN: usize = 8;

/// The payload alignment of [`FrameSender::new`] and [`FrameReceiver::new`].
pub(super) const MIN_ALIGN: usize = 8;

/// The largest payload alignment: a cache line.
pub(super) const MAX_ALIGN: usize = 64;

/// `value` rounded up to a multiple of `align`, a power of two (every
/// alignment of this layer is one: `check_align`). A mask, not
/// `next_multiple_of`: with an alignment known only at run time, that is a
/// 64-bit division per frame on each side, a fifth of the time of `parse`
/// with 64-byte frames.
pub(super) fn round_up(value: usize, align: usize) -> usize {
    debug_assert!(align.is_power_of_two());
    (value + (align - 1)) & !(align - 1)
}

pub(crate) fn check_align(align: usize) {
    assert!(
        align.is_power_of_two() && (MIN_ALIGN..=MAX_ALIGN).contains(&align),
        "a frame alignment must be a power of two from {MIN_ALIGN} to {MAX_ALIGN}, not {align}"
    );
}

/// The free bytes a frame of `len` payload bytes needs wherever the write
/// position stands: the header, the most alignment padding there can be,
/// and the payload rounded to a record boundary.
pub(super) fn record_room(len: usize, align: usize) -> usize {
    HEADER + align - RECORD_ALIGN + round_up(len, RECORD_ALIGN)
}

/// What is wrong with a record that [`parse`] refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Bad {
    /// It is not a frame header at all (marker, padding, or a stream that
    /// does not stand on a record boundary).
    Header,
    /// Its header claims the record ends this many bytes in, past the bytes
    /// published.
    End(u64),
    /// A well-formed header whose payload is aligned to only `found` bytes
    /// (the largest power of two, at most [`MAX_ALIGN`], its address is a
    /// multiple of): the sender uses a smaller frame alignment.
    Align {
        /// What the payload is aligned to.
        found: u64,
    },
}

/// Parses the record at the start of `ready` (ready bytes, starting at a
/// record boundary): the frame and the record's length in bytes.
///
/// The header is copied out of shared memory once, and only the copy is
/// used, so a peer changing it meanwhile cannot make the checks and the
/// slicing disagree.
#[inline]
pub(super) fn parse(ready: &[u8], align: usize) -> Result<(Frame<'_>, usize), Bad> {
    let bad_header = Err(Bad::Header);
    if ready.as_ptr() as usize % RECORD_ALIGN != 0 {
        return bad_header;
    }
    let Some(header) = ready.get(..HEADER) else {
        // A record is published whole: a stream cut inside a header is not
        // a frame stream.
        return Err(Bad::End(HEADER as u64));
    };
    let header: [u8; HEADER] = header.try_into().expect("a header-sized slice");
    let len = u64::from_ne_bytes(header[0..8].try_into().unwrap());
    let tag = u64::from_ne_bytes(header[8..16].try_into().unwrap());
    let gap = u32::from_ne_bytes(header[16..20].try_into().unwrap()) as usize;
    let marker = u32::from_ne_bytes(header[20..24].try_into().unwrap());
    if marker != MARKER || gap % RECORD_ALIGN != 0 || gap >= MAX_ALIGN {
        return bad_header;
    }
    let payload_at = HEADER + gap;
    let payload_address = ready.as_ptr() as usize + payload_at;
    // `align` is a power of two (`check_align`): a mask, not a division.
    if payload_address & (align - 1) != 0 {
        let found = 1u64
            << payload_address
                .trailing_zeros()
                .min(MAX_ALIGN.trailing_zeros());
        return Err(Bad::Align { found });
    }
    // `payload_at < HEADER + MAX_ALIGN`: no overflow below. The length is
    // compared before anything is added to it.
    let room = ready.len().saturating_sub(payload_at) as u64;
    let claimed_end = || (payload_at as u64).saturating_add(len);
    if len > room {
        return Err(Bad::End(claimed_end()));
    }
    let len = len as usize;
    let record = round_up(payload_at + len, RECORD_ALIGN);
    if record > ready.len() {
        return Err(Bad::End(record as u64));
    }
    let frame = Frame {
        bytes: &ready[payload_at..payload_at + len],
        tag,
    };
    Ok((frame, record))
}

pub(super) fn too_large(len: usize, max: usize) -> Error {
    Error::FrameTooLarge {
        len: len as u64,
        max: max as u64,
    }
}

pub(super) fn misaligned() -> Error {
    Error::io(
        "the ring was written outside of frames: its stream does not stand on a multiple of 8",
        io::ErrorKind::InvalidInput,
    )
}
