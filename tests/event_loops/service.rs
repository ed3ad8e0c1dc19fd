//! A service's listener in event loops: one `mio::Poll` (and one tokio
//! runtime) serves the listener, the connections it accepted and their
//! rings together, with client child processes that find the listener by
//! name; a listener registered after clients queued still gets an event; a
//! tokio task waiting in `accept` uses no CPU and loses no client when
//! cancelled.
//!
//! The clients are this test binary run again in the role
//! `service_offer_receiver`, given only the service's name. The names carry
//! the test process's pid, so that concurrent runs cannot collide.

use std::collections::HashMap;
use std::future::{poll_fn, Future};
use std::io::{Read, Write};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixStream};
use std::time::{Duration, Instant};

use crate::common::{check_seq, env, env_u64, report, seed, spawn_bounded, ChildProc, Rng, HANG};
use crate::idle::{thread_cpu_time, IDLE_CPU_LIMIT};
use crate::peers::COUNT_ENV;
use crate::runtimes::{current_thread_runtime, poll_once, runtime};
use fdring::mio::EventLoopExt;
use fdring::service::{self, Connection, Listener, ABSTRACT_PREFIX};
use fdring::tokio::{AsyncListener, AsyncReceiver};
use fdring::{Builder, Error, Receiver, Rejection};
use mio::{Events, Interest, Poll, Token};

/// The service name a client connects to.
pub(crate) const SERVICE_ENV: &str = "FDRING_TEST_SERVICE";

/// How many clients stream to one loop.
const CLIENTS: usize = 3;

/// Items each client streams (`FDRING_TEST_SERVICE_ITEMS`).
fn items() -> u64 {
    env_u64("FDRING_TEST_SERVICE_ITEMS", 300_000)
}

/// A name of this test process for `what`.
fn service_name(what: &str) -> String {
    format!("evl-{what}-{}", std::process::id())
}

/// A raw connection to the listener of `name`, outside the protocol: what
/// a client that stays silent, or sends half a message, looks like. It
/// returns once the kernel queued it.
fn raw_client(name: &str) -> UnixStream {
    let addr = SocketAddr::from_abstract_name(format!("{ABSTRACT_PREFIX}{name}"))
        .expect("an abstract address");
    UnixStream::connect_addr(&addr).expect("connecting to the listener")
}

/// Child: connects to the service in `FDRING_TEST_SERVICE`, offers it the
/// receiving end of a ring of 1024 `u64`, and streams `0..COUNT` in random
/// batches with random pauses (so that the listener's side often finds its
/// ring empty and arms), then closes the ring and reports.
pub(crate) fn role_service_offer_receiver() {
    let name = env(SERVICE_ENV).expect("FDRING_TEST_SERVICE");
    let total = env_u64(COUNT_ENV, 1000);
    let mut connection = service::connect(&name).expect("connect");
    // The listener is the test process, which spawned this one.
    assert_eq!(
        connection.peer().pid,
        rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get() as u32),
        "the listener the kernel names"
    );
    let mut tx = connection
        .offer_receiver::<u64>(&Builder::new().capacity(1024))
        .expect("offer_receiver");
    drop(connection);
    let mut rng = Rng::new(seed());
    let mut next = 0u64;
    while next < total {
        if rng.next_u64() % 64 == 0 {
            std::thread::sleep(Duration::from_micros(rng.range(0, 1000)));
        }
        let sent = tx.send_with(|slots| {
            let n = rng.take(slots.len()).min((total - next) as usize);
            for (k, slot) in slots[..n].iter_mut().enumerate() {
                slot.write(next + k as u64);
            }
            n
        });
        next += sent.expect("send_with") as u64;
    }
    drop(tx);
    report(&format!("sent count={next}"));
}

fn spawn_clients(name: &str) -> Vec<ChildProc> {
    (0..CLIENTS)
        .map(|_| {
            ChildProc::spawn("service_offer_receiver", |command| {
                command
                    .env(SERVICE_ENV, name)
                    .env(COUNT_ENV, items().to_string());
            })
        })
        .collect()
}

/// Checks that every child reported its whole stream and exited normally,
/// and that the streams received came from exactly these children.
#[track_caller]
fn finish_clients(children: Vec<ChildProc>, received: &HashMap<u32, u64>) {
    let mut pids: Vec<u32> = children.iter().map(ChildProc::id).collect();
    let mut from: Vec<u32> = received.keys().copied().collect();
    pids.sort_unstable();
    from.sort_unstable();
    assert_eq!(from, pids, "the clients the kernel named");
    for (pid, count) in received {
        assert_eq!(*count, items(), "items received from client {pid}");
    }
    for mut child in children {
        child.expect_line("sent", HANG);
        child.finish();
    }
}

const LISTENER: Token = Token(0);

/// A client of the mio loop.
enum Client {
    /// Accepted; its offer may not be there yet.
    Negotiating(Connection),
    /// Its ring, the next item expected, and the client's pid.
    Streaming(Box<Receiver<u64>>, u64, u32),
}

/// Polls once, with the loop's deadline; panics once it is past.
#[track_caller]
fn poll_until(poll: &mut Poll, events: &mut Events, deadline: Instant, what: &str) {
    let left = deadline.saturating_duration_since(Instant::now());
    assert!(!left.is_zero(), "{what}: no event within {HANG:?}");
    let timeout = fdring::poll_timeout().map_or(left, |slice| slice.min(left));
    match poll.poll(events, Some(timeout)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
        Err(e) => panic!("poll: {e}"),
    }
}

/// One `mio::Poll` serves a listener, the connections it accepts and the
/// rings they carry, all non-blocking: 3 client processes connect by name
/// as they start, each offers a ring and streams into it; the loop takes
/// each offer when its connection reports it, registers the ring, and
/// receives from every ring until it is `Disconnected`. Two more clients
/// of this process break the protocol: one sends half a message (its take
/// fails at once) and one stays silent, which holds nothing up, and whose
/// hang-up is `Disconnected` at once. Fails by its deadline if the
/// listener's or a connection's registration reports nothing.
#[test]
fn mio_one_poll_serves_a_listener_its_connections_and_their_rings() {
    let name = service_name("mio");
    let mut listener = Listener::bind(&name).expect("bind");
    let mut poll = Poll::new().expect("Poll");
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)
        .expect("register the listener");
    let children = spawn_clients(&name);
    let silent = raw_client(&name);
    let mut half = raw_client(&name);
    half.write_all(&[0x5a; 32]).expect("half a message");

    let mut events = Events::with_capacity(64);
    let mut clients: HashMap<Token, Client> = HashMap::new();
    let mut received: HashMap<u32, u64> = HashMap::new();
    let mut broken = Vec::new();
    let (mut next_token, mut accepted, mut armings) = (1, 0, 0u64);
    let deadline = Instant::now() + HANG;
    while received.len() < CLIENTS {
        poll_until(&mut poll, &mut events, deadline, "serving the clients");
        for event in &events {
            let token = event.token();
            if token == LISTENER {
                while let Some(mut connection) = listener.try_accept().expect("try_accept") {
                    let token = Token(next_token);
                    next_token += 1;
                    accepted += 1;
                    poll.registry()
                        .register(&mut connection, token, Interest::READABLE)
                        .expect("register a connection");
                    clients.insert(token, Client::Negotiating(connection));
                }
                continue;
            }
            let Some(client) = clients.get_mut(&token) else {
                continue;
            };
            if let Client::Negotiating(connection) = client {
                // The offer (or what stands for it) is there: no wait.
                let pid = connection.peer().pid;
                let taken = connection.take_receiver::<u64>(&Builder::new());
                poll.registry().deregister(connection).expect("deregister");
                match taken {
                    Ok(mut rx) => {
                        poll.registry()
                            .register(&mut rx, token, Interest::READABLE)
                            .expect("register a ring");
                        *client = Client::Streaming(Box::new(rx), 0, pid);
                    }
                    Err(e) => {
                        broken.push(e);
                        clients.remove(&token);
                        continue;
                    }
                }
            }
            let Client::Streaming(rx, next, pid) = client else {
                continue;
            };
            let finished = loop {
                let got = rx.try_or_arm(|rx| {
                    rx.try_recv_with(|items: &[u64]| {
                        check_seq(items, *next);
                        items.len()
                    })
                });
                match got {
                    Ok(n) => *next += n as u64,
                    Err(Error::Empty) => {
                        armings += 1;
                        break false;
                    }
                    Err(Error::Disconnected) => break true,
                    Err(e) => panic!("receiving from client {pid}: {e}"),
                }
            };
            if finished {
                received.insert(*pid, *next);
                poll.registry().deregister(rx).expect("deregister a ring");
                clients.remove(&token);
            }
        }
    }
    eprintln!(
        "mio service loop: {accepted} accepted, {} items, {armings} armings",
        received.values().sum::<u64>()
    );
    assert_eq!(accepted, CLIENTS + 2, "every client was accepted");
    assert!(
        matches!(
            broken.as_slice(),
            [Error::Rejected(Rejection::BadHandoff(what))] if what.contains("32 bytes")
        ),
        "the half message is refused at once: {broken:?}"
    );
    // Only the silent client is left, and its hang-up is an event and
    // `Disconnected` at once.
    assert_eq!(clients.len(), 1, "the silent client waits");
    drop(silent);
    poll_until(
        &mut poll,
        &mut events,
        deadline,
        "the silent client's hang-up",
    );
    let (token, client) = clients.iter_mut().next().expect("the silent client");
    assert!(events.iter().any(|event| event.token() == *token));
    let Client::Negotiating(connection) = client else {
        panic!("the silent client offered nothing");
    };
    assert_eq!(
        connection.take_receiver::<u64>(&Builder::new()).err(),
        Some(Error::Disconnected)
    );
    drop(half);
    finish_clients(children, &received);
}

/// Connections that the kernel queued before the listener was registered
/// are reported by the registration itself: the first poll has an event
/// for the listener, and `try_accept` drains every queued client. After
/// that drain, a new client is a new event. Fails (no event) if the
/// listener registers nothing.
#[test]
fn mio_listener_reports_clients_queued_before_it_was_registered() {
    let name = service_name("mio-queued");
    let mut listener = Listener::bind(&name).expect("bind");
    // Both connected (queued by the kernel) before the registration.
    let mut early = [raw_client(&name), raw_client(&name)];
    let mut poll = Poll::new().expect("Poll");
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)
        .expect("register");
    let mut events = Events::with_capacity(8);
    let deadline = Instant::now() + HANG;
    poll_until(&mut poll, &mut events, deadline, "clients queued before");
    assert!(
        events.iter().any(|event| event.token() == LISTENER),
        "the registration reports the queued clients"
    );
    let mut drained = Vec::new();
    while let Some(connection) = listener.try_accept().expect("try_accept") {
        drained.push(connection);
    }
    assert_eq!(drained.len(), 2, "one event, every queued client");
    for connection in &drained {
        assert_eq!(connection.peer().pid, std::process::id());
    }
    // Each was greeted: a 64-byte WELCOME.
    for client in &mut early {
        let mut greeting = [0u8; 64];
        client.read_exact(&mut greeting).expect("the greeting");
        assert_eq!(&greeting[..6], b"FDRSVC");
    }
    // Drained: a client that comes now is a new edge.
    let _late = raw_client(&name);
    let mut seen = false;
    while !seen {
        poll_until(&mut poll, &mut events, deadline, "a client after the drain");
        seen = events.iter().any(|event| event.token() == LISTENER);
    }
    assert!(listener.try_accept().expect("try_accept").is_some());
    assert!(listener.try_accept().expect("try_accept").is_none());
}

/// The same clients as the mio test, served by one tokio runtime: an
/// `AsyncListener` accepts them as they come, one task per client takes
/// its ring (off the runtime's threads, with `spawn_blocking`) and
/// receives from it with an `AsyncReceiver` until `Disconnected`, while
/// the accept loop goes on. A silent client of this process holds up
/// nothing, and its negotiation ends with `Disconnected` when it hangs up.
#[test]
fn tokio_async_listener_serves_clients_with_a_task_each() {
    let name = service_name("tokio");
    let listener = Listener::bind(&name).expect("bind");
    let children = spawn_clients(&name);
    let silent = raw_client(&name);
    let (received, silent_end) = runtime().block_on(async {
        // Clients queued before this registration are accepted all the same.
        let listener = AsyncListener::new(listener).expect("AsyncListener::new");
        let (mut streams, mut silent_task) = (Vec::new(), None);
        for _ in 0..=CLIENTS {
            let connection = tokio::time::timeout(HANG, listener.accept())
                .await
                .expect("a client within the deadline")
                .expect("accept");
            let ours = connection.peer().pid == std::process::id();
            let task = tokio::spawn(serve_client(connection));
            if ours {
                silent_task = Some(task);
            } else {
                streams.push(task);
            }
        }
        let mut received = HashMap::new();
        for task in streams {
            let (pid, count) = tokio::time::timeout(HANG, task)
                .await
                .expect("a stream ends")
                .expect("no panic")
                .expect("a client's stream");
            received.insert(pid, count);
        }
        // Every stream is done while the silent client still waits.
        let silent_task = silent_task.expect("the silent client was accepted");
        assert!(
            !silent_task.is_finished(),
            "the silent client offered nothing"
        );
        drop(silent);
        let silent_end = tokio::time::timeout(HANG, silent_task)
            .await
            .expect("the silent client's task ends")
            .expect("no panic");
        (received, silent_end)
    });
    assert_eq!(silent_end.err(), Some(Error::Disconnected));
    finish_clients(children, &received);
}

/// A client's task: takes its ring, then receives every item.
async fn serve_client(mut connection: Connection) -> Result<(u32, u64), Error> {
    let pid = connection.peer().pid;
    let rx = tokio::task::spawn_blocking(move || connection.take_receiver::<u64>(&Builder::new()))
        .await
        .expect("the negotiation does not panic")?;
    let mut rx = AsyncReceiver::new(rx)?;
    let mut next = 0u64;
    loop {
        let got = rx
            .recv_with(|items: &[u64]| {
                check_seq(items, next);
                items.len()
            })
            .await;
        match got {
            Ok(n) => next += n as u64,
            Err(Error::Disconnected) => return Ok((pid, next)),
            Err(e) => return Err(e),
        }
    }
}

/// A task waiting in `accept` (and in `poll_accept`) after a first client,
/// so that the reactor reported the listener readable once, uses no CPU
/// while nobody connects; an `accept` dropped while pending (by a timeout,
/// or after one poll) loses no client: the next `accept` gets the one that
/// came. Fails (hangs, or spins) if `accept` or `poll_accept` does not
/// clear the readiness it found stale.
#[test]
fn tokio_accept_waits_without_cpu_and_cancelling_it_loses_no_client() {
    let name = service_name("tokio-idle");
    let done = spawn_bounded("the accepting runtime", move || {
        current_thread_runtime().block_on(async {
            let listener = AsyncListener::new(Listener::bind(&name).expect("bind"))
                .expect("AsyncListener::new");
            let _first = raw_client(&name);
            listener.accept().await.expect("the first client");

            let mut accept = Box::pin(listener.accept());
            let (polls, cpu) = idle_second(poll_fn(|cx| accept.as_mut().poll(cx))).await;
            assert!(
                polls <= 3,
                "accept: {polls} polls while idle: the task spins"
            );
            assert!(cpu < IDLE_CPU_LIMIT, "accept: {cpu:?} of CPU while idle");
            // Dropped by the timeout; a client that comes now is the next
            // `accept`'s.
            drop(accept);
            let _second = raw_client(&name);
            listener.accept().await.expect("the second client");

            let (polls, cpu) = idle_second(poll_fn(|cx| listener.poll_accept(cx))).await;
            assert!(
                polls <= 3,
                "poll_accept: {polls} polls while idle: the task spins"
            );
            assert!(
                cpu < IDLE_CPU_LIMIT,
                "poll_accept: {cpu:?} of CPU while idle"
            );

            // Dropped after one poll, with its waker registered; the client
            // comes after that.
            let mut pending = Box::pin(listener.accept());
            assert!(poll_once(&mut pending).await.is_none(), "nobody yet");
            let mut third = raw_client(&name);
            drop(pending);
            let connection = listener.accept().await.expect("the third client");
            assert_eq!(connection.peer().pid, std::process::id());
            let mut greeting = [0u8; 64];
            third.read_exact(&mut greeting).expect("greeted");
            assert!(listener
                .get_ref()
                .try_accept()
                .expect("try_accept")
                .is_none());
        })
    });
    done.join_within(HANG);
}

/// Runs `accept` (a pending accept) for a second with nobody connecting:
/// how many times it was polled, and this thread's CPU time meanwhile.
async fn idle_second<F>(accept: F) -> (u32, Duration)
where
    F: std::future::Future<Output = Result<Connection, Error>>,
{
    let mut accept = std::pin::pin!(accept);
    let mut polls = 0u32;
    let (cpu_before, started) = (thread_cpu_time(), Instant::now());
    let outcome = tokio::time::timeout(
        Duration::from_secs(1),
        poll_fn(|cx| {
            polls += 1;
            accept.as_mut().poll(cx)
        }),
    )
    .await;
    let (cpu, waited) = (thread_cpu_time() - cpu_before, started.elapsed());
    assert!(outcome.is_err(), "nobody connected, yet: {outcome:?}");
    eprintln!("tokio accept idle for {waited:?}: {cpu:?} of CPU, {polls} polls");
    (polls, cpu)
}
