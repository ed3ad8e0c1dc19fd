//! Errors across the boundary: the codes (`fdring_error`), their mapping
//! from [`fdring::Error`] (in one place, `code_of`), the message of the
//! last failure per thread, and `guard`, which every `extern "C"`
//! function runs its body in so that no panic unwinds into C.

use std::cell::RefCell;
use std::ffi::{c_char, c_int, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use fdring::Error;

/// What a call returns: `FDRING_OK` (0) on success, otherwise the kind of
/// failure; `fdring_last_error_message()` says more.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum fdring_error {
    /// Success.
    FDRING_OK = 0,
    /// The ring has no free slot (the `try_` calls only).
    FDRING_FULL = 1,
    /// The ring has no item ready (the `try_` calls only).
    FDRING_EMPTY = 2,
    /// A `_timeout` call waited its whole timeout without progress.
    FDRING_TIMEOUT = 3,
    /// The other end is gone: closed, freed, or its process died. A
    /// receiver gets this only after every item published was received.
    FDRING_DISCONNECTED = 4,
    /// The call needs the other end gone, and it is not.
    FDRING_PEER_ALIVE = 5,
    /// The peer broke the protocol (an index out of range, a bad frame
    /// header): the ring is unusable from now on.
    FDRING_CORRUPTED = 6,
    /// The fds, the ring's header or the peer's offer were not acceptable
    /// (wrong item size or alignment, type tag, seals, size, role...), or
    /// the service refused this process. Nothing was mapped.
    FDRING_REJECTED = 7,
    /// A frame larger than the ring can ever hold was asked for.
    FDRING_FRAME_TOO_LARGE = 8,
    /// The two frame ends were made with different alignments.
    FDRING_FRAME_ALIGN = 9,
    /// A commit or release of more items than the last reserve lent:
    /// nothing was published or released.
    FDRING_OVER_COMMIT = 10,
    /// Out of memory, huge pages, locked memory, or the ring's indices
    /// (after 2^62 items).
    FDRING_EXHAUSTED = 11,
    /// A system call failed.
    FDRING_IO = 12,
    /// An argument was invalid: a NULL out-pointer, a size or alignment
    /// out of range, a name that is not UTF-8, a callback's answer out of
    /// range.
    FDRING_INVALID_ARGUMENT = 13,
    /// A bug in fdring panicked; the panic was caught at the boundary. The
    /// handle it happened on should be freed.
    FDRING_PANIC = 14,
    /// An error of a kind newer than this header.
    FDRING_UNKNOWN = 15,
}

use fdring_error::*;

/// Why a call failed: an error of the Rust crate, or an argument refused
/// at the boundary.
#[derive(Debug)]
pub(crate) enum Failure {
    Ring(Error),
    Invalid(String),
}

impl From<Error> for Failure {
    fn from(error: Error) -> Failure {
        Failure::Ring(error)
    }
}

/// An argument refused at the boundary.
pub(crate) fn invalid(message: impl Into<String>) -> Failure {
    Failure::Invalid(message.into())
}

/// The code of each of the crate's errors: the one mapping.
pub(crate) fn code_of(error: &Error) -> fdring_error {
    match error {
        Error::Full => FDRING_FULL,
        Error::Empty => FDRING_EMPTY,
        Error::Timeout => FDRING_TIMEOUT,
        Error::Disconnected => FDRING_DISCONNECTED,
        Error::PeerAlive => FDRING_PEER_ALIVE,
        Error::Corrupted(_) => FDRING_CORRUPTED,
        Error::Rejected(_) => FDRING_REJECTED,
        Error::FrameTooLarge { .. } => FDRING_FRAME_TOO_LARGE,
        Error::FrameAlign { .. } => FDRING_FRAME_ALIGN,
        Error::OverCommit { .. } => FDRING_OVER_COMMIT,
        Error::Exhausted(_) => FDRING_EXHAUSTED,
        Error::Io { .. } => FDRING_IO,
        _ => FDRING_UNKNOWN,
    }
}

/// The message of the last failure on this thread.
enum Last {
    Static(&'static CStr),
    Owned(CString),
}

thread_local! {
    static LAST: RefCell<Last> = const { RefCell::new(Last::Static(c"no error")) };
}

fn set_last(last: Last) {
    // A thread being torn down has no message to keep.
    let _ = LAST.try_with(|cell| *cell.borrow_mut() = last);
}

fn owned(message: String) -> Last {
    // The crate's messages have no NUL; if one ever did, cut it there.
    let bytes: Vec<u8> = message
        .into_bytes()
        .into_iter()
        .take_while(|&b| b != 0)
        .collect();
    Last::Owned(CString::new(bytes).unwrap_or_default())
}

/// Records `failure` as this thread's last error and returns its code.
pub(crate) fn fail(failure: Failure) -> fdring_error {
    match failure {
        Failure::Ring(error) => {
            let code = code_of(&error);
            // The would-block answers of a busy-polling loop must not
            // allocate: their message is a constant.
            let last = match error {
                Error::Full => Last::Static(c"the ring is full"),
                Error::Empty => Last::Static(c"the ring is empty"),
                Error::Timeout => Last::Static(c"timed out waiting on the ring"),
                Error::Disconnected => Last::Static(c"the other end of the ring is gone"),
                other => owned(other.to_string()),
            };
            set_last(last);
            code
        }
        Failure::Invalid(message) => {
            set_last(owned(format!("invalid argument: {message}")));
            FDRING_INVALID_ARGUMENT
        }
    }
}

/// Runs the body of an `extern "C"` function: its error becomes a code
/// (and this thread's last message), and a panic becomes `FDRING_PANIC`
/// instead of unwinding into C (which would abort the process).
#[inline(always)]
pub(crate) fn guard(body: impl FnOnce() -> Result<(), Failure>) -> fdring_error {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => FDRING_OK,
        Ok(Err(failure)) => fail(failure),
        Err(payload) => {
            if let Some(overrun) = payload.downcast_ref::<crate::frames::CallbackOverrun>() {
                return fail(invalid(format!(
                    "the fill callback returned {} for a frame of {} bytes; nothing was sent",
                    overrun.returned, overrun.len
                )));
            }
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".to_owned());
            set_last(owned(format!("fdring panicked (a bug): {what}")));
            FDRING_PANIC
        }
    }
}

/// Like [`guard`], for a function whose answer is a value, not a code:
/// `fallback` on failure (the last message says why).
pub(crate) fn guard_value<T>(fallback: T, body: impl FnOnce() -> Result<T, Failure>) -> T {
    let mut out = None;
    let code = guard(|| {
        out = Some(body()?);
        Ok(())
    });
    match (code, out) {
        (FDRING_OK, Some(value)) => value,
        _ => fallback,
    }
}

/// A static description of an error code, such as "the ring is full";
/// "unknown error code" for a number that is none. Never NULL; the string
/// lives for the whole program.
#[no_mangle]
pub extern "C" fn fdring_strerror(code: c_int) -> *const c_char {
    let text: &'static CStr = match code {
        0 => c"success",
        1 => c"the ring is full",
        2 => c"the ring is empty",
        3 => c"timed out",
        4 => c"the other end is gone (disconnected)",
        5 => c"the other end is still there",
        6 => c"the peer corrupted the ring",
        7 => c"rejected: the fds, the header or the offer were not acceptable",
        8 => c"the frame is larger than the ring can ever hold",
        9 => c"the two frame ends disagree on the payload alignment",
        10 => c"committed or released more items than were reserved",
        11 => c"exhausted: memory, huge pages, locked memory or indices",
        12 => c"a system call failed",
        13 => c"invalid argument",
        14 => c"fdring panicked (a bug); the panic was caught",
        15 => c"an error unknown to this version of the header",
        _ => c"unknown error code",
    };
    text.as_ptr()
}

/// The message of the last failed call on this thread, such as "ring
/// rejected: the item size is 8, expected 4": like `errno`, set by every
/// call that fails and left as it was by one that succeeds. Never NULL;
/// valid until the next failing call on this thread.
#[no_mangle]
pub extern "C" fn fdring_last_error_message() -> *const c_char {
    LAST.try_with(|cell| match &*cell.borrow() {
        Last::Static(text) => text.as_ptr(),
        Last::Owned(text) => text.as_ptr(),
    })
    .unwrap_or(c"no error".as_ptr())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_a_code_and_a_message() {
        let code = guard(|| panic!("on purpose"));
        assert_eq!(code, FDRING_PANIC);
        // SAFETY: the pointer is a NUL-terminated string owned by this
        // thread's last error, valid until the next failure.
        let message = unsafe { CStr::from_ptr(fdring_last_error_message()) };
        assert!(message.to_str().unwrap().contains("on purpose"));
    }

    #[test]
    fn every_code_has_its_own_text() {
        let texts: Vec<_> = (0..=16)
            // SAFETY: `fdring_strerror` returns static NUL-terminated text.
            .map(|code| unsafe { CStr::from_ptr(fdring_strerror(code)) })
            .collect();
        for (i, a) in texts.iter().enumerate() {
            assert!(texts[i + 1..].iter().all(|b| a != b), "{a:?} twice");
        }
    }
}
