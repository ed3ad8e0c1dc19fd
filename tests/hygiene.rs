//! Resource hygiene: whatever a ring's ends do, and however they end, the
//! process is left holding exactly the fds and mappings it held before.
//!
//! Every check runs in a child process of its own (the test binary
//! re-executed through `child_entry`), alone there, so that no test running
//! in a parallel thread opens or maps anything between the two looks:
//!
//! - 100,000 channels created and dropped (then again with `into_fds` /
//!   `from_fds` round trips, then with traffic): after a warm-up of 3,000,
//!   the fds (`/proc/self/fd`) and mappings (`/proc/self/maps`) are the
//!   same and the RSS grew by less than 8 MiB (`FDRING_HYGIENE_CHANNELS`
//!   and `FDRING_HYGIENE_WARMUP` change the counts);
//! - representative scenarios (timeouts, disconnects and rejected opens;
//!   hand-offs over Unix sockets, bad ones too; a ring inherited by a child
//!   watched through `Liveness::child`; children killed on either end;
//!   corrupted rings), each run twice as a warm-up and then once between
//!   two looks, which must agree.

mod common;

use std::io::IoSlice;
use std::mem::MaybeUninit;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::{
    assert_child_leaks_nothing, check_leaks, check_seq, consume, env, env_u64, fields, held,
    killed_consumer, killed_producer, produce, report, rss_bytes, run_shared_role, seed,
    start_watchdog, write_word, Api, ChildProc, Handoff, KillPlan, CHILD_ENV, HANG, READ_INDEX_AT,
    RING_ENV, WRITE_INDEX_AT,
};
use fdring::{
    channel, handoff, Builder, Corruption, Error, Fds, Liveness, Receiver, Rejection, Sender,
};

/// The entry point of every child process: runs the role named in
/// `FDRING_TEST_CHILD`, or nothing when run as a plain (ignored) test.
#[test]
#[ignore = "child process entry point, spawned by the tests"]
fn child_entry() {
    let Some(role) = env(CHILD_ENV) else {
        return;
    };
    start_watchdog(Duration::from_secs(120));
    if run_shared_role(&role) {
        return;
    }
    match role.as_str() {
        "flat_plain" => role_flat(Churn::Plain),
        "flat_round_trip" => role_flat(Churn::RoundTrip),
        "flat_traffic" => role_flat(Churn::Traffic),
        "leaks_timeouts" => check_leaks("timeouts, disconnects, rejections", 2, timeouts),
        "leaks_sockets" => check_leaks("socket hand-offs", 2, socket_handoffs),
        "leaks_inherit" => check_leaks("inheriting children", 2, inherit_into_children),
        "leaks_kills" => check_leaks("killed children", 2, killed_children),
        "leaks_corruption" => check_leaks("corrupted rings", 2, corrupted_rings),
        "recv_all" => role_recv_all(),
        "exit_at_once" => {}
        other => panic!("unknown child role {other}"),
    }
}

// ---------------------------------------------------------------------------
// 100,000 channels

/// What each of the many channels goes through.
#[derive(Debug, Clone, Copy)]
enum Churn {
    /// Created and dropped.
    Plain,
    /// Both ends given up with `into_fds` and reopened with `from_fds`,
    /// twice, then dropped.
    RoundTrip,
    /// Items sent and received across the wrap with the closure, slice and
    /// single calls, one end dropped first (alternately), then the other.
    Traffic,
}

fn churn_one(churn: Churn, i: u64) {
    let (mut tx, mut rx) = channel::<u64>(1).expect("channel");
    match churn {
        Churn::Plain => {}
        Churn::RoundTrip => {
            for _ in 0..2 {
                tx = Sender::from_fds(tx.into_fds().expect("into_fds")).expect("reopen sender");
                rx = Receiver::from_fds(rx.into_fds().expect("into_fds")).expect("reopen receiver");
            }
        }
        Churn::Traffic => {
            let first = 300 + (i % 200) as usize;
            let sent = tx
                .try_send_with(|slots: &mut [MaybeUninit<u64>]| {
                    for (k, slot) in slots[..first].iter_mut().enumerate() {
                        slot.write(k as u64);
                    }
                    first
                })
                .expect("send a batch");
            let got = rx
                .try_recv_with(|items| {
                    check_seq(items, 0);
                    items.len()
                })
                .expect("receive the batch");
            assert_eq!(got, sent);
            // Across the wrap of the 512 slots.
            let more: Vec<u64> = (first as u64..first as u64 + 400).collect();
            tx.send_slice(&more).expect("send a slice");
            let mut buf = [0u64; 400];
            assert_eq!(rx.recv_slice(&mut buf), Ok(400));
            check_seq(&buf, first as u64);
            tx.send(7).expect("send one");
            assert_eq!(rx.recv(), Ok(7));
            if i % 2 == 0 {
                drop(rx);
                assert_eq!(tx.try_send(1), Err(Error::Disconnected));
                return;
            } else {
                drop(tx);
                assert_eq!(rx.try_recv(), Err(Error::Disconnected));
                return;
            }
        }
    }
    drop((tx, rx));
}

/// Runs `count` channels through `churn` after a warm-up, and checks that
/// the fds, the mappings and (within 8 MiB) the RSS are what they were.
fn role_flat(churn: Churn) {
    let warmup = env_u64("FDRING_HYGIENE_WARMUP", 3_000);
    let count = env_u64("FDRING_HYGIENE_CHANNELS", 100_000);
    for i in 0..warmup {
        churn_one(churn, i);
    }
    let before = held();
    let rss_before = rss_bytes();
    for i in 0..count {
        churn_one(churn, i);
    }
    let rss_after = rss_bytes();
    let after = held();
    report(&format!(
        "flat channels={count} fds={}->{} maps={}->{} rss_kib={}->{}",
        before.fds.len(),
        after.fds.len(),
        before.maps.len(),
        after.maps.len(),
        rss_before / 1024,
        rss_after / 1024
    ));
    if let Some(difference) = after.difference_from(&before) {
        panic!("{count} channels ({churn:?}) leaked:\n{difference}");
    }
    assert!(
        rss_after < rss_before + (8 << 20),
        "{count} channels ({churn:?}) grew the RSS from {} KiB to {} KiB",
        rss_before / 1024,
        rss_after / 1024
    );
}

/// Runs `role` in a child and re-checks its `flat` report.
fn assert_flat(role: &str) {
    let mut child = ChildProc::spawn(role, |_| {});
    let line = child.expect_line("flat", HANG);
    child.finish();
    eprintln!("{role}: {line}");
    let f = fields(&line);
    let pair = |key: &str| -> (u64, u64) {
        let (a, b) = f[key].split_once("->").unwrap();
        (a.parse().unwrap(), b.parse().unwrap())
    };
    let (fds, maps, rss) = (pair("fds"), pair("maps"), pair("rss_kib"));
    assert_eq!(fds.0, fds.1, "fd count: {line}");
    assert_eq!(maps.0, maps.1, "mapping count: {line}");
    assert!(rss.1 < rss.0 + 8 * 1024, "RSS: {line}");
}

#[test]
fn creating_and_dropping_100000_channels_leaves_fds_mappings_and_rss_flat() {
    assert_flat("flat_plain");
}

#[test]
fn into_fds_from_fds_round_trips_of_100000_channels_leave_fds_mappings_and_rss_flat() {
    assert_flat("flat_round_trip");
}

#[test]
fn traffic_and_drops_on_100000_channels_leave_fds_mappings_and_rss_flat() {
    assert_flat("flat_traffic");
}

// ---------------------------------------------------------------------------
// Scenarios, each counted in a child of its own

/// Timeouts on both ends, disconnects by drop, `prepare_wait`, and opens
/// rejected for the wrong item type or tag (whose fds must be closed and
/// nothing left mapped).
fn timeouts() {
    let (mut tx, mut rx) = Builder::new()
        .capacity(1)
        .spin(Duration::ZERO)
        .build::<u64>()
        .expect("build");
    assert_eq!(
        rx.recv_timeout(Duration::from_millis(2)),
        Err(Error::Timeout)
    );
    assert_eq!(
        rx.recv_with_timeout(Duration::from_millis(1), |items| items.len()),
        Err(Error::Timeout)
    );
    assert_eq!(rx.prepare_wait(), Ok(true));
    let capacity = tx.capacity() as u64;
    for i in 0..capacity {
        tx.try_send(i).expect("room");
    }
    assert_eq!(
        tx.send_timeout(0, Duration::from_millis(2)),
        Err(Error::Timeout)
    );
    assert_eq!(tx.prepare_wait(), Ok(true));
    for i in 0..capacity {
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(i));
    }
    drop(rx);
    assert_eq!(tx.send(0), Err(Error::Disconnected));
    drop(tx);

    let (tx, rx) = Builder::new()
        .capacity(100)
        .type_tag(0xfeed)
        .build::<[u32; 3]>()
        .expect("build");
    let wrong_type = Receiver::<u64>::from_fds(rx.into_fds().expect("into_fds"));
    assert!(
        matches!(wrong_type, Err(Error::Rejected(_))),
        "{wrong_type:?}"
    );
    let wrong_tag = Builder::new()
        .type_tag(0xbeef)
        .open_sender::<[u32; 3]>(tx.into_fds().expect("into_fds"));
    assert!(
        matches!(wrong_tag, Err(Error::Rejected(Rejection::TypeTag { .. }))),
        "{wrong_tag:?}"
    );
}

#[test]
fn timeouts_disconnects_and_rejected_opens_leak_no_fd_or_mapping() {
    assert_child_leaks_nothing("leaks_timeouts");
}

/// The tag `handoff::send_fds` sends with the fds.
const SOCKET_TAG: &[u8; 16] = b"fdring-fds-v1\0\0\0";

/// Sends `fds` with `bytes` in one message, as a peer that is not quite
/// fdring would.
fn send_raw(socket: &UnixStream, bytes: &[u8], fds: &[std::os::fd::BorrowedFd<'_>]) {
    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(4))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    assert!(control.push(SendAncillaryMessage::ScmRights(fds)));
    rustix::net::sendmsg(
        socket,
        &[IoSlice::new(bytes)],
        &mut control,
        SendFlags::empty(),
    )
    .expect("sendmsg");
}

/// A ring handed over a socket pair in this process and streamed through,
/// with each end watching the socket; bad hand-offs (two fds, four fds,
/// no fds, a hang-up) that `recv_fds` must refuse, closing what came; and
/// a receiving end sent to a child over its stdin, the child then killed.
fn socket_handoffs() {
    let (ours, theirs) = UnixStream::pair().expect("socketpair");
    let (mut tx, rx) = channel::<u64>(1).expect("channel");
    handoff::send_fds(&ours, rx.into_fds().expect("into_fds")).expect("send_fds");
    tx.watch_peer(Liveness::socket(ours.try_clone().expect("dup socket")));
    let fds = handoff::recv_fds(&theirs).expect("recv_fds");
    let mut rx = Receiver::<u64>::from_fds(fds).expect("open");
    for round in 0..20u64 {
        let base = round * 300;
        tx.send_slice(&(base..base + 300).collect::<Vec<_>>())
            .expect("send");
        let mut buf = [0u64; 300];
        let mut got = 0;
        while got < 300 {
            got += rx.recv_slice(&mut buf[got..]).expect("recv");
        }
        check_seq(&buf, base);
    }
    drop(tx);
    assert_eq!(rx.recv(), Err(Error::Disconnected));
    drop(rx);

    // Bad hand-offs: every fd that came with them must be closed.
    let (a, b) = (
        rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC).unwrap(),
        rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC).unwrap(),
    );
    send_raw(&ours, SOCKET_TAG, &[a.as_fd(), b.as_fd()]);
    assert!(matches!(
        handoff::recv_fds(&theirs),
        Err(Error::Rejected(Rejection::BadHandoff(_)))
    ));
    send_raw(
        &ours,
        SOCKET_TAG,
        &[a.as_fd(), b.as_fd(), a.as_fd(), b.as_fd()],
    );
    assert!(matches!(
        handoff::recv_fds(&theirs),
        Err(Error::Rejected(Rejection::BadHandoff(_)))
    ));
    send_raw(
        &ours,
        b"not fdring bytes",
        &[a.as_fd(), b.as_fd(), a.as_fd()],
    );
    assert!(matches!(
        handoff::recv_fds(&theirs),
        Err(Error::Rejected(Rejection::BadHandoff(_)))
    ));
    drop(ours);
    assert!(matches!(
        handoff::recv_fds(&theirs),
        Err(Error::Rejected(Rejection::BadHandoff(_)))
    ));

    // Across processes: the child receives over its stdin socket, and is
    // killed mid-stream.
    let plan = KillPlan {
        handoff: Handoff::Socket,
        extra_watch: true,
        from_spawn: false,
        delay: Duration::from_millis(3),
        stop_after: None,
        child_pause_one_in: 8,
    };
    killed_consumer(seed(), plan);
}

#[test]
fn handoffs_over_unix_sockets_bad_ones_included_leak_no_fd_or_mapping() {
    assert_child_leaks_nothing("leaks_sockets");
}

/// Receives the inherited ring until `Disconnected`; it must have been
/// `FDRING_TEST_COUNT` items.
fn role_recv_all() {
    let fds = handoff::inherited(RING_ENV).expect("inherited");
    let mut rx = Receiver::<u64>::from_fds(fds).expect("open");
    let (count, end) = consume(&mut rx, Api::With, seed(), |_| {});
    assert_eq!(
        (count, end),
        (env_u64("FDRING_TEST_COUNT", 0), Error::Disconnected)
    );
}

/// A ring inherited by a child that receives all of a stream and exits,
/// watched through `Liveness::child`; then a child that exits at once,
/// whose liveness must report it gone.
fn inherit_into_children() {
    const COUNT: u64 = 20_000;
    let (mut tx, rx) = channel::<u64>(1).expect("channel");
    let fds = rx.into_fds().expect("into_fds");
    let child = ChildProc::spawn("recv_all", |command| {
        handoff::inherit(command, RING_ENV, fds);
        command.env("FDRING_TEST_COUNT", COUNT.to_string());
    });
    tx.watch_peer(Liveness::child(&child.child).expect("pidfd"));
    assert_eq!(produce(&mut tx, Api::With, Some(COUNT), seed()), Ok(COUNT));
    drop(tx);
    child.finish();

    let mut quick = ChildProc::spawn("exit_at_once", |_| {});
    let liveness = Liveness::child(&quick.child).expect("pidfd");
    let status = quick.wait_within(HANG);
    assert!(status.success(), "{status}");
    assert!(liveness.is_gone(), "the child exited");
    let (mut tx, _rx) = channel::<u64>(1).expect("channel");
    tx.watch_peer(liveness);
    // Watching another liveness drops the first.
    tx.watch_peer(Liveness::process(std::process::id()).expect("pidfd of self"));
    quick.join_readers();
}

#[test]
fn inheriting_a_ring_into_a_child_watched_by_pidfd_leaks_no_fd_or_mapping() {
    assert_child_leaks_nothing("leaks_inherit");
}

/// Children killed on either end, through either hand-off, mid-stream and
/// after their stream stopped.
fn killed_children() {
    let seed = seed();
    for (i, handoff) in [Handoff::Inherit, Handoff::Socket].into_iter().enumerate() {
        for (stop_after, extra_watch) in [(None, false), (Some(2_000), true)] {
            let plan = KillPlan {
                handoff,
                extra_watch,
                from_spawn: false,
                delay: Duration::from_millis(2 + i as u64),
                stop_after,
                child_pause_one_in: 16,
            };
            killed_producer(seed, plan);
            killed_consumer(seed, plan);
        }
    }
    // Killed before it could open the ring.
    let plan = KillPlan {
        handoff: Handoff::Inherit,
        extra_watch: false,
        from_spawn: true,
        delay: Duration::ZERO,
        stop_after: None,
        child_pause_one_in: 0,
    };
    killed_producer(seed, plan);
}

#[test]
fn killing_children_on_either_end_of_a_ring_leaks_no_fd_or_mapping() {
    assert_child_leaks_nothing("leaks_kills");
}

/// Rings whose header a peer corrupted (indices out of range or going
/// back) and memfds whose header is not a ring's, which must be refused
/// before anything is mapped.
fn corrupted_rings() {
    let (tx, rx) = channel::<u64>(1).expect("channel");
    let fds = tx.into_fds().expect("into_fds");
    let memfd = fds.memfd.try_clone().expect("dup");
    let mut tx = Sender::<u64>::from_fds(fds).expect("reopen");
    let mut rx = rx;
    tx.send_slice(&[0, 1, 2]).expect("send");
    write_word(&memfd, WRITE_INDEX_AT, 1 << 40);
    assert!(matches!(
        rx.recv_timeout(Duration::from_secs(10)),
        Err(Error::Corrupted(Corruption::IndexOutOfRange { .. }))
    ));
    // A read index beyond the write index; a closure call reloads it (a
    // single-item send would trust its cache, which still shows room).
    write_word(&memfd, READ_INDEX_AT, 5);
    assert!(matches!(
        tx.send_with_timeout(Duration::from_secs(10), |slots| slots.len()),
        Err(Error::Corrupted(Corruption::IndexOutOfRange { .. }))
    ));
    drop((tx, rx));

    // Opening a ring whose header was corrupted first.
    let (tx, rx) = channel::<u64>(1).expect("channel");
    let rx_fds = rx.into_fds().expect("into_fds");
    write_word(&rx_fds.memfd, WRITE_INDEX_AT, 1 << 40);
    // The header's shape is fine, but its indices are out of range:
    // refused at open, nothing mapped, fds closed.
    let refused = Receiver::<u64>::from_fds(rx_fds);
    assert!(
        matches!(refused, Err(Error::Rejected(Rejection::BadIndices { .. }))),
        "{refused:?}"
    );
    drop(tx);

    // Not a ring's header at all: refused, nothing mapped, fds closed.
    let (tx, rx) = channel::<u64>(1).expect("channel");
    let fds: Fds = rx.into_fds().expect("into_fds");
    write_word(&fds.memfd, 0, u64::from_ne_bytes(*b"NOTARING"));
    let refused = Receiver::<u64>::from_fds(fds);
    assert!(matches!(refused, Err(Error::Rejected(_))), "{refused:?}");
    drop(tx);
}

#[test]
fn corrupted_rings_and_refused_memfds_leak_no_fd_or_mapping() {
    assert_child_leaks_nothing("leaks_corruption");
}
