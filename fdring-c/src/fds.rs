//! Handing an end over: `fdring_fds` (the memfd and the wake-up socket of
//! one end, as plain ints), reading the pair a parent left in the
//! environment, and `fdring_options` (the Rust `Builder`).

use std::ffi::{c_char, c_int, CStr};
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::time::Duration;

use fdring::{Builder, Fds};

use crate::error::{fdring_error, guard, invalid, Failure};

/// The two fds one end of a ring is made of: what the `_into_fds` calls
/// give and the `_from_fds` calls take (and close, whether they succeed
/// or not). Hand both to the other process: as inherited fds (see
/// `fdring_fds_inherited`), or over a Unix socket with `SCM_RIGHTS`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
#[allow(non_camel_case_types)]
pub struct fdring_fds {
    /// The sealed memfd holding the ring.
    pub memfd: c_int,
    /// This end's wake-up socket.
    pub wake: c_int,
}

impl fdring_fds {
    pub(crate) fn from_rust(fds: Fds) -> fdring_fds {
        fdring_fds {
            memfd: fds.memfd.into_raw_fd(),
            wake: fds.wake.into_raw_fd(),
        }
    }

    /// Takes ownership of the two fds.
    ///
    /// # Safety
    ///
    /// Both must be open fds that the caller owns and gives up.
    pub(crate) unsafe fn into_rust(self) -> Result<Fds, Failure> {
        if self.memfd < 0 || self.wake < 0 || self.memfd == self.wake {
            // Close what can be closed: the call takes the fds either way.
            for fd in [self.memfd, self.wake] {
                if fd >= 0 {
                    // SAFETY: the caller gives up this fd (contract above).
                    drop(unsafe { OwnedFd::from_raw_fd(fd) });
                }
                if self.memfd == self.wake {
                    break;
                }
            }
            return Err(invalid(format!(
                "fds {} and {}: two distinct open fds are needed",
                self.memfd, self.wake
            )));
        }
        // SAFETY: distinct, non-negative, owned and given up by the caller.
        // Whatever they really are, the open calls check them (memfd,
        // seals, size, header; a connected Unix stream socket of this ring)
        // before anything is mapped.
        Ok(unsafe {
            Fds {
                memfd: OwnedFd::from_raw_fd(self.memfd),
                wake: OwnedFd::from_raw_fd(self.wake),
            }
        })
    }
}

/// Options for creating a ring or opening a received one (the Rust
/// `Builder`). Start from `fdring_options_default()` and change fields.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
#[allow(non_camel_case_types)]
pub struct fdring_options {
    /// The least number of items (for frames: bytes) the ring holds when
    /// created; rounded up to whole pages. Unused when opening.
    pub capacity: usize,
    /// A tag naming the item type: written at creation, required to match
    /// when opening if `check_type_tag`.
    pub type_tag: u64,
    /// When opening: refuse a ring whose tag is not `type_tag`. (At
    /// creation the tag is written either way.)
    pub check_type_tag: bool,
    /// Back the ring with huge pages (creation only).
    pub huge_pages: bool,
    /// Lock this end's mapping into RAM.
    pub mlock: bool,
    /// Fault the whole ring in at creation (the default).
    pub prefault: bool,
    /// When opening: the most items a received ring may hold; 0 means the
    /// default bound of 1 GiB of data.
    pub max_capacity: usize,
    /// How long a blocking call spins before it sleeps, in nanoseconds
    /// (default 20000).
    pub spin_ns: u64,
}

/// The default options: no capacity yet, tag 0 not checked, normal pages,
/// pre-faulted, no mlock, default spin and size bound.
#[no_mangle]
pub extern "C" fn fdring_options_default() -> fdring_options {
    fdring_options {
        capacity: 0,
        type_tag: 0,
        check_type_tag: false,
        huge_pages: false,
        mlock: false,
        prefault: true,
        max_capacity: 0,
        spin_ns: fdring::DEFAULT_SPIN.as_nanos() as u64,
    }
}

/// The `Builder` of `options` (the defaults for NULL), to create a ring
/// (`opening` false: a non-zero tag is written) or to open one (`opening`
/// true: the tag is required only if `check_type_tag`).
///
/// # Safety
///
/// `options` is NULL or points to a valid `fdring_options`.
pub(crate) unsafe fn builder(options: *const fdring_options, opening: bool) -> Builder {
    // SAFETY: NULL or valid, by the caller's contract.
    let options = unsafe { options.as_ref() }
        .copied()
        .unwrap_or_else(|| fdring_options_default());
    let mut builder = Builder::new()
        .capacity(options.capacity)
        .huge_pages(options.huge_pages)
        .mlock(options.mlock)
        .prefault(options.prefault)
        .spin(Duration::from_nanos(options.spin_ns));
    let tagged = if opening {
        options.check_type_tag
    } else {
        options.type_tag != 0
    };
    if tagged {
        builder = builder.type_tag(options.type_tag);
    }
    if options.max_capacity != 0 {
        builder = builder.max_capacity(options.max_capacity);
    }
    builder
}

/// Reads the fds a parent handed to this process by name (the Rust
/// `fdring::handoff::inherit`): the environment variable `name`, holding
/// `memfd,wake` in decimal, with both fds checked to be open; they are
/// made close-on-exec again, and each name is taken once. The caller then
/// owns them (pass them to a `_from_fds` call).
///
/// Errors: `FDRING_REJECTED` if the variable is missing or malformed or
/// the fds are not open; `FDRING_INVALID_ARGUMENT` for a name that is not
/// UTF-8.
///
/// # Safety
///
/// `name` is a NUL-terminated string and `out` points to an `fdring_fds`.
#[no_mangle]
pub unsafe extern "C" fn fdring_fds_inherited(
    name: *const c_char,
    out: *mut fdring_fds,
) -> fdring_error {
    guard(|| {
        // SAFETY: the caller's contract.
        let name = unsafe { c_str(name)? };
        let fds = fdring::handoff::inherited(name)?;
        // SAFETY: the caller's contract.
        unsafe { put(out, fdring_fds::from_rust(fds)) }
    })
}

/// `name` as UTF-8.
///
/// # Safety
///
/// `name` is NULL or a NUL-terminated string that outlives `'a`.
pub(crate) unsafe fn c_str<'a>(name: *const c_char) -> Result<&'a str, Failure> {
    if name.is_null() {
        return Err(invalid("a NULL string"));
    }
    // SAFETY: NUL-terminated, by the caller's contract.
    unsafe { CStr::from_ptr(name) }
        .to_str()
        .map_err(|_| invalid("a string that is not UTF-8"))
}

/// Writes `value` to the out-pointer `out`.
///
/// # Safety
///
/// `out` is NULL (refused) or valid for a write of `T`.
pub(crate) unsafe fn put<T>(out: *mut T, value: T) -> Result<(), Failure> {
    if out.is_null() {
        return Err(invalid("a NULL out-pointer"));
    }
    // SAFETY: non-NULL and valid, by the caller's contract.
    unsafe { out.write(value) };
    Ok(())
}
