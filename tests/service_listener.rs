//! What a service listener does about peers that misbehave before any
//! ring is agreed: a live listener at the path it binds whose queue is
//! full, and a client that connects and leaves before its greeting.
//!
//! What could hang runs in a child process (this test binary, in a role),
//! so that a regression kills the child, not the test runner: the parent
//! asserts the child exited normally and reported the error.

mod common;

use std::io::ErrorKind;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::{env, spawn_bounded, start_watchdog, ChildProc, CHILD_ENV, HANG};
use fdring::service::{self, Listener};
use fdring::{Builder, Error};

/// The entry point of every child process: runs the role named in
/// `FDRING_TEST_CHILD`, or nothing when run as a plain (ignored) test.
#[test]
#[ignore = "child process entry point, spawned by the tests"]
fn child_entry() {
    let Some(role) = env(CHILD_ENV) else {
        return;
    };
    start_watchdog(HANG + Duration::from_secs(30));
    match role.as_str() {
        "bind-path-over-a-full-queue" => bind_path_over_a_full_queue(),
        other => panic!("unknown child role {other}"),
    }
}

/// Child: another listener (it could be another user's, in a shared
/// directory) holds the path with a queue that is full because it never
/// accepts; `bind_path` there must answer `AddrInUse`, not wait for it.
fn bind_path_over_a_full_queue() {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("service.sock");
    let socket = |flags| {
        rustix::net::socket_with(AddressFamily::UNIX, SocketType::STREAM, flags, None)
            .expect("socket")
    };
    let addr = SocketAddrUnix::new(&path).expect("address");
    let occupant = socket(SocketFlags::CLOEXEC);
    rustix::net::bind(&occupant, &addr).expect("bind");
    rustix::net::listen(&occupant, 0).expect("listen");
    // Connect until the queue is full: a connect now would wait.
    let mut queued = Vec::new();
    loop {
        let client = socket(SocketFlags::CLOEXEC | SocketFlags::NONBLOCK);
        match rustix::net::connect(&client, &addr) {
            Ok(()) => queued.push(client),
            Err(rustix::io::Errno::AGAIN) => break,
            Err(e) => panic!("connecting to fill the queue: {e}"),
        }
        assert!(queued.len() < 1000, "the queue never filled");
    }
    common::report(&format!("full queued={}", queued.len()));
    match Listener::bind_path(&path) {
        Ok(_) => common::report("bound"),
        Err(Error::Io { source, .. }) => {
            common::report(&format!("refused kind={:?}", source.kind()));
        }
        Err(e) => common::report(&format!("refused other={e}")),
    }
}

#[test]
fn bind_path_refuses_a_live_listener_whose_queue_is_full_without_waiting_for_it() {
    let mut child = ChildProc::spawn("bind-path-over-a-full-queue", |_| {});
    child.expect_line("full", HANG);
    let line = child.expect_line("refused", HANG);
    assert_eq!(line, format!("refused kind={:?}", ErrorKind::AddrInUse));
    child.finish();
}

#[test]
fn bind_path_replaces_a_socket_file_nobody_listens_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("service.sock");
    // A listener that is gone and left its file (as after SIGKILL).
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let listener = Listener::bind_path(&path).unwrap();
    let client_path = path.clone();
    let client = spawn_bounded("client", move || {
        service::Connector::path(&client_path)
            .connect()
            .map(|c| c.peer().pid)
    });
    let server = spawn_bounded("listener", move || listener.accept().map(|c| c.peer().pid));
    assert_eq!(server.join_within(HANG), Ok(std::process::id()));
    assert_eq!(client.join_within(HANG), Ok(std::process::id()));
}

#[test]
fn accept_skips_a_client_that_left_before_its_greeting_and_accepts_the_next() {
    let name = format!("listener-test-{}", std::process::id());
    let listener = Listener::bind(&name).unwrap();
    // A client that connects and is gone before the listener gets to it.
    let address = std::os::unix::net::SocketAddr::from_abstract_name(format!(
        "{}{name}",
        service::ABSTRACT_PREFIX
    ))
    .unwrap();
    drop(UnixStream::connect_addr(&address).unwrap());
    // Then one that stays and offers a ring.
    let client_name = name.clone();
    let client = spawn_bounded("client", move || -> Result<u64, Error> {
        let mut connection = service::connect(&client_name)?;
        let mut tx = connection.offer_receiver::<u64>(&Builder::new().capacity(512))?;
        tx.send(7)?;
        Ok(7)
    });
    let server = spawn_bounded("listener", move || -> Result<u64, Error> {
        let mut connection = listener.accept()?;
        connection.take_receiver::<u64>(&Builder::new())?.recv()
    });
    assert_eq!(server.join_within(HANG), Ok(7));
    assert_eq!(client.join_within(HANG), Ok(7));
}
