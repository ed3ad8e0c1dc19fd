//! [`Fds`]: the bundle of fds one end of a ring is made of.

use std::os::fd::OwnedFd;

#[cfg(doc)]
use super::{Receiver, Sender};

/// The fds that make up one end of a ring: what [`Sender::into_fds`] and
/// [`Receiver::into_fds`] give and the `open_` calls take.
///
/// Both ends share the memfd; each has its own end of a connected socket
/// pair, and the ring's header records which socket is whose. So a bundle
/// opens only as the end it came from, and only with the memfd of its own
/// ring: anything else is refused at open
/// ([`Rejection::WrongRole`](crate::Rejection::WrongRole),
/// [`Rejection::ForeignWakeSocket`](crate::Rejection::ForeignWakeSocket)),
/// never opened to lose items later. Only one sender and one receiver may
/// use a ring at a time.
///
/// ```
/// let (tx, rx) = fdring::channel::<u64>(512)?;
/// let fdring::Fds { memfd, wake } = rx.into_fds()?;
/// // ... hand `memfd` and `wake` to another process, which rebuilds the bundle:
/// let mut rx = fdring::Receiver::<u64>::from_fds(fdring::Fds { memfd, wake })?;
///
/// // The sender's bundle is not a receiver's.
/// let refused = fdring::Receiver::<u64>::from_fds(tx.into_fds()?).unwrap_err();
/// assert!(matches!(
///     refused,
///     fdring::Error::Rejected(fdring::Rejection::WrongRole { .. })
/// ));
/// # Ok::<(), fdring::Error>(())
/// ```
#[derive(Debug)]
pub struct Fds {
    /// The sealed memfd holding the header and the data.
    pub memfd: OwnedFd,
    /// This end's wake-up socket: one end of a connected Unix stream
    /// socket pair whose other end the peer holds. The peer sends a byte on
    /// it to wake this end; it hangs up when the peer is gone.
    pub wake: OwnedFd,
}
