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
use fdring::{channel, handoff, Error, Receiver};
use mio::{Events, Interest, Poll};

/// How the child of the `membarrier` tests waits: `blocking`, `tokio` or
/// `mio`.
const WAIT_ENV: &str = "FDRING_TEST_WAIT";

/// Installs a seccomp filter on every thread of this process that makes
/// `membarrier` fail with `EPERM`, as a strict sandbox would.
fn forbid_membarrier() {
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
    assert_eq!(
        fdring::poll_timeout(),
        None,
        "this process can call membarrier"
    );
    let (tx, rx) = channel::<u64>(512).expect("channel");
    let fds = rx.into_fds().expect("into_fds");
    let mut child = ChildProc::spawn("recv_without_membarrier", |command| {
        handoff::inherit(command, RING_ENV, fds);
        command.env(WAIT_ENV, wait);
    });
    let ready = child.expect_line("ready", HANG);
    assert_eq!(ready, "ready timeout=Some(1ms)");
    // The sender's fds, kept open (the child sees no hang-up, no close)
    // but never written to: no wake-up will come.
    let fds = tx.into_fds().expect("into_fds");
    let raw = raw::Raw::map(&fds.memfd);
    let deadline = Instant::now() + HANG;
    while raw.u32_at(raw::CONSUMER_ARMED).load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the child never armed");
        thread::sleep(Duration::from_millis(1));
    }
    raw.put(0, 42);
    raw.write_index().store(1, Ordering::Release);
    let got = child.expect_line("got", NOTICE);
    assert_eq!(got, "got Ok(42)", "a {wait} wait missed the item");
    child.finish();
    drop(fds);
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
