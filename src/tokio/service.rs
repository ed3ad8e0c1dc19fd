//! [`AsyncListener`]: a service's [`Listener`] accepting on tokio's
//! reactor.

use std::fmt;
use std::io;
use std::os::fd::OwnedFd;
use std::task::{ready, Context, Poll};

use ::tokio::io::unix::AsyncFd;

use super::register;
use crate::service::{Connection, Listener};
use crate::Error;
// Named in the documentation only.
#[cfg(doc)]
use crate::{service::Access, Builder, Receiver};

/// A service's [`Listener`] on tokio's reactor: [`accept`](Self::accept)
/// waits for a client without holding a thread, so that one runtime serves
/// new clients and the rings of those it accepted together.
///
/// ```
/// use fdring::service::{self, Listener};
/// use fdring::tokio::{AsyncListener, AsyncReceiver};
/// use fdring::{Builder, Error};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Error> {
/// # let name = &format!("doc-async-listener-{}", std::process::id());
/// let listener = AsyncListener::new(Listener::bind(name)?)?;
/// // A client (a thread here; in real use any process of this user).
/// let client = std::thread::spawn({
///     let name = name.clone();
///     move || -> Result<(), Error> {
///         let mut connection = service::connect(&name)?;
///         let mut tx = connection.offer_receiver::<u64>(&Builder::new().capacity(1024))?;
///         for i in 0..10_000 {
///             tx.send(i)?;
///         }
///         Ok(())
///     }
/// });
/// let mut connection = listener.accept().await?;
/// // Taking the offer waits for the client (at most the connection's
/// // timeout): off the runtime's threads.
/// let rx = tokio::task::spawn_blocking(move || connection.take_receiver::<u64>(&Builder::new()))
///     .await
///     .expect("the negotiation does not panic")?;
/// let mut rx = AsyncReceiver::new(rx)?;
/// let mut next = 0;
/// while let Ok(item) = rx.recv().await {
///     assert_eq!(item, next);
///     next += 1;
/// }
/// assert_eq!(next, 10_000);
/// client.join().unwrap()?;
/// # Ok(())
/// # }
/// ```
///
/// # Negotiating in a task
///
/// The calls of a [`Connection`] ([`Connection::take_receiver`],
/// [`Connection::offer_receiver`] and the others) are blocking: each waits
/// for the peer up to the connection's timeout
/// ([`Listener::with_timeout`], 5 s by default), and a client that says
/// nothing makes it wait that long. Inside a task, run them with
/// [`tokio::task::spawn_blocking`](::tokio::task::spawn_blocking)
/// as above (move the connection in, get the end back, then wrap it in
/// [`AsyncReceiver`](super::AsyncReceiver) and the like); or, if every
/// client is trusted to answer at once, call them in the task with a short
/// timeout ([`Connection::set_timeout`]), which is then the longest a
/// silent client can stall the worker. There are no async versions of
/// them: a negotiation is a handful of messages per ring, once per client.
///
/// # Cancel safety
///
/// [`accept`](Self::accept) is cancel-safe: a client is accepted only in
/// the poll that returns it, so if the future is dropped before it
/// completes (the losing branch of `tokio::select!`, a timeout), no client
/// was accepted, and the kernel keeps every waiting one queued for the next
/// call.
pub struct AsyncListener {
    listener: Listener,
    /// A duplicate of the listening socket, registered for readable.
    ready: AsyncFd<OwnedFd>,
}

impl AsyncListener {
    /// Registers `listener` with the current tokio runtime's reactor.
    ///
    /// # Errors
    ///
    /// `Io` (with [`io::ErrorKind::Other`]) if called outside a tokio
    /// runtime; `Io` if the listening socket cannot be duplicated or
    /// registered. The listener is dropped then (its name is free again).
    ///
    /// # Panics
    ///
    /// In a runtime without I/O enabled (`enable_io` or `enable_all`), as
    /// tokio's `AsyncFd` does.
    ///
    /// ```
    /// use fdring::service::Listener;
    /// use fdring::tokio::AsyncListener;
    ///
    /// # let name = &format!("doc-async-listener-new-{}", std::process::id());
    /// // Outside a runtime: an error, and the listener is gone.
    /// let outside = AsyncListener::new(Listener::bind(name)?);
    /// assert!(matches!(outside, Err(fdring::Error::Io { .. })));
    /// let runtime = tokio::runtime::Builder::new_current_thread().enable_io().build()?;
    /// let listener = runtime.block_on(async { AsyncListener::new(Listener::bind(name)?) })?;
    /// assert_eq!(listener.get_ref().address(), format!("@fdring:{name}"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(listener: Listener) -> Result<AsyncListener, Error> {
        if let Err(outside) = ::tokio::runtime::Handle::try_current() {
            return Err(Error::io(
                "registering the service listener with tokio",
                io::Error::other(outside),
            ));
        }
        let ready = register(&listener, "registering the service listener with tokio")?;
        Ok(AsyncListener { listener, ready })
    }

    /// Waits for a client and accepts it if its process is allowed, as
    /// [`Listener::accept`] does, without blocking the task's thread.
    /// Several tasks may wait on one listener; each client goes to one of
    /// them.
    ///
    /// Reads nothing from the client: a client that connects and says
    /// nothing costs this call nothing (the negotiation that follows is
    /// where it waits, see [Negotiating in a task](Self#negotiating-in-a-task)).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: no client was accepted unless the call completes (see
    /// [Cancel safety](Self#cancel-safety)).
    ///
    /// # Errors
    ///
    /// `Rejected(PeerNotAllowed)` naming the client's pid, uid and gid if
    /// the listener's [`Access`] refuses it (the client is told), and
    /// `Disconnected` if the client left before it was greeted: both about
    /// that client only, call `accept` again. `Io` if the kernel fails the
    /// call (out of fds, for instance), or waiting fails.
    pub async fn accept(&self) -> Result<Connection, Error> {
        // A task accepting a flood of clients yields now and then, as
        // tokio's own listeners do.
        ::tokio::task::coop::consume_budget().await;
        loop {
            let mut guard = self
                .ready
                .readable()
                .await
                .map_err(|e| Error::io("waiting for a service connection", e))?;
            // `Ok(None)`: the readiness was stale (another task took the
            // client, or it was already accepted). `clear_ready` clears
            // only what the guard saw: a client that connected since keeps
            // the listener ready.
            match self.listener.try_accept()? {
                Some(connection) => return Ok(connection),
                None => guard.clear_ready(),
            }
        }
    }

    /// Polls to accept a client, as [`accept`](Self::accept): `Ready` with
    /// it (or with an error), or `Pending` with `cx`'s waker registered to
    /// be woken when a client may wait. Only the waker of the last call is
    /// kept: for several tasks on one listener, use `accept`.
    ///
    /// # Errors
    ///
    /// As for [`accept`](Self::accept).
    ///
    /// ```
    /// use std::future::poll_fn;
    /// use fdring::service::{self, Listener};
    /// use fdring::tokio::AsyncListener;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), fdring::Error> {
    /// # let name = &format!("doc-poll-accept-{}", std::process::id());
    /// let listener = AsyncListener::new(Listener::bind(name)?)?;
    /// let client = std::thread::spawn({
    ///     let name = name.clone();
    ///     move || service::connect(&name).map(|connection| connection.peer().pid)
    /// });
    /// let connection = poll_fn(|cx| listener.poll_accept(cx)).await?;
    /// assert_eq!(connection.peer().pid, std::process::id());
    /// // The client saw this process as the listener.
    /// assert_eq!(client.join().unwrap()?, std::process::id());
    /// # Ok(())
    /// # }
    /// ```
    pub fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<Result<Connection, Error>> {
        loop {
            let mut guard = ready!(self.ready.poll_read_ready(cx))
                .map_err(|e| Error::io("waiting for a service connection", e))?;
            match self.listener.try_accept() {
                Ok(Some(connection)) => return Poll::Ready(Ok(connection)),
                // Stale: cleared, and the next round registers the waker.
                Ok(None) => guard.clear_ready(),
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    /// The listener, for its address, or to accept without waiting
    /// ([`Listener::try_accept`]). Do not call [`Listener::accept`] on it
    /// inside a task: it blocks.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), fdring::Error> {
    /// # let name = &format!("doc-async-listener-ref-{}", std::process::id());
    /// let listener = fdring::tokio::AsyncListener::new(fdring::service::Listener::bind(name)?)?;
    /// assert!(listener.get_ref().try_accept()?.is_none());
    /// # Ok(())
    /// # }
    /// ```
    pub fn get_ref(&self) -> &Listener {
        &self.listener
    }

    /// Deregisters from the reactor and returns the listener; clients
    /// waiting to be accepted stay queued.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), fdring::Error> {
    /// # let name = &format!("doc-async-listener-inner-{}", std::process::id());
    /// let listener = fdring::tokio::AsyncListener::new(fdring::service::Listener::bind(name)?)?;
    /// let listener: fdring::service::Listener = listener.into_inner();
    /// # Ok(())
    /// # }
    /// ```
    pub fn into_inner(self) -> Listener {
        self.listener
    }
}

impl fmt::Debug for AsyncListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncListener")
            .field("listener", &self.listener)
            .finish_non_exhaustive()
    }
}
