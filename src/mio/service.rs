//! The service's [`Listener`] and [`Connection`] as [`Source`]s: one
//! loop accepts clients, takes their rings and serves those rings; see
//! the [parent module](super#services).

use std::io;
use std::os::fd::{AsFd, AsRawFd};

use ::mio::event::Source;
use ::mio::unix::SourceFd;
use ::mio::{Interest, Registry, Token};

use crate::service::{Connection, Listener};

/// `mio::event::Source` for a type whose one fd ([`AsFd`]) is registered
/// for readable, whatever the interests say.
macro_rules! readable_source {
    ($(#[$doc:meta])* $ty:ty) => {
        $(#[$doc])*
        impl Source for $ty {
            fn register(&mut self, registry: &Registry, token: Token, _: Interest) -> io::Result<()> {
                SourceFd(&self.as_fd().as_raw_fd()).register(registry, token, Interest::READABLE)
            }

            fn reregister(&mut self, registry: &Registry, token: Token, _: Interest) -> io::Result<()> {
                SourceFd(&self.as_fd().as_raw_fd()).reregister(registry, token, Interest::READABLE)
            }

            fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
                SourceFd(&self.as_fd().as_raw_fd()).deregister(registry)
            }
        }
    };
}

readable_source! {
    /// Registers the listening socket, for readable whatever `interests` says:
    /// an event means "clients wait". After each event call
    /// [`Listener::try_accept`] until it returns `Ok(None)`; a
    /// `Rejected(PeerNotAllowed)` or `Disconnected` from it is about one
    /// client, go on. See the [module documentation](super#services).
    ///
    /// ```
    /// use fdring::service::Listener;
    /// use mio::{Events, Interest, Poll, Token};
    ///
    /// # let name = &format!("doc-mio-listener-{}", std::process::id());
    /// let mut listener = Listener::bind(name)?;
    /// let client = std::thread::spawn({
    ///     let name = name.clone();
    ///     move || fdring::service::connect(&name).map(|_| ())
    /// });
    /// let mut poll = Poll::new()?;
    /// poll.registry().register(&mut listener, Token(0), Interest::READABLE)?;
    /// let mut events = Events::with_capacity(4);
    /// let mut accepted = 0;
    /// while accepted == 0 {
    ///     poll.poll(&mut events, None)?;
    ///     while let Some(connection) = listener.try_accept()? {
    ///         assert_eq!(connection.peer().pid, std::process::id());
    ///         accepted += 1;
    ///     }
    /// }
    /// client.join().unwrap()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    Listener
}

readable_source! {
    /// Registers the connection's socket, for readable whatever `interests`
    /// says: an event means the peer's next message is there, or the peer
    /// hung up, so that a `take_` call ([`Connection::take_receiver`] and the
    /// like) made then does not wait. See the
    /// [module documentation](super#services).
    ///
    /// ```
    /// use fdring::service::{self, Listener};
    /// use fdring::Builder;
    /// use mio::{Events, Interest, Poll, Token};
    ///
    /// # let name = &format!("doc-mio-connection-{}", std::process::id());
    /// let listener = Listener::bind(name)?;
    /// let client = std::thread::spawn({
    ///     let name = name.clone();
    ///     move || -> Result<(), fdring::Error> {
    ///         let mut connection = service::connect(&name)?;
    ///         connection.offer_receiver::<u32>(&Builder::new().capacity(512))?.send(7)
    ///     }
    /// });
    /// let mut connection = listener.accept()?;
    /// let mut poll = Poll::new()?;
    /// poll.registry().register(&mut connection, Token(1), Interest::READABLE)?;
    /// let mut events = Events::with_capacity(4);
    /// poll.poll(&mut events, None)?;
    /// // The offer is there: taking it does not wait.
    /// let mut rx = connection.take_receiver::<u32>(&Builder::new())?;
    /// poll.registry().deregister(&mut connection)?;
    /// assert_eq!(rx.recv()?, 7);
    /// client.join().unwrap()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    Connection
}
