//! Rings of frames: `fdring_frame_sender` and `fdring_frame_receiver`
//! over the crate's `FrameSender` and `FrameReceiver`.
//!
//! Zero-copy is through callbacks, the crate's closure API: the sender's
//! `fill` writes the payload in place in the ring and returns how many
//! bytes it wrote (and may set the tag); the receiver's `read` is lent
//! the next frame's payload in place. Every check of the frame layer
//! (record headers, lengths, alignment) stays the crate's.
//!
//! The same in two steps, for code written that way: reserve a frame in
//! the ring and commit it (`fdring_frame_reserve`, `fdring_frame_commit`),
//! receive the next frame in place and release it (`fdring_frame_recv`,
//! `fdring_frame_release`): the crate's `FrameSender::try_reserve_frame`
//! and `FrameReceiver::try_recv_frame_in_place`, zero copy too.

use std::ffi::c_void;
use std::os::fd::{AsFd, AsRawFd};
use std::panic::resume_unwind;

use fdring::{FrameMut, FrameReceiver, FrameSender};

use crate::error::{fdring_error, guard, guard_value, invalid, Failure};
use crate::fdring_options;
use crate::fds::{builder, fdring_fds, put};
use crate::items::{handle, Wait};

/// The sending end of a ring of frames. One thread at a time; freed by
/// `fdring_frame_sender_free`.
#[derive(Debug)]
pub struct fdring_frame_sender {
    inner: FrameSender,
}

/// The receiving end of a ring of frames. One thread at a time; freed by
/// `fdring_frame_receiver_free`.
#[derive(Debug)]
pub struct fdring_frame_receiver {
    inner: FrameReceiver,
}

/// Writes a frame's payload in place: `payload` has room for `len` bytes
/// (whatever bytes were there); write them, optionally set `*tag` (0 by
/// default), and return how many bytes the frame holds (at most `len`).
/// It must not call fdring on the same handle, nor unwind or `longjmp`.
#[allow(non_camel_case_types)]
pub type fdring_frame_fill = Option<
    unsafe extern "C" fn(ctx: *mut c_void, payload: *mut u8, len: usize, tag: *mut u64) -> usize,
>;

/// Reads a frame's payload in place: `len` bytes at `payload`, lent until
/// the callback returns (the frame is released then), and its tag. The
/// bytes are the sender's, which may be hostile: check what you read. It
/// must not call fdring on the same handle, nor unwind or `longjmp`.
#[allow(non_camel_case_types)]
pub type fdring_frame_read =
    Option<unsafe extern "C" fn(ctx: *mut c_void, payload: *const u8, len: usize, tag: u64)>;

/// A frame end's counters.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
#[allow(non_camel_case_types)]
pub struct fdring_frame_stats {
    /// Frames sent (sender) or lent (receiver).
    pub frames: u64,
    /// Payload bytes of those frames.
    pub bytes: u64,
    /// Wake-ups this end sent its peer.
    pub wakeups: u64,
    /// Times this end slept.
    pub sleeps: u64,
}

impl From<fdring::FrameStats> for fdring_frame_stats {
    fn from(stats: fdring::FrameStats) -> fdring_frame_stats {
        fdring_frame_stats {
            frames: stats.frames,
            bytes: stats.bytes,
            wakeups: stats.ring.wakeups,
            sleeps: stats.ring.sleeps,
        }
    }
}

/// The least frame alignment (the crate's default): a record header's.
const MIN_ALIGN: usize = 8;

/// A fill callback said it wrote more than the frame's length: unwound
/// (before anything is published) to the boundary, which reports it as an
/// invalid argument.
#[derive(Debug)]
pub(crate) struct CallbackOverrun {
    pub(crate) returned: usize,
    pub(crate) len: usize,
}

/// The payload alignment both ends must agree on: 0 is the default (8);
/// otherwise a power of two from 8 to 64.
pub(crate) fn frame_align(align: usize) -> Result<usize, Failure> {
    let align = if align == 0 { MIN_ALIGN } else { align };
    if align.is_power_of_two() && (MIN_ALIGN..=FrameSender::MAX_ALIGN).contains(&align) {
        Ok(align)
    } else {
        Err(invalid(format!(
            "a frame alignment must be 0 or a power of two from {} to {}, not {align}",
            MIN_ALIGN,
            FrameSender::MAX_ALIGN
        )))
    }
}

/// Creates a ring of at least `options->capacity` bytes for frames whose
/// payloads start on multiples of `align` bytes (0 for the default, 8;
/// else a power of two up to 64), and returns its two ends.
///
/// Errors: as for `fdring_channel`; `FDRING_INVALID_ARGUMENT` for a bad
/// alignment.
///
/// # Safety
///
/// `options` is NULL or valid; `tx` and `rx` point to writable pointers.
#[no_mangle]
pub unsafe extern "C" fn fdring_frame_channel(
    options: *const fdring_options,
    align: usize,
    tx: *mut *mut fdring_frame_sender,
    rx: *mut *mut fdring_frame_receiver,
) -> fdring_error {
    guard(|| {
        if tx.is_null() || rx.is_null() {
            return Err(invalid("a NULL out-pointer"));
        }
        let align = frame_align(align)?;
        // SAFETY: the caller's contract.
        let (sender, receiver) = unsafe { builder(options, false) }.build::<u8>()?;
        let sender = FrameSender::with_align(sender, align);
        let receiver = FrameReceiver::with_align(receiver, align);
        // SAFETY: non-NULL, writable by the caller's contract.
        unsafe {
            tx.write(fdring_frame_sender::boxed(sender));
            rx.write(fdring_frame_receiver::boxed(receiver));
        }
        Ok(())
    })
}

/// Opens the sending end of a frame ring from received fds (taken whether
/// this succeeds or not); `align` must be the creator's. Every check of
/// `fdring_sender_from_fds` is made (a byte ring: size 1, alignment 1).
///
/// # Safety
///
/// As for `fdring_sender_from_fds`.
#[no_mangle]
pub unsafe extern "C" fn fdring_frame_sender_from_fds(
    fds: fdring_fds,
    options: *const fdring_options,
    align: usize,
    tx: *mut *mut fdring_frame_sender,
) -> fdring_error {
    guard(|| {
        // SAFETY: the caller's contract.
        let fds = unsafe { fds.into_rust()? };
        let align = frame_align(align)?;
        // SAFETY: the caller's contract.
        let sender = unsafe { builder(options, true) }.open_sender::<u8>(fds)?;
        let sender = FrameSender::with_align(sender, align);
        // SAFETY: the caller's contract.
        unsafe { put(tx, fdring_frame_sender::boxed(sender)) }
    })
}

/// Opens the receiving end of a frame ring from received fds; as
/// `fdring_frame_sender_from_fds`.
///
/// # Safety
///
/// As for `fdring_sender_from_fds`.
#[no_mangle]
pub unsafe extern "C" fn fdring_frame_receiver_from_fds(
    fds: fdring_fds,
    options: *const fdring_options,
    align: usize,
    rx: *mut *mut fdring_frame_receiver,
) -> fdring_error {
    guard(|| {
        // SAFETY: the caller's contract.
        let fds = unsafe { fds.into_rust()? };
        let align = frame_align(align)?;
        // SAFETY: the caller's contract.
        let receiver = unsafe { builder(options, true) }.open_receiver::<u8>(fds)?;
        let receiver = FrameReceiver::with_align(receiver, align);
        // SAFETY: the caller's contract.
        unsafe { put(rx, fdring_frame_receiver::boxed(receiver)) }
    })
}

/// Gives up the frame sender as fds; the handle is freed either way.
///
/// # Safety
///
/// `tx` is a live handle, not used again; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn fdring_frame_sender_into_fds(
    tx: *mut fdring_frame_sender,
    out: *mut fdring_fds,
) -> fdring_error {
    guard(|| {
        if tx.is_null() {
            return Err(invalid("a NULL handle"));
        }
        // SAFETY: a live handle made by `Box::into_raw`, given up here.
        let tx = unsafe { Box::from_raw(tx) };
        let fds = tx.inner.into_fds()?;
        // SAFETY: the caller's contract.
        unsafe { put(out, fdring_fds::from_rust(fds)) }
    })
}

/// Gives up the frame receiver as fds; the handle is freed either way.
///
/// # Safety
///
/// `rx` is a live handle, not used again; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn fdring_frame_receiver_into_fds(
    rx: *mut fdring_frame_receiver,
    out: *mut fdring_fds,
) -> fdring_error {
    guard(|| {
        if rx.is_null() {
            return Err(invalid("a NULL handle"));
        }
        // SAFETY: a live handle made by `Box::into_raw`, given up here.
        let rx = unsafe { Box::from_raw(rx) };
        let fds = rx.inner.into_fds()?;
        // SAFETY: the caller's contract.
        unsafe { put(out, fdring_fds::from_rust(fds)) }
    })
}

/// Frees the frame sender (closing its end). NULL is a no-op.
///
/// # Safety
///
/// `tx` is NULL or a live handle, not used again.
#[no_mangle]
pub unsafe extern "C" fn fdring_frame_sender_free(tx: *mut fdring_frame_sender) {
    if !tx.is_null() {
        guard(|| {
            // SAFETY: a live handle made by `Box::into_raw`, given up here.
            drop(unsafe { Box::from_raw(tx) });
            Ok(())
        });
    }
}

/// Frees the frame receiver (closing its end). NULL is a no-op.
///
/// # Safety
///
/// `rx` is NULL or a live handle, not used again.
#[no_mangle]
pub unsafe extern "C" fn fdring_frame_receiver_free(rx: *mut fdring_frame_receiver) {
    if !rx.is_null() {
        guard(|| {
            // SAFETY: a live handle made by `Box::into_raw`, given up here.
            drop(unsafe { Box::from_raw(rx) });
            Ok(())
        });
    }
}

/// The body of the in-place sends.
///
/// # Safety
///
/// `tx` a live handle; `fill` a valid callback for `ctx`; `committed` NULL
/// or writable.
unsafe fn send_with(
    tx: *mut fdring_frame_sender,
    len: usize,
    fill: fdring_frame_fill,
    ctx: *mut c_void,
    wait: Wait,
    committed: *mut usize,
) -> fdring_error {
    guard(|| {
        // SAFETY: the caller's contract.
        let tx = unsafe { handle(tx)? };
        let fill = fill.ok_or_else(|| invalid("a NULL fill callback"))?;
        let write = |frame: &mut FrameMut<'_>| {
            let mut tag = 0u64;
            let bytes = frame.bytes_mut();
            // SAFETY: `bytes` is the frame's payload, `len` writable bytes
            // in the ring lent to this end; the callback writes at most
            // `len` of them (its contract) and must not re-enter.
            let wrote = unsafe { fill(ctx, bytes.as_mut_ptr(), bytes.len(), &mut tag) };
            if wrote > bytes.len() {
                // Nothing is published: the frame layer commits after the
                // closure returns, and this unwinds before.
                resume_unwind(Box::new(CallbackOverrun {
                    returned: wrote,
                    len: bytes.len(),
                }));
            }
            frame.set_tag(tag);
            wrote
        };
        let sent = match wait {
            Wait::Never => tx.inner.try_send_frame_with(len, write),
            Wait::Forever => tx.inner.send_frame_with(len, write),
            Wait::For(timeout) => tx.inner.send_frame_with_timeout(len, timeout, write),
        }?;
        if !committed.is_null() {
            // SAFETY: non-NULL, writable by the caller's contract.
            unsafe { committed.write(sent) };
        }
        Ok(())
    })
}

/// Sends one frame of up to `len` payload bytes written in place by
/// `fill(ctx, payload, len, &tag)`, if there is room now; `*committed`
/// (if not NULL) is the length `fill` returned.
///
/// Errors: `FDRING_FULL`, `FDRING_FRAME_TOO_LARGE` (see
/// `fdring_frame_max_len`), `FDRING_DISCONNECTED`, `FDRING_CORRUPTED`,
/// `FDRING_INVALID_ARGUMENT` if `fill` returned more than `len` (nothing
/// is sent).
///
/// # Safety
///
/// `tx` is a live handle; `fill` is valid for `ctx`; `committed` is NULL
/// or writable.
#[no_mangle]
pub unsafe extern "C" fn fdring_frame_try_send_with(
    tx: *mut fdring_frame_sender,
    len: usize,
    fill: fdring_frame_fill,
    ctx: *mut c_void,
    committed: *mut usize,
) -> fdring_error {
    // SAFETY: the caller's contract.
    unsafe { send_with(tx, len, fill, ctx, Wait::Never, committed) }
}

/// As `fdring_frame_try_send_with`, waiting for room for the frame.
///
/// # Safety
///
/// As for `fdring_frame_try_send_with`.
#[no_mangle]
pub unsafe extern "C" fn fdring_frame_send_with(
    tx: *mut fdring_frame_sender,
    len: usize,
    fill: fdring_frame_fill,
    ctx: *mut c_void,
    committed: *mut usize,
) -> fdring_error {
    // SAFETY: the caller's contract.
    unsafe { send_with(tx, len, fill, ctx, Wait::Forever, committed) }
}

/// As `fdring_frame_send_with`, giving up with `FDRING_TIMEOUT` after
/// `timeout_ns` nanoseconds.
///
/// # Safety
///
/// As for `fdring_frame_try_send_with`.
#[no_mangle]
pub unsafe extern "C" fn fdring_frame_send_with_timeout(
    tx: *mut fdring_frame_sender,
    len: usize,
    timeout_ns: u64,
    fill: fdring_frame_fill,
    ctx: *mut c_void,
    committed: *mut usize,
) -> fdring_error {
    // SAFETY: the caller's contract.
    unsafe { send_with(tx, len, fill, ctx, Wait::nanos(timeout_ns), committed) }
}

/// The body of the copying sends.
///
/// # Safety
///
/// `tx` a live handle; `bytes` readable for `len` bytes.
unsafe fn send_copy(
    tx: *mut fdring_frame_sender,
    tag: u64,
    bytes: *const u8,
    len: usize,
    wait: Wait,
) -> fdring_error {
    guard(|| {
        // SAFETY: the caller's contract.
        let tx = unsafe { handle(tx)? };
        let bytes = if len == 0 {
            &[][..]
        } else if bytes.is_null() {
            return Err(invalid("a NULL frame"));
        } else {
            // SAFETY: readable for `len` bytes, by the caller's contract.
            unsafe { std::slice::from_raw_parts(bytes, len) }
        };
        match wait {
            Wait::Never => tx.inner.try_send_frame(tag, bytes),
            Wait::Forever => tx.inner.send_frame(tag, bytes),
            Wait::For(timeout) => tx.inner.send_frame_timeout(tag, bytes, timeout),
        }?;
        Ok(())
    })
}

/// Copies `len` bytes at `bytes` into the ring as one frame tagged `tag`,
/// if there is room now. Errors as for `fdring_frame_try_send_with`.
///
/// # Safety
///
/// `tx` is a live handle; `bytes` is readable for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn fdring_frame_try_send(
    tx: *mut fdring_frame_sender,
    tag: u64,
    bytes: *const u8,
    len: usize,
) -> fdring_error {
    // SAFETY: the caller's contract.
    unsafe { send_copy(tx, tag, bytes, len, Wait::Never) }
}

/// As `fdring_frame_try_send`, waiting for room.
///
/// # Safety
///
/// As for `fdring_frame_try_send`.
#[no_mangle]
pub unsafe extern "C" fn fdring_frame_send(
    tx: *mut fdring_frame_sender,
    tag: u64,
    bytes: *const u8,
    len: usize,
) -> fdring_error {
    // SAFETY: the caller's contract.
    unsafe { send_copy(tx, tag, bytes, len, Wait::Forever) }
}

/// As `fdring_frame_send`, giving up with `FDRING_TIMEOUT` after
/// `timeout_ns` nanoseconds.
///
/// # Safety
///
/// As for `fdring_frame_try_send`.
#[no_mangle]
pub unsafe extern "C" fn fdring_frame_send_timeout(
    tx: *mut fdring_frame_sender,
    tag: u64,
    bytes: *const u8,
    len: usize,
    timeout_ns: u64,
) -> fdring_error {
    // SAFETY: the caller's contract.
    unsafe { send_copy(tx, tag, bytes, len, Wait::nanos(timeout_ns)) }
}

/// The body of the in-place receives.
///
/// # Safety
///
/// `rx` a live handle; `read` valid for `ctx`.
unsafe fn recv_with(
    rx: *mut fdring_frame_receiver,
    read: fdring_frame_read,
    ctx: *mut c_void,
    wait: Wait,
) -> fdring_error {
    guard(|| {
        // SAFETY: the caller's contract.
        let rx = unsafe { handle(rx)? };
        let read = read.ok_or_else(|| invalid("a NULL read callback"))?;
        let consume = |frame: fdring::Frame<'_>| {
            let bytes = frame.bytes();
            // SAFETY: the payload was checked by the frame layer to lie
            // within the bytes published; it is lent until the callback
            // returns, which must not re-enter (its contract).
            unsafe { read(ctx, bytes.as_ptr(), bytes.len(), frame.tag()) }
        };
        match wait {
            Wait::Never => rx.inner.try_recv_frame_with(consume),
            Wait::Forever => rx.inner.recv_frame_with(consume),
            Wait::For(timeout) => rx.inner.recv_frame_with_timeout(timeout, consume),
        }?;
        Ok(())
    })
}

/// Lends the next frame, if one is ready, to `read(ctx, payload, len,
/// tag)` in place, then releases it.
///
/// Errors: `FDRING_EMPTY`, `FDRING_DISCONNECTED` (the sender is gone and
/// every frame was taken), `FDRING_CORRUPTED` (a bad record header: a
/// hostile length never becomes an out-of-bounds payload),
/// `FDRING_FRAME_ALIGN`.
///
/// # Safety
///
/// `rx` is a live handle; `read` is valid for `ctx`.
#[no_mangle]
pub unsafe extern "C" fn fdring_frame_try_recv_with(
    rx: *mut fdring_frame_receiver,
    read: fdring_frame_read,
    ctx: *mut c_void,
) -> fdring_error {
    // SAFETY: the caller's contract.
    unsafe { recv_with(rx, read, ctx, Wait::Never) }
}

/// As `fdring_frame_try_recv_with`, waiting for a frame.
///
/// # Safety
///
/// As for `fdring_frame_try_recv_with`.
#[no_mangle]
pub unsafe extern "C" fn fdring_frame_recv_with(
    rx: *mut fdring_frame_receiver,
    read: fdring_frame_read,
    ctx: *mut c_void,
) -> fdring_error {
    // SAFETY: the caller's contract.
    unsafe { recv_with(rx, read, ctx, Wait::Forever) }
}

/// As `fdring_frame_recv_with`, giving up with `FDRING_TIMEOUT` after
/// `timeout_ns` nanoseconds.
///
/// # Safety
///
/// As for `fdring_frame_try_recv_with`.
#[no_mangle]
pub unsafe extern "C" fn fdring_frame_recv_with_timeout(
    rx: *mut fdring_frame_receiver,
    timeout_ns: u64,
    read: fdring_frame_read,
    ctx: *mut c_void,
) -> fdring_error {
    // SAFETY: the caller's contract.
    unsafe { recv_with(rx, read, ctx, Wait::nanos(timeout_ns)) }
}

/// The largest frame this sender's ring can ever hold, in bytes.
///
/// # Safety
///
/// `tx` is NULL (0) or a live handle.
#[no_mangle]
pub unsafe extern "C" fn fdring_frame_max_len(tx: *const fdring_frame_sender) -> usize {
    // SAFETY: the caller's contract.
    unsafe { tx.as_ref() }.map_or(0, |tx| tx.inner.max_frame_len())
}

/// The fd to poll; see `fdring_sender_fd`.
///
/// # Safety
///
/// `tx` is NULL (-1) or a live handle.
#[no_mangle]
pub unsafe extern "C" fn fdring_frame_sender_fd(tx: *const fdring_frame_sender) -> i32 {
    // SAFETY: the caller's contract.
    unsafe { tx.as_ref() }.map_or(-1, |tx| tx.inner.as_fd().as_raw_fd())
}

/// The fd to poll; see `fdring_receiver_fd`.
///
/// # Safety
///
/// `rx` is NULL (-1) or a live handle.
#[no_mangle]
pub unsafe extern "C" fn fdring_frame_receiver_fd(rx: *const fdring_frame_receiver) -> i32 {
    // SAFETY: the caller's contract.
    unsafe { rx.as_ref() }.map_or(-1, |rx| rx.inner.as_fd().as_raw_fd())
}

/// Prepares to wait for room for a frame of `len` bytes; see
/// `fdring_sender_prepare_wait`.
///
/// # Safety
///
/// `tx` is a live handle; `may_wait` is writable.
#[no_mangle]
pub unsafe extern "C" fn fdring_frame_sender_prepare_wait(
    tx: *mut fdring_frame_sender,
    len: usize,
    may_wait: *mut bool,
) -> fdring_error {
    guard(|| {
        // SAFETY: the caller's contract.
        let tx = unsafe { handle(tx)? };
        let answer = tx.inner.prepare_wait(len)?;
        // SAFETY: the caller's contract.
        unsafe { put(may_wait, answer) }
    })
}

/// Prepares to wait for a frame; see `fdring_receiver_prepare_wait`.
///
/// # Safety
///
/// `rx` is a live handle; `may_wait` is writable.
#[no_mangle]
pub unsafe extern "C" fn fdring_frame_receiver_prepare_wait(
    rx: *mut fdring_frame_receiver,
    may_wait: *mut bool,
) -> fdring_error {
    guard(|| {
        // SAFETY: the caller's contract.
        let rx = unsafe { handle(rx)? };
        let answer = rx.inner.prepare_wait()?;
        // SAFETY: the caller's contract.
        unsafe { put(may_wait, answer) }
    })
}

/// Ends the frame stream without freeing the handle.
///
/// # Safety
///
/// `tx` is a live handle.
#[no_mangle]
pub unsafe extern "C" fn fdring_frame_sender_close(tx: *mut fdring_frame_sender) -> fdring_error {
    guard(|| {
        // SAFETY: the caller's contract.
        unsafe { handle(tx)? }.inner.close();
        Ok(())
    })
}

/// Whether the receiver is gone.
///
/// # Safety
///
/// `tx` is a live handle.
#[no_mangle]
pub unsafe extern "C" fn fdring_frame_sender_is_abandoned(tx: *const fdring_frame_sender) -> bool {
    guard_value(false, || {
        // SAFETY: the caller's contract.
        let tx = unsafe { tx.as_ref() }.ok_or_else(|| invalid("a NULL handle"))?;
        Ok(tx.inner.is_abandoned())
    })
}

/// Whether the sender is gone.
///
/// # Safety
///
/// `rx` is a live handle.
#[no_mangle]
pub unsafe extern "C" fn fdring_frame_receiver_is_abandoned(
    rx: *const fdring_frame_receiver,
) -> bool {
    guard_value(false, || {
        // SAFETY: the caller's contract.
        let rx = unsafe { rx.as_ref() }.ok_or_else(|| invalid("a NULL handle"))?;
        Ok(rx.inner.is_abandoned())
    })
}

/// The frame sender's counters.
///
/// # Safety
///
/// `tx` is a live handle; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn fdring_frame_sender_stats(
    tx: *const fdring_frame_sender,
    out: *mut fdring_frame_stats,
) -> fdring_error {
    guard(|| {
        // SAFETY: the caller's contract.
        let tx = unsafe { tx.as_ref() }.ok_or_else(|| invalid("a NULL handle"))?;
        // SAFETY: the caller's contract.
        unsafe { put(out, tx.inner.stats().into()) }
    })
}

/// The frame receiver's counters.
///
/// # Safety
///
/// `rx` is a live handle; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn fdring_frame_receiver_stats(
    rx: *const fdring_frame_receiver,
    out: *mut fdring_frame_stats,
) -> fdring_error {
    guard(|| {
        // SAFETY: the caller's contract.
        let rx = unsafe { rx.as_ref() }.ok_or_else(|| invalid("a NULL handle"))?;
        // SAFETY: the caller's contract.
        unsafe { put(out, rx.inner.stats().into()) }
    })
}

impl fdring_frame_sender {
    pub(crate) fn boxed(inner: FrameSender) -> *mut fdring_frame_sender {
        Box::into_raw(Box::new(fdring_frame_sender { inner }))
    }
}

impl fdring_frame_receiver {
    pub(crate) fn boxed(inner: FrameReceiver) -> *mut fdring_frame_receiver {
        Box::into_raw(Box::new(fdring_frame_receiver { inner }))
    }
}

/// The body of the reserves.
///
/// # Safety
///
/// `tx` a live handle; `payload` writable (NULL refused).
unsafe fn reserve(
    tx: *mut fdring_frame_sender,
    len: usize,
    payload: *mut *mut u8,
    wait: Wait,
) -> fdring_error {
    guard(|| {
        // SAFETY: the caller's contract.
        let tx = unsafe { handle(tx)? };
        if payload.is_null() {
            return Err(invalid("a NULL out-pointer"));
        }
        let lent = match wait {
            Wait::Never => tx.inner.try_reserve_frame(len),
            Wait::Forever => tx.inner.reserve_frame(len),
            Wait::For(timeout) => tx.inner.reserve_frame_timeout(len, timeout),
        }?;
        // SAFETY: checked non-NULL; writable by the caller's contract.
        unsafe { payload.write(lent.ptr) };
        Ok(())
    })
}

/// Reserves a frame of `len` payload bytes in the ring, if there is room
/// now: `*payload` is where to write them, in place (aligned to the
/// ring's frame alignment; whatever bytes were there). Then
/// `fdring_frame_commit` publishes the frame. The reservation (and the
/// pointer) is dropped, with nothing published, by any other send on this
/// handle, a new reserve, or a close.
///
/// Errors: `FDRING_FULL`, `FDRING_FRAME_TOO_LARGE` (see
/// `fdring_frame_max_len`), `FDRING_DISCONNECTED`, `FDRING_CORRUPTED`.
///
/// # Safety
///
/// `tx` is a live handle; `payload` is writable.
#[no_mangle]
pub unsafe extern "C" fn fdring_frame_try_reserve(
    tx: *mut fdring_frame_sender,
    len: usize,
    payload: *mut *mut u8,
) -> fdring_error {
    // SAFETY: the caller's contract.
    unsafe { reserve(tx, len, payload, Wait::Never) }
}

/// As `fdring_frame_try_reserve`, waiting until the frame fits.
///
/// # Safety
///
/// As for `fdring_frame_try_reserve`.
#[no_mangle]
pub unsafe extern "C" fn fdring_frame_reserve(
    tx: *mut fdring_frame_sender,
    len: usize,
    payload: *mut *mut u8,
) -> fdring_error {
    // SAFETY: the caller's contract.
    unsafe { reserve(tx, len, payload, Wait::Forever) }
}

/// As `fdring_frame_reserve`, giving up with `FDRING_TIMEOUT` after
/// `timeout_ns` nanoseconds.
///
/// # Safety
///
/// As for `fdring_frame_try_reserve`.
#[no_mangle]
pub unsafe extern "C" fn fdring_frame_reserve_timeout(
    tx: *mut fdring_frame_sender,
    len: usize,
    timeout_ns: u64,
    payload: *mut *mut u8,
) -> fdring_error {
    // SAFETY: the caller's contract.
    unsafe { reserve(tx, len, payload, Wait::nanos(timeout_ns)) }
}

/// Publishes the reserved frame with its first `len` payload bytes (at
/// most the reserved length) and `tag`, waking the receiver if it sleeps.
/// Never waits: the room was taken at the reserve.
///
/// Errors: `FDRING_OVER_COMMIT` if no frame is reserved (or it was
/// dropped) or `len` is more than was reserved.
///
/// # Safety
///
/// `tx` is a live handle.
#[no_mangle]
pub unsafe extern "C" fn fdring_frame_commit(
    tx: *mut fdring_frame_sender,
    len: usize,
    tag: u64,
) -> fdring_error {
    guard(|| {
        // SAFETY: the caller's contract.
        let tx = unsafe { handle(tx)? };
        Ok(tx.inner.commit_frame(len, tag)?)
    })
}

/// The body of the in-place receives.
///
/// # Safety
///
/// `rx` a live handle; the out-pointers writable (NULL refused).
unsafe fn recv_in_place(
    rx: *mut fdring_frame_receiver,
    payload: *mut *const u8,
    len: *mut usize,
    tag: *mut u64,
    wait: Wait,
) -> fdring_error {
    guard(|| {
        // SAFETY: the caller's contract.
        let rx = unsafe { handle(rx)? };
        if payload.is_null() || len.is_null() || tag.is_null() {
            return Err(invalid("a NULL out-pointer"));
        }
        let frame = match wait {
            Wait::Never => rx.inner.try_recv_frame_in_place(),
            Wait::Forever => rx.inner.recv_frame_in_place(),
            Wait::For(timeout) => rx.inner.recv_frame_in_place_timeout(timeout),
        }?;
        // SAFETY: checked non-NULL; writable by the caller's contract.
        unsafe {
            payload.write(frame.ptr);
            len.write(frame.len);
            tag.write(frame.tag);
        }
        Ok(())
    })
}

/// Lends the next frame in place, if one is ready: `*payload` and `*len`
/// are its bytes in the ring, `*tag` its tag, until
/// `fdring_frame_release` (or any other receive on this handle, which
/// drops it unreleased: it is lent again). The record was checked before
/// anything was lent; the bytes are the sender's, which may be hostile.
///
/// Errors: as for `fdring_frame_try_recv_with`.
///
/// # Safety
///
/// `rx` is a live handle; `payload`, `len` and `tag` are writable.
#[no_mangle]
pub unsafe extern "C" fn fdring_frame_try_recv(
    rx: *mut fdring_frame_receiver,
    payload: *mut *const u8,
    len: *mut usize,
    tag: *mut u64,
) -> fdring_error {
    // SAFETY: the caller's contract.
    unsafe { recv_in_place(rx, payload, len, tag, Wait::Never) }
}

/// As `fdring_frame_try_recv`, waiting for a frame.
///
/// # Safety
///
/// As for `fdring_frame_try_recv`.
#[no_mangle]
pub unsafe extern "C" fn fdring_frame_recv(
    rx: *mut fdring_frame_receiver,
    payload: *mut *const u8,
    len: *mut usize,
    tag: *mut u64,
) -> fdring_error {
    // SAFETY: the caller's contract.
    unsafe { recv_in_place(rx, payload, len, tag, Wait::Forever) }
}

/// As `fdring_frame_recv`, giving up with `FDRING_TIMEOUT` after
/// `timeout_ns` nanoseconds.
///
/// # Safety
///
/// As for `fdring_frame_try_recv`.
#[no_mangle]
pub unsafe extern "C" fn fdring_frame_recv_timeout(
    rx: *mut fdring_frame_receiver,
    timeout_ns: u64,
    payload: *mut *const u8,
    len: *mut usize,
    tag: *mut u64,
) -> fdring_error {
    // SAFETY: the caller's contract.
    unsafe { recv_in_place(rx, payload, len, tag, Wait::nanos(timeout_ns)) }
}

/// Releases the frame lent by `fdring_frame_recv`, giving its bytes back
/// to the sender; its pointer is invalid from now on.
///
/// Errors: `FDRING_OVER_COMMIT` if no frame is lent.
///
/// # Safety
///
/// `rx` is a live handle.
#[no_mangle]
pub unsafe extern "C" fn fdring_frame_release(rx: *mut fdring_frame_receiver) -> fdring_error {
    guard(|| {
        // SAFETY: the caller's contract.
        let rx = unsafe { handle(rx)? };
        Ok(rx.inner.release_frame()?)
    })
}
