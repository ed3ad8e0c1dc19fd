//! Services: unrelated processes find each other by name (the crate's
//! `fdring::service`): `fdring_listener` bound to a name, `fdring_connect`,
//! and on the `fdring_connection` one side offers a ring and the other
//! takes it, both naming the same item layout (and, if checked, tag). The
//! kernel's `SO_PEERCRED` and the crate's access rules (same user or root
//! by default) apply as in Rust; the fds of an offer are validated before
//! anything is mapped.

use std::ffi::c_char;
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use fdring::service::{Connection, Connector, Listener};
use fdring::{FrameReceiver, FrameSender, ItemLayout};

use crate::error::{fdring_error, guard, invalid, Failure};
use crate::fdring_options;
use crate::fds::{builder, c_str, put};
use crate::frames::{fdring_frame_receiver, fdring_frame_sender, frame_align};
use crate::items::{fdring_receiver, fdring_sender, handle};

/// A name other processes connect to. Freed by `fdring_listener_free`
/// (which releases the name).
#[derive(Debug)]
pub struct fdring_listener {
    inner: Listener,
}

/// A connection to a peer process, on which rings are offered and taken.
/// Freed by `fdring_connection_free`; the rings negotiated on it outlive
/// it.
#[derive(Debug)]
pub struct fdring_connection {
    inner: Connection,
}

/// The process at the other end of a connection, as the kernel saw it.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct fdring_credentials {
    /// Its process id (0 if outside this pid namespace).
    pub pid: u32,
    /// Its effective user id.
    pub uid: u32,
    /// Its effective group id.
    pub gid: u32,
}

fn boxed_connection(inner: Connection) -> *mut fdring_connection {
    Box::into_raw(Box::new(fdring_connection { inner }))
}

/// Binds `name` (in Linux's abstract socket namespace: nothing on the
/// filesystem, released when the listener is freed or the process dies).
/// Clients of the same user or root are accepted.
///
/// Errors: `FDRING_IO` if the name is taken; `FDRING_INVALID_ARGUMENT`
/// for a name that is not UTF-8.
///
/// # Safety
///
/// `name` is a NUL-terminated string; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn fdring_listener_bind(
    name: *const c_char,
    out: *mut *mut fdring_listener,
) -> fdring_error {
    guard(|| {
        // SAFETY: the caller's contract.
        let name = unsafe { c_str(name)? };
        let inner = Listener::bind(name)?;
        // SAFETY: the caller's contract.
        unsafe { put(out, Box::into_raw(Box::new(fdring_listener { inner }))) }
    })
}

/// Waits for the next client and returns the connection.
///
/// Errors: `FDRING_REJECTED` if the client is not allowed (it is told so),
/// `FDRING_IO`.
///
/// # Safety
///
/// `listener` is a live handle; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn fdring_listener_accept(
    listener: *mut fdring_listener,
    out: *mut *mut fdring_connection,
) -> fdring_error {
    guard(|| {
        // SAFETY: the caller's contract.
        let listener = unsafe { handle(listener)? };
        let connection = listener.inner.accept()?;
        // SAFETY: the caller's contract.
        unsafe { put(out, boxed_connection(connection)) }
    })
}

/// Accepts a client if one is waiting: `FDRING_EMPTY` if none (poll
/// `fdring_listener_fd` for `POLLIN`), otherwise as
/// `fdring_listener_accept`.
///
/// # Safety
///
/// `listener` is a live handle; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn fdring_listener_try_accept(
    listener: *mut fdring_listener,
    out: *mut *mut fdring_connection,
) -> fdring_error {
    guard(|| {
        // SAFETY: the caller's contract.
        let listener = unsafe { handle(listener)? };
        match listener.inner.try_accept()? {
            // SAFETY: the caller's contract.
            Some(connection) => unsafe { put(out, boxed_connection(connection)) },
            None => Err(fdring::Error::Empty.into()),
        }
    })
}

/// The listening socket, to poll for `POLLIN` (-1 for NULL).
///
/// # Safety
///
/// `listener` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn fdring_listener_fd(listener: *const fdring_listener) -> i32 {
    // SAFETY: the caller's contract.
    unsafe { listener.as_ref() }.map_or(-1, |l| l.inner.as_fd().as_raw_fd())
}

/// Frees the listener and releases its name. NULL is a no-op.
///
/// # Safety
///
/// `listener` is NULL or a live handle, not used again.
#[no_mangle]
pub unsafe extern "C" fn fdring_listener_free(listener: *mut fdring_listener) {
    if !listener.is_null() {
        guard(|| {
            // SAFETY: a live handle made by `Box::into_raw`, given up here.
            drop(unsafe { Box::from_raw(listener) });
            Ok(())
        });
    }
}

/// Connects to the listener bound to `name` and waits up to `timeout_ns`
/// nanoseconds for it to accept and greet; each later call on the
/// connection waits up to the same time for the peer. The listener must be
/// of this user or root.
///
/// Errors: `FDRING_IO` at once, without waiting, if nobody listens under
/// `name` (a client started next to its server tries again);
/// `FDRING_TIMEOUT`; `FDRING_REJECTED` (refused, or not trusted).
///
/// # Safety
///
/// `name` is a NUL-terminated string; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn fdring_connect(
    name: *const c_char,
    timeout_ns: u64,
    out: *mut *mut fdring_connection,
) -> fdring_error {
    guard(|| {
        // SAFETY: the caller's contract.
        let name = unsafe { c_str(name)? };
        let connection = Connector::new(name)
            .timeout(Duration::from_nanos(timeout_ns))
            .connect()?;
        // SAFETY: the caller's contract.
        unsafe { put(out, boxed_connection(connection)) }
    })
}

/// The peer process's credentials, as the kernel reported them.
///
/// # Safety
///
/// `connection` is a live handle; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn fdring_connection_peer(
    connection: *const fdring_connection,
    out: *mut fdring_credentials,
) -> fdring_error {
    guard(|| {
        // SAFETY: the caller's contract.
        let connection = unsafe { connection.as_ref() }.ok_or_else(|| invalid("a NULL handle"))?;
        let peer = connection.inner.peer();
        let credentials = fdring_credentials {
            pid: peer.pid,
            uid: peer.uid,
            gid: peer.gid,
        };
        // SAFETY: the caller's contract.
        unsafe { put(out, credentials) }
    })
}

/// Frees the connection; rings negotiated on it live on. NULL is a no-op.
///
/// # Safety
///
/// `connection` is NULL or a live handle, not used again.
#[no_mangle]
pub unsafe extern "C" fn fdring_connection_free(connection: *mut fdring_connection) {
    if !connection.is_null() {
        guard(|| {
            // SAFETY: a live handle made by `Box::into_raw`, given up here.
            drop(unsafe { Box::from_raw(connection) });
            Ok(())
        });
    }
}

/// The connection and the builder of a call: creating (`offer`) or
/// opening (`take`).
///
/// # Safety
///
/// `connection` a live handle; `options` NULL or valid.
unsafe fn parts<'a>(
    connection: *mut fdring_connection,
    options: *const fdring_options,
    opening: bool,
) -> Result<(&'a mut Connection, fdring::Builder), Failure> {
    // SAFETY: the caller's contract.
    let connection = unsafe { handle(connection)? };
    // SAFETY: the caller's contract.
    let builder = unsafe { builder(options, opening) };
    Ok((&mut connection.inner, builder))
}

/// Creates a ring of `options->capacity` items of `item_size` bytes
/// aligned to `item_align`, hands the peer its receiving end, and keeps
/// the sending end (`*tx`) once the peer took it.
///
/// Errors: as for `fdring_channel`; `FDRING_REJECTED` if the peer expects
/// another ring (the message names the field and both values) or could
/// not open it; `FDRING_TIMEOUT`; `FDRING_DISCONNECTED` if it hung up.
///
/// # Safety
///
/// `connection` is a live handle; `options` is NULL or valid; `tx` is
/// writable.
#[no_mangle]
pub unsafe extern "C" fn fdring_connection_offer_receiver(
    connection: *mut fdring_connection,
    options: *const fdring_options,
    item_size: usize,
    item_align: usize,
    tx: *mut *mut fdring_sender,
) -> fdring_error {
    guard(|| {
        // SAFETY: the caller's contract.
        let (connection, builder) = unsafe { parts(connection, options, false)? };
        let layout = ItemLayout::new(item_size, item_align);
        let sender = connection.offer_untyped_receiver(&builder, layout)?;
        // SAFETY: the caller's contract.
        unsafe { put(tx, fdring_sender::boxed(sender)) }
    })
}

/// Creates a ring, hands the peer its sending end, and keeps the
/// receiving end (`*rx`); as `fdring_connection_offer_receiver`.
///
/// # Safety
///
/// As for `fdring_connection_offer_receiver`.
#[no_mangle]
pub unsafe extern "C" fn fdring_connection_offer_sender(
    connection: *mut fdring_connection,
    options: *const fdring_options,
    item_size: usize,
    item_align: usize,
    rx: *mut *mut fdring_receiver,
) -> fdring_error {
    guard(|| {
        // SAFETY: the caller's contract.
        let (connection, builder) = unsafe { parts(connection, options, false)? };
        let layout = ItemLayout::new(item_size, item_align);
        let receiver = connection.offer_untyped_sender(&builder, layout)?;
        // SAFETY: the caller's contract.
        unsafe { put(rx, fdring_receiver::boxed(receiver)) }
    })
}

/// Takes the receiving end of a ring the peer offers, which must hold
/// items of `item_size` bytes aligned to `item_align` (and carry
/// `options->type_tag` if `options->check_type_tag`); the offer's fds are
/// then validated as `fdring_receiver_from_fds` does.
///
/// Errors: `FDRING_REJECTED` (the offer does not match, naming the field;
/// or its fds fail a check), `FDRING_TIMEOUT`, `FDRING_DISCONNECTED`.
///
/// # Safety
///
/// `connection` is a live handle; `options` is NULL or valid; `rx` is
/// writable.
#[no_mangle]
pub unsafe extern "C" fn fdring_connection_take_receiver(
    connection: *mut fdring_connection,
    options: *const fdring_options,
    item_size: usize,
    item_align: usize,
    rx: *mut *mut fdring_receiver,
) -> fdring_error {
    guard(|| {
        // SAFETY: the caller's contract.
        let (connection, builder) = unsafe { parts(connection, options, true)? };
        let layout = ItemLayout::new(item_size, item_align);
        let receiver = connection.take_untyped_receiver(&builder, layout)?;
        // SAFETY: the caller's contract.
        unsafe { put(rx, fdring_receiver::boxed(receiver)) }
    })
}

/// Takes the sending end of a ring the peer offers; as
/// `fdring_connection_take_receiver`.
///
/// # Safety
///
/// As for `fdring_connection_take_receiver`.
#[no_mangle]
pub unsafe extern "C" fn fdring_connection_take_sender(
    connection: *mut fdring_connection,
    options: *const fdring_options,
    item_size: usize,
    item_align: usize,
    tx: *mut *mut fdring_sender,
) -> fdring_error {
    guard(|| {
        // SAFETY: the caller's contract.
        let (connection, builder) = unsafe { parts(connection, options, true)? };
        let layout = ItemLayout::new(item_size, item_align);
        let sender = connection.take_untyped_sender(&builder, layout)?;
        // SAFETY: the caller's contract.
        unsafe { put(tx, fdring_sender::boxed(sender)) }
    })
}

/// Creates a frame ring of `options->capacity` bytes with payloads
/// aligned to `align` (0: 8), hands the peer its receiving end, and keeps
/// the sending end.
///
/// # Safety
///
/// As for `fdring_connection_offer_receiver`.
#[no_mangle]
pub unsafe extern "C" fn fdring_connection_offer_frame_receiver(
    connection: *mut fdring_connection,
    options: *const fdring_options,
    align: usize,
    tx: *mut *mut fdring_frame_sender,
) -> fdring_error {
    guard(|| {
        let align = frame_align(align)?;
        // SAFETY: the caller's contract.
        let (connection, builder) = unsafe { parts(connection, options, false)? };
        let sender: FrameSender = connection.offer_frame_receiver(&builder, align)?;
        // SAFETY: the caller's contract.
        unsafe { put(tx, fdring_frame_sender::boxed(sender)) }
    })
}

/// Creates a frame ring, hands the peer its sending end, and keeps the
/// receiving end.
///
/// # Safety
///
/// As for `fdring_connection_offer_receiver`.
#[no_mangle]
pub unsafe extern "C" fn fdring_connection_offer_frame_sender(
    connection: *mut fdring_connection,
    options: *const fdring_options,
    align: usize,
    rx: *mut *mut fdring_frame_receiver,
) -> fdring_error {
    guard(|| {
        let align = frame_align(align)?;
        // SAFETY: the caller's contract.
        let (connection, builder) = unsafe { parts(connection, options, false)? };
        let receiver: FrameReceiver = connection.offer_frame_sender(&builder, align)?;
        // SAFETY: the caller's contract.
        unsafe { put(rx, fdring_frame_receiver::boxed(receiver)) }
    })
}

/// Takes the receiving end of a frame ring the peer offers, with payloads
/// aligned to `align` (0: 8).
///
/// # Safety
///
/// As for `fdring_connection_take_receiver`.
#[no_mangle]
pub unsafe extern "C" fn fdring_connection_take_frame_receiver(
    connection: *mut fdring_connection,
    options: *const fdring_options,
    align: usize,
    rx: *mut *mut fdring_frame_receiver,
) -> fdring_error {
    guard(|| {
        let align = frame_align(align)?;
        // SAFETY: the caller's contract.
        let (connection, builder) = unsafe { parts(connection, options, true)? };
        let receiver = connection.take_frame_receiver(&builder, align)?;
        // SAFETY: the caller's contract.
        unsafe { put(rx, fdring_frame_receiver::boxed(receiver)) }
    })
}

/// Takes the sending end of a frame ring the peer offers.
///
/// # Safety
///
/// As for `fdring_connection_take_receiver`.
#[no_mangle]
pub unsafe extern "C" fn fdring_connection_take_frame_sender(
    connection: *mut fdring_connection,
    options: *const fdring_options,
    align: usize,
    tx: *mut *mut fdring_frame_sender,
) -> fdring_error {
    guard(|| {
        let align = frame_align(align)?;
        // SAFETY: the caller's contract.
        let (connection, builder) = unsafe { parts(connection, options, true)? };
        let sender = connection.take_frame_sender(&builder, align)?;
        // SAFETY: the caller's contract.
        unsafe { put(tx, fdring_frame_sender::boxed(sender)) }
    })
}
