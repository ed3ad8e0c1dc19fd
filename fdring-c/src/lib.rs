//! The C library of fdring: `libfdring_c.a` / `libfdring_c.so` and the
//! header `include/fdring.h` (written by `build.rs` with cbindgen), so
//! that C and C++ programs share fdring's hardened rings without
//! re-implementing the format.
//!
//! Each file is one idea: [`error`] (the codes, the last message per
//! thread, and the guard that keeps panics from crossing into C), [`fds`]
//! (handing an end over, and the options), [`items`] (rings of items:
//! reserve / commit, copy helpers), [`frames`] (rings of frames) and
//! [`services`] (finding each other by name).
//!
//! The rules, for every function: a handle is used by one thread at a
//! time and freed once by its `_free` (or given up by its `_into_fds`);
//! passing NULL where a handle is required is refused with
//! `FDRING_INVALID_ARGUMENT` where it is cheap to see, but a freed or
//! foreign handle is undefined behaviour, as in C. Everything the peer
//! process controls is checked by the Rust crate, as for a Rust user. No
//! call panics across the boundary: a panic is caught and returned as
//! `FDRING_PANIC`. Timeouts are `uint64_t` nanoseconds. See `docs/c.md`.

#![deny(missing_docs, missing_debug_implementations)]
#![warn(clippy::undocumented_unsafe_blocks)]
// The C names are the API.
#![allow(non_camel_case_types)]

pub mod error;
pub mod fds;
pub mod frames;
pub mod items;
pub mod services;

pub use error::fdring_error;
pub use fds::{fdring_fds, fdring_options};
pub use frames::{fdring_frame_receiver, fdring_frame_sender};
pub use items::{fdring_receiver, fdring_sender, fdring_stats};
pub use services::{fdring_connection, fdring_credentials, fdring_listener};
