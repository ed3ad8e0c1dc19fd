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
use fdring::{handoff, Error, Rejection};

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
