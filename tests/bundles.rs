//! What a bundle of fds may be opened as: an inherited variable that names
//! one fd twice, a memfd of one ring with the wake-up socket of another, one
//! end's bundle opened as the other end, an end opened twice, and a header
//! whose indices are out of range. Each is refused when the bundle is taken
//! or opened, with an error that says what was wrong, never later as lost
//! data or a crash.
//!
//! What could crash runs in a child process (this test binary, in a role),
//! so that a regression kills the child, not the test runner: the parent
//! asserts the child exited normally and reported the error.

mod common;

use std::os::fd::AsRawFd;
use std::time::Duration;

use common::{env, start_watchdog, ChildProc, CHILD_ENV, HANG};
use fdring::{handoff, Error, Fds, Receiver, Rejection, Role, Sender};

/// The entry point of every child process: runs the role named in
/// `FDRING_TEST_CHILD`, or nothing when run as a plain (ignored) test.
#[test]
#[ignore = "child process entry point, spawned by the tests"]
fn child_entry() {
    let Some(role) = env(CHILD_ENV) else {
        return;
    };
    start_watchdog(Duration::from_secs(60));
    match role.as_str() {
        "inherit-one-fd-twice" => inherit_one_fd_twice(),
        other => panic!("unknown child role {other}"),
    }
}

/// Child: names one open fd as both the memfd and the wake-up socket, takes
/// the variable, and reports what it got. Taking it must be refused: two
/// owners of one fd would close it twice (a debug build aborts on that).
fn inherit_one_fd_twice() {
    let memfd = rustix::fs::memfd_create("fdring-test", rustix::fs::MemfdFlags::CLOEXEC)
        .expect("memfd_create");
    let n = memfd.as_raw_fd();
    std::env::set_var("FDRING_TEST_TWICE", format!("{n},{n}"));
    match handoff::inherited("FDRING_TEST_TWICE") {
        Ok(fds) => {
            drop(fds);
            common::report("taken");
        }
        Err(e) => common::report(&format!("refused {e}")),
    }
    // Still ours, and still open: nothing closed it behind our back.
    rustix::io::fcntl_getfd(&memfd).expect("the memfd is still open");
}

#[test]
fn an_inherited_variable_naming_one_fd_twice_is_refused() {
    let mut child = ChildProc::spawn("inherit-one-fd-twice", |_| {});
    let line = child.expect_line("refused", HANG);
    assert!(
        line.contains("FDRING_TEST_TWICE") && line.contains("the same fd twice"),
        "{line}"
    );
    child.finish();
}

#[test]
fn an_inherited_variable_that_is_missing_or_malformed_is_named_in_the_error() {
    let message = |name: &str| match handoff::inherited(name) {
        Err(Error::Rejected(Rejection::BadHandoff(what))) => what,
        other => panic!("{name}: {other:?}"),
    };
    assert_eq!(
        message("FDRING_TEST_NOT_SET"),
        "the environment variable FDRING_TEST_NOT_SET is missing"
    );
    for (name, value) in [
        ("FDRING_TEST_ONE", "7"),
        ("FDRING_TEST_SIGNED", "-1,4"),
        ("FDRING_TEST_WORDS", "memfd,wake"),
        ("FDRING_TEST_SPACES", "5, 6"),
        ("FDRING_TEST_THREE", "5,6,7"),
    ] {
        std::env::set_var(name, value);
        let what = message(name);
        assert!(
            what.contains(&format!("{name}=\"{value}\"")) && what.contains("two fd numbers"),
            "{what}"
        );
    }
    std::env::set_var("FDRING_TEST_HUGE", "99999999999,4");
    assert!(message("FDRING_TEST_HUGE").contains("too large"));
    // Two numbers, well formed, but not open here.
    std::env::set_var("FDRING_TEST_CLOSED", "1000000,1000001");
    assert!(message("FDRING_TEST_CLOSED")
        .contains("fd 1000000 named by FDRING_TEST_CLOSED is not open"));
}

#[test]
fn a_bundle_mixing_the_memfd_of_one_ring_with_the_socket_of_another_is_refused() {
    let (tx1, rx1) = fdring::channel::<u64>(512).unwrap();
    let (tx2, rx2) = fdring::channel::<u64>(512).unwrap();
    let (tx1, rx1) = (tx1.into_fds().unwrap(), rx1.into_fds().unwrap());
    let (tx2, rx2) = (tx2.into_fds().unwrap(), rx2.into_fds().unwrap());
    let inode = |fd: &std::os::fd::OwnedFd| rustix::fs::fstat(fd).unwrap().st_ino;
    let mixed_sender = Fds {
        memfd: tx1.memfd,
        wake: tx2.wake,
    };
    let found = inode(&mixed_sender.wake);
    let refused = Sender::<u64>::from_fds(mixed_sender).unwrap_err();
    assert_eq!(
        refused,
        Error::Rejected(Rejection::ForeignWakeSocket { found })
    );
    assert!(
        refused.to_string().contains("belongs to another ring"),
        "{refused}"
    );
    let mixed_receiver = Fds {
        memfd: rx2.memfd,
        wake: rx1.wake,
    };
    let found = inode(&mixed_receiver.wake);
    assert_eq!(
        Receiver::<u64>::from_fds(mixed_receiver).unwrap_err(),
        Error::Rejected(Rejection::ForeignWakeSocket { found })
    );
}

#[test]
fn one_ends_bundle_cannot_be_opened_as_the_other_end() {
    let (tx, rx) = fdring::channel::<u64>(512).unwrap();
    let (tx_fds, rx_fds) = (tx.into_fds().unwrap(), rx.into_fds().unwrap());
    let refused = Sender::<u64>::from_fds(rx_fds).unwrap_err();
    assert_eq!(
        refused,
        Error::Rejected(Rejection::WrongRole {
            bundle: Role::Receiver,
            opened_as: Role::Sender,
        })
    );
    assert_eq!(
        refused.to_string(),
        "ring rejected: these are the receiver's fds; they cannot be opened as the sender"
    );
    assert_eq!(
        Receiver::<u64>::from_fds(tx_fds).unwrap_err(),
        Error::Rejected(Rejection::WrongRole {
            bundle: Role::Sender,
            opened_as: Role::Receiver,
        })
    );
}

#[test]
fn each_bundle_reopens_as_its_own_end_after_the_checks() {
    // The control for the two tests above: the right socket with the right
    // memfd opens, in this process or after a hand-off over a socket (which
    // keeps the socket's identity), and the stream works.
    let (tx, rx) = fdring::channel::<u64>(512).unwrap();
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    handoff::send_fds(&ours, rx.into_fds().unwrap()).unwrap();
    let mut rx = Receiver::<u64>::from_fds(handoff::recv_fds(&theirs).unwrap()).unwrap();
    let mut tx = Sender::<u64>::from_fds(tx.into_fds().unwrap()).unwrap();
    tx.send_slice(&[1, 2, 3]).unwrap();
    let mut got = [0; 3];
    assert_eq!(rx.recv_slice(&mut got), Ok(3));
    assert_eq!(got, [1, 2, 3]);
}

#[test]
fn a_header_with_indices_out_of_range_is_refused_at_open() {
    // The peer writes a write index one past the capacity before hand-off.
    let (tx, rx) = fdring::channel::<u64>(512).unwrap();
    let capacity = tx.capacity() as u64;
    let rx_fds = rx.into_fds().unwrap();
    let at = 128; // write_index, docs/format.md section 2
    let bytes = (capacity + 1).to_ne_bytes();
    assert_eq!(rustix::io::pwrite(&rx_fds.memfd, &bytes, at).unwrap(), 8);
    let refused = Receiver::<u64>::from_fds(rx_fds).unwrap_err();
    assert_eq!(
        refused,
        Error::Rejected(Rejection::BadIndices {
            write: capacity + 1,
            read: 0,
            capacity,
        })
    );
    drop(tx);
}
