//! [`Stats`]: the counters each end keeps.

/// Counters kept by each end, cheap enough to be always on.
///
/// ```
/// let (mut tx, mut rx) = fdring::channel::<u64>(512)?;
/// for i in 0..100 {
///     tx.send(i)?;
///     rx.recv()?;
/// }
/// // Nobody ever waited, so no wake-up was sent.
/// assert_eq!(tx.stats().wakeups, 0);
/// # Ok::<(), fdring::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Wake-ups this end sent its peer: one `send` system call each. At
    /// most one per time the peer armed: a peer that armed and then found
    /// progress on its re-check may be woken without sleeping, so this can
    /// exceed the peer's `sleeps` by a little.
    pub wakeups: u64,
    /// Times this end went to sleep on its wake-up socket.
    pub sleeps: u64,
}
