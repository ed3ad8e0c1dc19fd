//! Rings of items: `fdring_sender` and `fdring_receiver` over the crate's
//! untyped ends, with the item size and alignment given at run time.
//!
//! The zero-copy path is reserve / commit: a reserve lends slots in the
//! ring itself (`*ptr`, `*n`), the caller writes (reads) up to `*n` items
//! there and commits (releases) how many it used. The copy helpers
//! (`fdring_send`, `fdring_recv`, ...) are built on it.

use std::ffi::{c_int, c_void};
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use fdring::{Error, ItemLayout, Lent, UntypedReceiver, UntypedSender};

use crate::error::{fdring_error, guard, guard_value, invalid, Failure};
use crate::fdring_options;
use crate::fds::{builder, fdring_fds, put};

/// The sending end of a ring of items. One thread at a time; freed by
/// `fdring_sender_free` (or given up by `fdring_sender_into_fds`).
#[derive(Debug)]
pub struct fdring_sender {
    inner: UntypedSender,
}

/// The receiving end of a ring of items. One thread at a time; freed by
/// `fdring_receiver_free` (or given up by `fdring_receiver_into_fds`).
#[derive(Debug)]
pub struct fdring_receiver {
    inner: UntypedReceiver,
}

/// An end's counters.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
#[allow(non_camel_case_types)]
pub struct fdring_stats {
    /// Wake-ups this end sent its peer (one system call each).
    pub wakeups: u64,
    /// Times this end slept on its wake-up socket.
    pub sleeps: u64,
}

impl From<fdring::Stats> for fdring_stats {
    fn from(stats: fdring::Stats) -> fdring_stats {
        fdring_stats {
            wakeups: stats.wakeups,
            sleeps: stats.sleeps,
        }
    }
}

/// How a call may wait.
#[derive(Clone, Copy)]
pub(crate) enum Wait {
    Never,
    Forever,
    For(Duration),
}

impl Wait {
    pub(crate) fn nanos(timeout_ns: u64) -> Wait {
        Wait::For(Duration::from_nanos(timeout_ns))
    }
}

/// A handle from its pointer.
///
/// # Safety
///
/// `handle` is NULL (refused) or a live handle used by this thread only.
pub(crate) unsafe fn handle<'a, H>(handle: *mut H) -> Result<&'a mut H, Failure> {
    // SAFETY: the caller's contract: a live handle, not used elsewhere
    // meanwhile (handles are single-threaded, documented).
    unsafe { handle.as_mut() }.ok_or_else(|| invalid("a NULL handle"))
}

fn layout(item_size: usize, item_align: usize) -> ItemLayout {
    // Checked by the crate where a type's layout would be.
    ItemLayout::new(item_size, item_align)
}

/// Creates a ring of at least `options->capacity` items of `item_size`
/// bytes aligned to `item_align` (a power of two dividing the size) in a
/// new sealed memfd, and returns its two ends. `options` may be NULL for
/// the defaults (then the capacity is 0 and refused).
///
/// Errors: `FDRING_REJECTED` (capacity 0, size 0, bad alignment, too
/// large for the address space), `FDRING_EXHAUSTED` (memory, huge pages,
/// mlock), `FDRING_IO`.
///
/// # Safety
///
/// `options` is NULL or valid; `tx` and `rx` point to writable pointers.
#[no_mangle]
pub unsafe extern "C" fn fdring_channel(
    options: *const fdring_options,
    item_size: usize,
    item_align: usize,
    tx: *mut *mut fdring_sender,
    rx: *mut *mut fdring_receiver,
) -> fdring_error {
    guard(|| {
        if tx.is_null() || rx.is_null() {
            return Err(invalid("a NULL out-pointer"));
        }
        // SAFETY: the caller's contract.
        let builder = unsafe { builder(options, false) };
        let (sender, receiver) = builder.build_untyped(layout(item_size, item_align))?;
        // SAFETY: both checked non-NULL, writable by the caller's contract.
        unsafe {
            tx.write(fdring_sender::boxed(sender));
            rx.write(fdring_receiver::boxed(receiver));
        }
        Ok(())
    })
}

/// Opens the sending end of a ring from fds received from another
/// process, for items of `item_size` bytes aligned to `item_align`. Takes
/// the two fds whether it succeeds or not. Everything the peer controls
/// is checked first (memfd, seals, size, header, item size and alignment,
/// the tag if `options->check_type_tag`, the size bound, the wake-up
/// socket and its role); nothing is mapped on error.
///
/// Errors: `FDRING_REJECTED` naming the failed check, `FDRING_EXHAUSTED`,
/// `FDRING_IO`, `FDRING_INVALID_ARGUMENT` (negative or equal fds).
///
/// # Safety
///
/// The fds are owned by the caller and given up; `options` is NULL or
/// valid; `tx` points to a writable pointer.
#[no_mangle]
pub unsafe extern "C" fn fdring_sender_from_fds(
    fds: fdring_fds,
    options: *const fdring_options,
    item_size: usize,
    item_align: usize,
    tx: *mut *mut fdring_sender,
) -> fdring_error {
    guard(|| {
        // SAFETY: the caller's contract.
        let fds = unsafe { fds.into_rust()? };
        // SAFETY: the caller's contract.
        let builder = unsafe { builder(options, true) };
        let inner = builder.open_untyped_sender(fds, layout(item_size, item_align))?;
        // SAFETY: the caller's contract.
        unsafe { put(tx, fdring_sender::boxed(inner)) }
    })
}

/// Opens the receiving end of a ring from fds received from another
/// process; as `fdring_sender_from_fds`.
///
/// # Safety
///
/// As for `fdring_sender_from_fds`.
#[no_mangle]
pub unsafe extern "C" fn fdring_receiver_from_fds(
    fds: fdring_fds,
    options: *const fdring_options,
    item_size: usize,
    item_align: usize,
    rx: *mut *mut fdring_receiver,
) -> fdring_error {
    guard(|| {
        // SAFETY: the caller's contract.
        let fds = unsafe { fds.into_rust()? };
        // SAFETY: the caller's contract.
        let builder = unsafe { builder(options, true) };
        let inner = builder.open_untyped_receiver(fds, layout(item_size, item_align))?;
        // SAFETY: the caller's contract.
        unsafe { put(rx, fdring_receiver::boxed(inner)) }
    })
}

/// Gives up the sender as two fds to hand to another process (which opens
/// them with `fdring_sender_from_fds`). The handle is freed, whether this
/// succeeds or not; the ring is not marked closed.
///
/// # Safety
///
/// `tx` is a live handle, not used again; `out` points to an
/// `fdring_fds`.
#[no_mangle]
pub unsafe extern "C" fn fdring_sender_into_fds(
    tx: *mut fdring_sender,
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

/// Gives up the receiver as two fds; as `fdring_sender_into_fds`.
///
/// # Safety
///
/// As for `fdring_sender_into_fds`.
#[no_mangle]
pub unsafe extern "C" fn fdring_receiver_into_fds(
    rx: *mut fdring_receiver,
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

/// Frees the sender: marks its end closed and wakes the receiver, which
/// takes what is left and then gets `FDRING_DISCONNECTED`. NULL is a no-op.
///
/// # Safety
///
/// `tx` is NULL or a live handle, not used again.
#[no_mangle]
pub unsafe extern "C" fn fdring_sender_free(tx: *mut fdring_sender) {
    if !tx.is_null() {
        guard(|| {
            // SAFETY: a live handle made by `Box::into_raw`, given up here.
            drop(unsafe { Box::from_raw(tx) });
            Ok(())
        });
    }
}

/// Frees the receiver: marks its end closed; the sender's calls then
/// return `FDRING_DISCONNECTED`. NULL is a no-op.
///
/// # Safety
///
/// `rx` is NULL or a live handle, not used again.
#[no_mangle]
pub unsafe extern "C" fn fdring_receiver_free(rx: *mut fdring_receiver) {
    if !rx.is_null() {
        guard(|| {
            // SAFETY: a live handle made by `Box::into_raw`, given up here.
            drop(unsafe { Box::from_raw(rx) });
            Ok(())
        });
    }
}

fn reserve_sender(tx: &mut UntypedSender, want: usize, wait: Wait) -> Result<Lent, Error> {
    match wait {
        Wait::Never => tx.try_reserve(want),
        Wait::Forever => tx.reserve(want),
        Wait::For(timeout) => tx.reserve_timeout(want, timeout),
    }
}

fn reserve_receiver(rx: &mut UntypedReceiver, want: usize, wait: Wait) -> Result<Lent, Error> {
    match wait {
        Wait::Never => rx.try_reserve(want),
        Wait::Forever => rx.reserve(want),
        Wait::For(timeout) => rx.reserve_timeout(want, timeout),
    }
}

/// The body of the send reserves.
///
/// # Safety
///
/// `tx` a live handle; `ptr` and `n` valid (NULL refused).
#[inline(always)]
unsafe fn send_reserve(
    tx: *mut fdring_sender,
    ptr: *mut *mut c_void,
    n: *mut usize,
    wait: Wait,
) -> fdring_error {
    guard(|| {
        // SAFETY: the caller's contract.
        let tx = unsafe { handle(tx)? };
        if ptr.is_null() || n.is_null() {
            return Err(invalid("a NULL out-pointer"));
        }
        // SAFETY: non-NULL, valid by the caller's contract.
        let want = unsafe { n.read() };
        let lent = reserve_sender(&mut tx.inner, want, wait)?;
        // SAFETY: non-NULL, valid by the caller's contract.
        unsafe {
            ptr.write(lent.ptr.cast());
            n.write(lent.len);
        }
        Ok(())
    })
}

/// Lends free slots of the ring to write items into, without waiting.
///
/// On entry `*n` is how many items you could use (the receiver's index is
/// re-read only if fewer are known to be free; `SIZE_MAX` always looks for
/// all); on success `*ptr` is the first free slot and `*n` how many are
/// lent, at least 1, in one contiguous run, aligned to the item
/// alignment. They hold whatever bytes were there. Write up to `*n`
/// items, then `fdring_send_commit` how many you wrote. A new reserve
/// replaces one not committed.
///
/// Errors: `FDRING_FULL`, `FDRING_DISCONNECTED` (the receiver is gone),
/// `FDRING_CORRUPTED`, `FDRING_EXHAUSTED` (2^62 items sent).
///
/// # Safety
///
/// `tx` is a live handle; `ptr` and `n` are valid pointers. The lent
/// slots are valid until the next reserve or commit on this handle or its
/// free.
#[no_mangle]
pub unsafe extern "C" fn fdring_send_try_reserve(
    tx: *mut fdring_sender,
    ptr: *mut *mut c_void,
    n: *mut usize,
) -> fdring_error {
    // SAFETY: the caller's contract.
    unsafe { send_reserve(tx, ptr, n, Wait::Never) }
}

/// As `fdring_send_try_reserve`, but waits until a slot is free (spins
/// briefly, then sleeps until the receiver frees one, closes or dies).
///
/// # Safety
///
/// As for `fdring_send_try_reserve`.
#[no_mangle]
pub unsafe extern "C" fn fdring_send_reserve(
    tx: *mut fdring_sender,
    ptr: *mut *mut c_void,
    n: *mut usize,
) -> fdring_error {
    // SAFETY: the caller's contract.
    unsafe { send_reserve(tx, ptr, n, Wait::Forever) }
}

/// As `fdring_send_reserve`, but gives up with `FDRING_TIMEOUT` after
/// `timeout_ns` nanoseconds.
///
/// # Safety
///
/// As for `fdring_send_try_reserve`.
#[no_mangle]
pub unsafe extern "C" fn fdring_send_reserve_timeout(
    tx: *mut fdring_sender,
    timeout_ns: u64,
    ptr: *mut *mut c_void,
    n: *mut usize,
) -> fdring_error {
    // SAFETY: the caller's contract.
    unsafe { send_reserve(tx, ptr, n, Wait::nanos(timeout_ns)) }
}

/// Publishes the first `count` of the slots lent by the last reserve (and
/// wakes the receiver if it sleeps); the slots after them stay lent.
///
/// Errors: `FDRING_OVER_COMMIT` if `count` is more than is lent (nothing
/// is published).
///
/// # Safety
///
/// `tx` is a live handle.
#[no_mangle]
pub unsafe extern "C" fn fdring_send_commit(tx: *mut fdring_sender, count: usize) -> fdring_error {
    guard(|| {
        // SAFETY: the caller's contract.
        let tx = unsafe { handle(tx)? };
        Ok(tx.inner.commit(count)?)
    })
}

/// The body of the receive reserves.
///
/// # Safety
///
/// As for [`send_reserve`].
#[inline(always)]
unsafe fn recv_reserve(
    rx: *mut fdring_receiver,
    ptr: *mut *const c_void,
    n: *mut usize,
    wait: Wait,
) -> fdring_error {
    guard(|| {
        // SAFETY: the caller's contract.
        let rx = unsafe { handle(rx)? };
        if ptr.is_null() || n.is_null() {
            return Err(invalid("a NULL out-pointer"));
        }
        // SAFETY: non-NULL, valid by the caller's contract.
        let want = unsafe { n.read() };
        let lent = reserve_receiver(&mut rx.inner, want, wait)?;
        // SAFETY: non-NULL, valid by the caller's contract.
        unsafe {
            ptr.write(lent.ptr.cast_const().cast());
            n.write(lent.len);
        }
        Ok(())
    })
}

/// Lends ready items to read in place, without waiting.
///
/// On entry `*n` is how many you could use (see
/// `fdring_send_try_reserve`); on success `*ptr` is the first ready item
/// and `*n` how many are lent, at least 1, contiguous. Read up to `*n`
/// items, then `fdring_recv_release` how many you read. The sender may
/// be hostile: its bytes are whatever it wrote, so read each item once
/// and check what you read.
///
/// Errors: `FDRING_EMPTY`, `FDRING_DISCONNECTED` (the sender is gone and
/// every item was taken), `FDRING_CORRUPTED`.
///
/// # Safety
///
/// `rx` is a live handle; `ptr` and `n` are valid pointers. The lent
/// items are valid until the next reserve or release on this handle or
/// its free.
#[no_mangle]
pub unsafe extern "C" fn fdring_recv_try_reserve(
    rx: *mut fdring_receiver,
    ptr: *mut *const c_void,
    n: *mut usize,
) -> fdring_error {
    // SAFETY: the caller's contract.
    unsafe { recv_reserve(rx, ptr, n, Wait::Never) }
}

/// As `fdring_recv_try_reserve`, but waits until an item is ready.
///
/// # Safety
///
/// As for `fdring_recv_try_reserve`.
#[no_mangle]
pub unsafe extern "C" fn fdring_recv_reserve(
    rx: *mut fdring_receiver,
    ptr: *mut *const c_void,
    n: *mut usize,
) -> fdring_error {
    // SAFETY: the caller's contract.
    unsafe { recv_reserve(rx, ptr, n, Wait::Forever) }
}

/// As `fdring_recv_reserve`, but gives up with `FDRING_TIMEOUT` after
/// `timeout_ns` nanoseconds.
///
/// # Safety
///
/// As for `fdring_recv_try_reserve`.
#[no_mangle]
pub unsafe extern "C" fn fdring_recv_reserve_timeout(
    rx: *mut fdring_receiver,
    timeout_ns: u64,
    ptr: *mut *const c_void,
    n: *mut usize,
) -> fdring_error {
    // SAFETY: the caller's contract.
    unsafe { recv_reserve(rx, ptr, n, Wait::nanos(timeout_ns)) }
}

/// Releases the first `count` of the items lent by the last reserve,
/// giving their slots back to the sender; the items after them stay lent.
///
/// Errors: `FDRING_OVER_COMMIT` if `count` is more than is lent.
///
/// # Safety
///
/// `rx` is a live handle.
#[no_mangle]
pub unsafe extern "C" fn fdring_recv_release(
    rx: *mut fdring_receiver,
    count: usize,
) -> fdring_error {
    guard(|| {
        // SAFETY: the caller's contract.
        let rx = unsafe { handle(rx)? };
        Ok(rx.inner.release(count)?)
    })
}

/// Copies up to `count` items from `items` into the ring, as many as fit
/// in one run, waiting as `wait` says for the first; returns how many.
fn send_copy(
    tx: &mut UntypedSender,
    items: *const u8,
    count: usize,
    wait: Wait,
) -> Result<usize, Error> {
    let size = tx.layout().size();
    let lent = reserve_sender(tx, count, wait)?;
    let n = lent.len.min(count);
    // SAFETY: `items` holds `count` items of `size` bytes (the caller's
    // contract); the lent slots hold `lent.len >= n` items and lie in
    // the shared mapping, which the caller's buffer cannot overlap in
    // a way that matters (a caller who passes lent slots as the source
    // copies within the ring, bytes for bytes). `copy` tolerates overlap.
    unsafe { std::ptr::copy(items, lent.ptr, n * size) };
    tx.commit(n)?;
    Ok(n)
}

/// The body of the copying sends: all of `items` unless `wait` is
/// `Never` (as many as fit) or runs out; `*sent` says how many.
///
/// # Safety
///
/// `tx` a live handle; `items` readable for `count` items; `sent` NULL or
/// writable.
unsafe fn send_items(
    tx: *mut fdring_sender,
    items: *const c_void,
    count: usize,
    wait: Wait,
    sent: *mut usize,
) -> fdring_error {
    let mut done = 0;
    let code = guard(|| {
        // SAFETY: the caller's contract.
        let tx = unsafe { handle(tx)? };
        if count == 0 {
            return Ok(());
        }
        if items.is_null() {
            return Err(invalid("a NULL item buffer"));
        }
        let size = tx.inner.layout().size();
        let deadline = match wait {
            Wait::For(timeout) => Some(std::time::Instant::now().checked_add(timeout)),
            _ => None,
        };
        while done < count {
            let wait = match deadline {
                Some(Some(at)) => {
                    Wait::For(at.saturating_duration_since(std::time::Instant::now()))
                }
                Some(None) => Wait::Forever,
                None => wait,
            };
            // SAFETY: `items` holds `count` items of `size` bytes.
            let rest = unsafe { items.cast::<u8>().add(done * size) };
            match send_copy(&mut tx.inner, rest, count - done, wait) {
                Ok(n) => done += n,
                // A try that sent some is a success.
                Err(Error::Full) if done > 0 => break,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    });
    if !sent.is_null() {
        // SAFETY: non-NULL, writable by the caller's contract.
        unsafe { sent.write(done) };
    }
    code
}

/// Copies as many of the `count` items at `items` into the ring as there
/// is room for now, in order; `*sent` (if not NULL) says how many.
///
/// Errors: `FDRING_FULL` if none fit, and as for `fdring_send_try_reserve`.
///
/// # Safety
///
/// `tx` is a live handle; `items` holds `count` items of the ring's size;
/// `sent` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn fdring_try_send(
    tx: *mut fdring_sender,
    items: *const c_void,
    count: usize,
    sent: *mut usize,
) -> fdring_error {
    // SAFETY: the caller's contract.
    unsafe { send_items(tx, items, count, Wait::Never, sent) }
}

/// Copies all `count` items at `items` into the ring, in order, waiting
/// for room as often as needed.
///
/// Errors: as for `fdring_send_reserve`; on error a prefix may have been
/// sent.
///
/// # Safety
///
/// `tx` is a live handle; `items` holds `count` items of the ring's size.
#[no_mangle]
pub unsafe extern "C" fn fdring_send(
    tx: *mut fdring_sender,
    items: *const c_void,
    count: usize,
) -> fdring_error {
    // SAFETY: the caller's contract.
    unsafe { send_items(tx, items, count, Wait::Forever, std::ptr::null_mut()) }
}

/// As `fdring_send`, but gives up with `FDRING_TIMEOUT` once `timeout_ns`
/// nanoseconds have passed; `*sent` (if not NULL) says how many were sent.
///
/// # Safety
///
/// As for `fdring_try_send`.
#[no_mangle]
pub unsafe extern "C" fn fdring_send_timeout(
    tx: *mut fdring_sender,
    items: *const c_void,
    count: usize,
    timeout_ns: u64,
    sent: *mut usize,
) -> fdring_error {
    // SAFETY: the caller's contract.
    unsafe { send_items(tx, items, count, Wait::nanos(timeout_ns), sent) }
}

/// The body of the copying receives: up to `max` items into `buf` from
/// one run, waiting as `wait` says for the first.
///
/// # Safety
///
/// `rx` a live handle; `buf` writable for `max` items; `got` NULL or
/// writable.
unsafe fn recv_items(
    rx: *mut fdring_receiver,
    buf: *mut c_void,
    max: usize,
    wait: Wait,
    got: *mut usize,
) -> fdring_error {
    let mut done = 0;
    let code = guard(|| {
        // SAFETY: the caller's contract.
        let rx = unsafe { handle(rx)? };
        if max == 0 {
            return Ok(());
        }
        if buf.is_null() {
            return Err(invalid("a NULL item buffer"));
        }
        let size = rx.inner.layout().size();
        let lent = reserve_receiver(&mut rx.inner, max, wait)?;
        let n = lent.len.min(max);
        // SAFETY: the lent items are `lent.len >= n` published items in
        // the mapping; `buf` has room for `max >= n` items (the caller's
        // contract). The bytes are the sender's, copied as they are:
        // every byte value is fine to copy, and what they mean is the
        // caller's to check.
        unsafe { std::ptr::copy(lent.ptr.cast_const(), buf.cast::<u8>(), n * size) };
        rx.inner.release(n)?;
        done = n;
        Ok(())
    });
    if !got.is_null() {
        // SAFETY: non-NULL, writable by the caller's contract.
        unsafe { got.write(done) };
    }
    code
}

/// Copies up to `max` ready items into `buf` without waiting; `*got` (if
/// not NULL) says how many.
///
/// Errors: `FDRING_EMPTY`, and as for `fdring_recv_try_reserve`.
///
/// # Safety
///
/// `rx` is a live handle; `buf` has room for `max` items of the ring's
/// size; `got` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn fdring_try_recv(
    rx: *mut fdring_receiver,
    buf: *mut c_void,
    max: usize,
    got: *mut usize,
) -> fdring_error {
    // SAFETY: the caller's contract.
    unsafe { recv_items(rx, buf, max, Wait::Never, got) }
}

/// As `fdring_try_recv`, but waits until at least one item is ready.
///
/// # Safety
///
/// As for `fdring_try_recv`.
#[no_mangle]
pub unsafe extern "C" fn fdring_recv(
    rx: *mut fdring_receiver,
    buf: *mut c_void,
    max: usize,
    got: *mut usize,
) -> fdring_error {
    // SAFETY: the caller's contract.
    unsafe { recv_items(rx, buf, max, Wait::Forever, got) }
}

/// As `fdring_recv`, but gives up with `FDRING_TIMEOUT` after
/// `timeout_ns` nanoseconds.
///
/// # Safety
///
/// As for `fdring_try_recv`.
#[no_mangle]
pub unsafe extern "C" fn fdring_recv_timeout(
    rx: *mut fdring_receiver,
    buf: *mut c_void,
    max: usize,
    timeout_ns: u64,
    got: *mut usize,
) -> fdring_error {
    // SAFETY: the caller's contract.
    unsafe { recv_items(rx, buf, max, Wait::nanos(timeout_ns), got) }
}

/// The fd to poll (for `POLLIN`) after `fdring_sender_prepare_wait` said
/// to wait: the wake-up socket, the same for the end's whole life. -1 for
/// a NULL handle.
///
/// # Safety
///
/// `tx` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn fdring_sender_fd(tx: *const fdring_sender) -> c_int {
    // SAFETY: the caller's contract.
    unsafe { tx.as_ref() }.map_or(-1, |tx| tx.inner.as_fd().as_raw_fd())
}

/// The fd to poll for the receiver; see `fdring_sender_fd`.
///
/// # Safety
///
/// `rx` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn fdring_receiver_fd(rx: *const fdring_receiver) -> c_int {
    // SAFETY: the caller's contract.
    unsafe { rx.as_ref() }.map_or(-1, |rx| rx.inner.as_fd().as_raw_fd())
}

/// Prepares to wait on `fdring_sender_fd` in your own poll/epoll loop
/// after a try returned `FDRING_FULL`: `*may_wait` true means poll it now
/// (it becomes readable when the receiver frees room, closes or dies),
/// false means retry at once. Busy-polling loops should not call it.
///
/// # Safety
///
/// `tx` is a live handle; `may_wait` is writable.
#[no_mangle]
pub unsafe extern "C" fn fdring_sender_prepare_wait(
    tx: *mut fdring_sender,
    may_wait: *mut bool,
) -> fdring_error {
    guard(|| {
        // SAFETY: the caller's contract.
        let tx = unsafe { handle(tx)? };
        let answer = tx.inner.prepare_wait()?;
        // SAFETY: the caller's contract.
        unsafe { put(may_wait, answer) }
    })
}

/// As `fdring_sender_prepare_wait`, for the receiver after
/// `FDRING_EMPTY`.
///
/// # Safety
///
/// `rx` is a live handle; `may_wait` is writable.
#[no_mangle]
pub unsafe extern "C" fn fdring_receiver_prepare_wait(
    rx: *mut fdring_receiver,
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

/// The ring's capacity in items (0 for NULL).
///
/// # Safety
///
/// `tx` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn fdring_sender_capacity(tx: *const fdring_sender) -> usize {
    // SAFETY: the caller's contract.
    unsafe { tx.as_ref() }.map_or(0, |tx| tx.inner.capacity())
}

/// The ring's capacity in items (0 for NULL).
///
/// # Safety
///
/// `rx` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn fdring_receiver_capacity(rx: *const fdring_receiver) -> usize {
    // SAFETY: the caller's contract.
    unsafe { rx.as_ref() }.map_or(0, |rx| rx.inner.capacity())
}

/// Items in the ring: a racy snapshot, clamped to the capacity.
///
/// # Safety
///
/// `tx` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn fdring_sender_len(tx: *const fdring_sender) -> usize {
    // SAFETY: the caller's contract.
    unsafe { tx.as_ref() }.map_or(0, |tx| tx.inner.len())
}

/// Items in the ring: a racy snapshot, clamped to the capacity.
///
/// # Safety
///
/// `rx` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn fdring_receiver_len(rx: *const fdring_receiver) -> usize {
    // SAFETY: the caller's contract.
    unsafe { rx.as_ref() }.map_or(0, |rx| rx.inner.len())
}

/// Whether the receiver closed its end or its process is gone (one `poll`
/// unless known already).
///
/// # Safety
///
/// `tx` is a live handle.
#[no_mangle]
pub unsafe extern "C" fn fdring_sender_is_abandoned(tx: *const fdring_sender) -> bool {
    guard_value(false, || {
        // SAFETY: the caller's contract.
        let tx = unsafe { tx.as_ref() }.ok_or_else(|| invalid("a NULL handle"))?;
        Ok(tx.inner.is_abandoned())
    })
}

/// Whether the sender closed its end or its process is gone.
///
/// # Safety
///
/// `rx` is a live handle.
#[no_mangle]
pub unsafe extern "C" fn fdring_receiver_is_abandoned(rx: *const fdring_receiver) -> bool {
    guard_value(false, || {
        // SAFETY: the caller's contract.
        let rx = unsafe { rx.as_ref() }.ok_or_else(|| invalid("a NULL handle"))?;
        Ok(rx.inner.is_abandoned())
    })
}

/// Ends the stream without freeing the handle: the receiver takes what is
/// left, then gets `FDRING_DISCONNECTED`; this end's sends return it.
///
/// # Safety
///
/// `tx` is a live handle.
#[no_mangle]
pub unsafe extern "C" fn fdring_sender_close(tx: *mut fdring_sender) -> fdring_error {
    guard(|| {
        // SAFETY: the caller's contract.
        unsafe { handle(tx)? }.inner.close();
        Ok(())
    })
}

/// Ends the stream from the receiving side without freeing the handle.
///
/// # Safety
///
/// `rx` is a live handle.
#[no_mangle]
pub unsafe extern "C" fn fdring_receiver_close(rx: *mut fdring_receiver) -> fdring_error {
    guard(|| {
        // SAFETY: the caller's contract.
        unsafe { handle(rx)? }.inner.close();
        Ok(())
    })
}

/// Waits until the receiver has taken every item, or `timeout_ns`
/// nanoseconds (`FDRING_TIMEOUT`); `FDRING_DISCONNECTED` if it left with
/// items unread. Close, then wait, is the orderly end of a stream.
///
/// # Safety
///
/// `tx` is a live handle.
#[no_mangle]
pub unsafe extern "C" fn fdring_sender_wait_drained(
    tx: *mut fdring_sender,
    timeout_ns: u64,
) -> fdring_error {
    guard(|| {
        // SAFETY: the caller's contract.
        let tx = unsafe { handle(tx)? };
        Ok(tx.inner.wait_drained(Duration::from_nanos(timeout_ns))?)
    })
}

/// This end's counters.
///
/// # Safety
///
/// `tx` is a live handle; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn fdring_sender_stats(
    tx: *const fdring_sender,
    out: *mut fdring_stats,
) -> fdring_error {
    guard(|| {
        // SAFETY: the caller's contract.
        let tx = unsafe { tx.as_ref() }.ok_or_else(|| invalid("a NULL handle"))?;
        // SAFETY: the caller's contract.
        unsafe { put(out, tx.inner.stats().into()) }
    })
}

/// This end's counters.
///
/// # Safety
///
/// `rx` is a live handle; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn fdring_receiver_stats(
    rx: *const fdring_receiver,
    out: *mut fdring_stats,
) -> fdring_error {
    guard(|| {
        // SAFETY: the caller's contract.
        let rx = unsafe { rx.as_ref() }.ok_or_else(|| invalid("a NULL handle"))?;
        // SAFETY: the caller's contract.
        unsafe { put(out, rx.inner.stats().into()) }
    })
}

impl fdring_sender {
    /// A handle owning `inner`, for C to free.
    pub(crate) fn boxed(inner: UntypedSender) -> *mut fdring_sender {
        Box::into_raw(Box::new(fdring_sender { inner }))
    }
}

impl fdring_receiver {
    /// A handle owning `inner`, for C to free.
    pub(crate) fn boxed(inner: UntypedReceiver) -> *mut fdring_receiver {
        Box::into_raw(Box::new(fdring_receiver { inner }))
    }
}
