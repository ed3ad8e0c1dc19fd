//! Driving mio and tokio from a test: waiting for a token's event with a
//! deadline, polling a future once, and the runtimes.

use std::future::{poll_fn, Future};
use std::io::ErrorKind;
use std::task::Poll as TaskPoll;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token};

/// The token of a test's one registered end.
pub(crate) const RING: Token = Token(7);

/// Polls `poll` until an event for `token` arrives; panics if none comes
/// within `within` (a missed wake-up). Returns how many polls it took.
#[track_caller]
pub(crate) fn wait_for(
    poll: &mut Poll,
    events: &mut Events,
    token: Token,
    within: Duration,
    what: &str,
) -> u32 {
    let deadline = Instant::now() + within;
    let mut polls = 0;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match poll.poll(events, Some(left)) {
            Ok(()) => polls += 1,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => panic!("poll: {e}"),
        }
        if events.iter().any(|event| event.token() == token) {
            return polls;
        }
        if Instant::now() >= deadline {
            panic!("{what}: no event within {within:?}: a missed wake-up");
        }
    }
}

/// Polls `future` once: `Some` with its output, or `None` if it is
/// pending (it then stays pinned where it is, with its waker registered).
pub(crate) async fn poll_once<F: Future + Unpin>(future: &mut F) -> Option<F::Output> {
    poll_fn(|cx| {
        TaskPoll::Ready(match std::pin::Pin::new(&mut *future).poll(cx) {
            TaskPoll::Ready(output) => Some(output),
            TaskPoll::Pending => None,
        })
    })
    .await
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

pub(crate) fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}
