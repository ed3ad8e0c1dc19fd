//! Loops in a process that cannot call `membarrier`: a child under a
//! seccomp filter waits (blocking, tokio, mio) for an item published
//! without a wake-up, and must see it through its bounded sleeps.

use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use crate::common::{env, report, ChildProc, HANG, NOTICE, RING_ENV};
use crate::peers::inherited_receiver;
use crate::raw;
use crate::runtimes::{current_thread_runtime, RING};
use fdring::mio::EventLoopExt;
use fdring::tokio::AsyncReceiver;
use fdring::{channel, handoff, Error, Fds, Receiver};
use mio::{Events, Interest, Poll};

/// How the child of the `membarrier` tests waits: `blocking`, `tokio` or
/// `mio`.
pub(crate) const WAIT_ENV: &str = "FDRING_TEST_WAIT";

/// Installs a seccomp filter on every thread of this process that makes
/// `membarrier` fail with `EPERM`, as a strict sandbox would.
pub(crate) fn forbid_membarrier() {
    use libc::{sock_filter, sock_fprog};
    let op = |code: u32, k: u32, jt: u8, jf: u8| sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    };
    // Load the system call number (offset 0 of `struct seccomp_data`);
    // `membarrier` returns EPERM, everything else is allowed.
    let filter = [
        op(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0, 0, 0),
        op(
            libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
            libc::SYS_membarrier as u32,
            0,
            1,
        ),
        op(
            libc::BPF_RET | libc::BPF_K,
            libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
            0,
            0,
        ),
        op(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW, 0, 0),
    ];
    let program = sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr().cast_mut(),
    };
    rustix::thread::set_no_new_privs(true).expect("PR_SET_NO_NEW_PRIVS");
    // SAFETY: `program` points to `filter`, a valid BPF program that
    // outlives the call; the kernel copies it.
    let installed = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::SECCOMP_FILTER_FLAG_TSYNC,
            &program,
        )
    };
    assert_eq!(installed, 0, "seccomp: {}", std::io::Error::last_os_error());
    assert!(
        rustix::thread::membarrier(rustix::thread::MembarrierCommand::GlobalExpedited).is_err(),
        "membarrier still works under the filter"
    );
}

/// Forbids itself `membarrier`, then waits (as `FDRING_TEST_WAIT` says)
/// for one item that the parent publishes without a wake-up, as a
/// light-publishing peer's lost wake-up would look; reports it.
pub(crate) fn role_recv_without_membarrier() {
    forbid_membarrier();
    let mut rx = inherited_receiver(RING_ENV);
    report(&format!("ready timeout={:?}", fdring::poll_timeout()));
    // Far longer than the parent waits for the report: the item must come
    // through a bounded sleep, not through the last look at a deadline.
    let deadline = Instant::now() + HANG;
    let got = match env(WAIT_ENV).as_deref() {
        Some("blocking") => rx.recv_timeout(HANG),
        Some("tokio") => current_thread_runtime().block_on(async {
            let mut rx = AsyncReceiver::new(rx).expect("AsyncReceiver");
            tokio::time::timeout(HANG, rx.recv())
                .await
                .unwrap_or(Err(Error::Timeout))
        }),
        Some("mio") => {
            let (mut poll, mut events) = (Poll::new().expect("poll"), Events::with_capacity(4));
            poll.registry()
                .register(&mut rx, RING, Interest::READABLE)
                .expect("register");
            loop {
                match rx.try_or_arm(Receiver::try_recv) {
                    Err(Error::Empty) if Instant::now() < deadline => {
                        poll.poll(&mut events, fdring::poll_timeout())
                            .expect("poll");
                    }
                    Err(Error::Empty) => break Err(Error::Timeout),
                    other => break other,
                }
            }
        }
        other => panic!("{WAIT_ENV}={other:?}"),
    };
    report(&format!("got {got:?}"));
}

/// A child that cannot call `membarrier` waits for an item as `wait`
/// says; the parent publishes it without a wake-up (the child is armed,
/// and nothing will ever be sent on its socket). The child must see it
/// anyway: its sleeps are bounded by `poll_timeout()`, because a
/// light-publishing peer's wake-up can be lost to it.
fn a_receiver_without_membarrier_sees_an_item_published_silently(wait: &str) {
    let (tx, rx) = channel::<u64>(512).expect("channel");
    let got = publish_silently_to_a_child_without_membarrier(
        "recv_without_membarrier",
        wait,
        rx.into_fds().expect("into_fds"),
        tx.into_fds().expect("into_fds"),
        |raw| {
            raw.put(0, 42);
            1
        },
    );
    assert_eq!(got, "got Ok(42)", "a {wait} wait missed the item");
}

/// Spawns `role`, which forbids itself `membarrier` and waits on the
/// receiving end `theirs` as `wait` says; once it has armed, writes into
/// the ring through `ours` (the sender's fds, kept open so that the child
/// sees no hang-up and no close, but never written to: no wake-up will
/// come) with `publish`, which returns the new write index, and publishes
/// that. Returns the child's "got" line, which must come within `NOTICE`.
pub(crate) fn publish_silently_to_a_child_without_membarrier(
    role: &str,
    wait: &str,
    theirs: Fds,
    ours: Fds,
    publish: impl FnOnce(&raw::Raw) -> u64,
) -> String {
    assert_eq!(
        fdring::poll_timeout(),
        None,
        "this process can call membarrier"
    );
    let mut child = ChildProc::spawn(role, |command| {
        handoff::inherit(command, RING_ENV, theirs);
        command.env(WAIT_ENV, wait);
    });
    let ready = child.expect_line("ready", HANG);
    assert_eq!(ready, "ready timeout=Some(1ms)");
    let raw = raw::Raw::map(&ours.memfd);
    let deadline = Instant::now() + HANG;
    while raw.u32_at(raw::CONSUMER_ARMED).load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the child never armed");
        thread::sleep(Duration::from_millis(1));
    }
    let write_index = publish(&raw);
    raw.write_index().store(write_index, Ordering::Release);
    let got = child.expect_line("got", NOTICE);
    child.finish();
    drop(ours);
    got
}

#[test]
fn a_blocking_receiver_without_membarrier_sees_an_item_published_silently() {
    a_receiver_without_membarrier_sees_an_item_published_silently("blocking");
}

#[test]
fn a_tokio_receiver_without_membarrier_sees_an_item_published_silently() {
    a_receiver_without_membarrier_sees_an_item_published_silently("tokio");
}

#[test]
fn a_mio_loop_without_membarrier_sees_an_item_published_silently() {
    a_receiver_without_membarrier_sees_an_item_published_silently("mio");
}
