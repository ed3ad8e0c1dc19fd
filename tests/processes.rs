//! Two processes on the two ends of a ring: the test binary re-executes
//! itself as the child (`child_entry`), and the ring's fds reach it by
//! inheritance (`handoff::inherit`) or over a Unix socket
//! (`handoff::send_fds`). Streams with sequence checks both ways, peers that
//! drop their end or are killed with SIGKILL, and a check that the parent
//! leaks no fd.

mod common;

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::{
    child_command, consume, env, fields, open_fds, produce, report, seed, spawn_bounded,
    start_watchdog, Api, ChildProc, Rng, Seq, CHILD_ENV, HANG, NOTICE, RING_ENV,
};
use fdring::{channel, handoff, Builder, Error, Fds, Liveness, Receiver, Stats};

const TEN_MILLION: u64 = 10_000_000;
const MILLION: u64 = 1_000_000;
const SIGKILL: i32 = 9;

// ---------------------------------------------------------------------------
// The child side

/// The entry point of every child process: runs the role named in
/// `FDRING_TEST_CHILD`, or nothing when run as a plain (ignored) test.
#[test]
#[ignore = "child process entry point, spawned by the tests"]
fn child_entry() {
    let Some(role) = env(CHILD_ENV) else {
        return;
    };
    // A child never outlives a failed or hung test for long.
    start_watchdog(Duration::from_secs(60));
    macro_rules! by_item {
        ($role:ident) => {
            match env("FDRING_TEST_ITEM").as_deref().unwrap_or("u64") {
                "u64" => $role::<u64>(),
                "u32x3" => $role::<[u32; 3]>(),
                "u8x12" => $role::<[u8; 12]>(),
                other => panic!("unknown item type {other}"),
            }
        };
    }
    match role.as_str() {
        "recv" => by_item!(role_recv),
        "send" => by_item!(role_send),
        "stall_recv" => role_stall_recv(),
        "recv_some_then_drop" => role_recv_some_then_drop(),
        "send_then_drop" => role_send_then_drop(),
        "list_fds" => role_list_fds(),
        "list_fds_plain" => role_list_fds_plain(),
        "socket_recv" => role_socket_recv(),
        "socket_send_forever" => role_socket_send_forever(),
        "middle" => role_middle(),
        "fd_leak_check" => role_fd_leak_check(),
        other => panic!("unknown child role {other}"),
    }
}

fn child_api() -> Api {
    Api::parse(env("FDRING_TEST_API").as_deref().unwrap_or("with"))
}

fn child_count() -> Option<u64> {
    env("FDRING_TEST_COUNT").map(|c| c.parse().expect("FDRING_TEST_COUNT"))
}

fn child_builder() -> Builder {
    let spin = env("FDRING_TEST_SPIN_US").map_or(fdring::DEFAULT_SPIN, |us| {
        Duration::from_micros(us.parse().expect("FDRING_TEST_SPIN_US"))
    });
    Builder::new().spin(spin)
}

/// The socket the parent passed as this child's stdin.
fn stdin_socket() -> UnixStream {
    let fd = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .expect("dup stdin");
    UnixStream::from(fd)
}

fn report_result(count: u64, end: &str, stats: Stats) {
    report(&format!(
        "result count={count} writes={} sleeps={} end={end}",
        stats.wakeups, stats.sleeps
    ));
}

/// Receives the inherited ring until the end, checking the sequence.
fn role_recv<T: Seq>() {
    let fds = handoff::inherited(RING_ENV).expect("inherited");
    let mut rx = child_builder().open_receiver::<T>(fds).expect("open");
    let (count, end) = consume(&mut rx, child_api(), seed(), |_| {});
    report_result(count, &format!("{end:?}"), rx.stats());
}

/// Sends `0..FDRING_TEST_COUNT` (or forever) into the inherited ring.
fn role_send<T: Seq>() {
    let fds = handoff::inherited(RING_ENV).expect("inherited");
    let mut tx = child_builder().open_sender::<T>(fds).expect("open");
    let result = produce(&mut tx, child_api(), child_count(), seed());
    let stats = tx.stats();
    drop(tx);
    match result {
        Ok(count) => report_result(count, "Ok", stats),
        Err((count, e)) => report_result(count, &format!("{e:?}"), stats),
    }
}

/// Receives `FDRING_TEST_COUNT` items, then stops consuming (holding its
/// end open) until killed.
fn role_stall_recv() {
    let fds = handoff::inherited(RING_ENV).expect("inherited");
    let mut rx = Receiver::<u64>::from_fds(fds).expect("open");
    for i in 0..child_count().expect("count") {
        assert_eq!(rx.recv(), Ok(i));
    }
    report("stalled");
    thread::sleep(Duration::from_secs(120));
    drop(rx);
}

/// Receives `FDRING_TEST_COUNT` items, stops long enough for the parent
/// to fill the ring and fall asleep, drops its end, and lives on.
fn role_recv_some_then_drop() {
    let fds = handoff::inherited(RING_ENV).expect("inherited");
    let mut rx = Receiver::<u64>::from_fds(fds).expect("open");
    for i in 0..child_count().expect("count") {
        assert_eq!(rx.recv(), Ok(i));
    }
    thread::sleep(Duration::from_millis(300));
    drop(rx);
    report("dropped");
    thread::sleep(Duration::from_secs(120));
}

/// Sends `FDRING_TEST_COUNT` items, waits long enough for the parent to
/// drain them and fall asleep, drops its end, and lives on.
fn role_send_then_drop() {
    let fds = handoff::inherited(RING_ENV).expect("inherited");
    let mut tx = fdring::Sender::<u64>::from_fds(fds).expect("open");
    let count = child_count().expect("count");
    assert_eq!(produce(&mut tx, Api::With, Some(count), seed()), Ok(count));
    thread::sleep(Duration::from_millis(300));
    drop(tx);
    report("dropped");
    thread::sleep(Duration::from_secs(120));
}

/// Describes this process's fds, apart from stdio and the directory
/// listing them.
fn fd_summary() -> String {
    let (mut memfd, mut socket, mut pidfd) = (0, 0, 0);
    let mut other = Vec::new();
    for (number, target) in open_fds() {
        if ["0", "1", "2"].contains(&number.as_str())
            || (target.starts_with("/proc/") && target.ends_with("/fd"))
        {
            continue;
        }
        if target.starts_with("/memfd:") {
            memfd += 1;
        } else if target.starts_with("socket:") {
            socket += 1;
        } else if target.contains("pidfd") {
            pidfd += 1;
        } else {
            other.push(format!("{number}->{target}"));
        }
    }
    format!(
        "memfd={memfd} socket={socket} pidfd={pidfd} other=[{}]",
        other.join(",")
    )
}

/// Reports its fds before and after taking the inherited ring, then runs
/// a grandchild (`list_fds_plain`) that reports its own.
fn role_list_fds() {
    report(&format!("before {}", fd_summary()));
    let fds = handoff::inherited(RING_ENV).expect("inherited");
    let rx = Receiver::<u64>::from_fds(fds).expect("open");
    report(&format!("after {}", fd_summary()));
    let mut command = child_command("list_fds_plain");
    command.env_remove(RING_ENV).stdin(Stdio::null());
    let status = command.status().expect("run grandchild");
    assert!(status.success(), "grandchild: {status}");
    drop(rx);
}

fn role_list_fds_plain() {
    report(&format!("plain {}", fd_summary()));
}

/// Takes a receiving end over the stdin socket and receives until the end.
fn role_socket_recv() {
    let socket = stdin_socket();
    let fds = handoff::recv_fds(&socket).expect("recv_fds");
    let mut rx = Receiver::<u64>::from_fds(fds).expect("open");
    let (count, end) = consume(&mut rx, child_api(), seed(), |_| {});
    report_result(count, &format!("{end:?}"), rx.stats());
}

/// Creates a ring, sends its receiving end over the stdin socket, and
/// streams into it until the peer is gone.
fn role_socket_send_forever() {
    let socket = stdin_socket();
    let (mut tx, rx) = channel::<u64>(1 << 12).expect("channel");
    handoff::send_fds(&socket, rx.into_fds().expect("into_fds")).expect("send_fds");
    tx.watch_peer(Liveness::socket(socket.try_clone().expect("dup socket")));
    let result = produce(&mut tx, Api::With, None, seed());
    let (count, e) = result.expect_err("an endless stream ends only with an error");
    report_result(count, &format!("{e:?}"), tx.stats());
}

/// Spawns a grandchild receiving a ring from this process, sends it
/// `FDRING_TEST_COUNT` items, and then waits, holding its end, until it is
/// killed. The grandchild writes to this process's stdout and stderr.
// The grandchild is deliberately never waited for: this process is killed
// while it runs, and the grandchild is then reparented.
#[allow(clippy::zombie_processes)]
fn role_middle() {
    let (mut tx, rx) = channel::<u64>(1).expect("channel");
    let mut command = child_command("recv");
    handoff::inherit(&mut command, RING_ENV, rx.into_fds().expect("into_fds"));
    command
        .env("FDRING_TEST_API", "with")
        .env("FDRING_TEST_ITEM", "u64")
        .stdin(Stdio::null());
    let grandchild = command.spawn().expect("spawn grandchild");
    drop(command);
    report(&format!("grandchild pid={}", grandchild.id()));
    tx.watch_peer(Liveness::child(&grandchild).expect("pidfd"));
    let count = child_count().expect("count");
    assert_eq!(produce(&mut tx, Api::With, Some(count), seed()), Ok(count));
    report(&format!("sent count={count}"));
    thread::sleep(Duration::from_secs(120));
    drop(tx);
}

/// Runs the process scenarios with fds counted before and after, alone in
/// its process, so that no other test's fds come and go meanwhile.
fn role_fd_leak_check() {
    let scenarios = || {
        parent_to_child::<u64>(1, 100_000, Api::With, Api::With, fdring::DEFAULT_SPIN);
        child_to_parent::<u64>(1, 100_000, Api::TryWith, Api::TryWith, fdring::DEFAULT_SPIN);
        killed_producer(Watch::Wake, 1, 50_000);
        killed_producer(Watch::Pidfd, 1, 50_000);
        killed_producer(Watch::Socket, 1, 50_000);
        killed_consumer(false);
        killed_consumer(true);
        consumer_drops_its_end();
        producer_drops_its_end();
        socket_stream(100_000);
        killed_parent_of_receiver(10_000);
    };
    // Once to open whatever the process opens lazily, then counted.
    scenarios();
    let before = open_fds();
    scenarios();
    let after = open_fds();
    report(&format!(
        "fds before={} after={}",
        before.len(),
        after.len()
    ));
    assert_eq!(
        before, after,
        "fds were leaked (or closed) by the scenarios"
    );
}

// ---------------------------------------------------------------------------
// The parent side

/// What a child reported in its `result` line.
#[derive(Debug)]
struct Reported {
    count: u64,
    writes: u64,
    sleeps: u64,
    end: String,
}

fn parse_result(line: &str) -> Reported {
    let f = fields(line);
    let number = |key: &str| -> u64 {
        f.get(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {line:?}"))
    };
    Reported {
        count: number("count"),
        writes: number("writes"),
        sleeps: number("sleeps"),
        end: f.get("end").cloned().unwrap_or_default(),
    }
}

/// Spawns a child in `role` with `fds` inherited and its stream settings.
fn spawn_with_ring<T: Seq>(
    role: &str,
    fds: Fds,
    api: Api,
    count: Option<u64>,
    seed: u64,
    spin: Duration,
) -> ChildProc {
    ChildProc::spawn(role, |command| {
        handoff::inherit(command, RING_ENV, fds);
        command
            .env("FDRING_TEST_ITEM", T::NAME)
            .env("FDRING_TEST_API", api.name())
            .env("FDRING_TEST_SEED", seed.to_string())
            .env("FDRING_TEST_SPIN_US", spin.as_micros().to_string());
        if let Some(count) = count {
            command.env("FDRING_TEST_COUNT", count.to_string());
        }
    })
}

/// Streams `0..count` from this process (`tx_api`) to a child (`rx_api`)
/// that must receive all of it in order and then `Disconnected`.
fn parent_to_child<T: Seq>(
    capacity: usize,
    count: u64,
    tx_api: Api,
    rx_api: Api,
    spin: Duration,
) -> (Stats, Reported) {
    let seed = seed();
    eprintln!("seed {seed}: parent -> child, {count} items, {tx_api:?} -> {rx_api:?}");
    let (mut tx, rx) = Builder::new()
        .capacity(capacity)
        .spin(spin)
        .build::<T>()
        .unwrap();
    let fds = rx.into_fds().unwrap();
    let mut child = spawn_with_ring::<T>("recv", fds, rx_api, None, seed, spin);
    tx.watch_peer(Liveness::child(&child.child).unwrap());
    let producer = spawn_bounded("producer", move || {
        let sent = produce(&mut tx, tx_api, Some(count), seed);
        (sent, tx.stats())
    });
    let (sent, tx_stats) = producer.join_within(HANG);
    assert_eq!(
        sent,
        Ok(count),
        "seed {seed}; child stderr:\n{}",
        child.stderr()
    );
    let reported = parse_result(&child.expect_line("result", HANG));
    child.finish();
    assert_eq!(
        (reported.count, reported.end.as_str()),
        (count, "Disconnected"),
        "the child must get every item, then Disconnected (seed {seed})"
    );
    (tx_stats, reported)
}

/// Streams `0..count` from a child (`tx_api`) to this process (`rx_api`),
/// which must receive all of it in order and then `Disconnected`.
fn child_to_parent<T: Seq>(
    capacity: usize,
    count: u64,
    tx_api: Api,
    rx_api: Api,
    spin: Duration,
) -> (Reported, Stats) {
    let seed = seed();
    eprintln!("seed {seed}: child -> parent, {count} items, {tx_api:?} -> {rx_api:?}");
    let (tx, mut rx) = Builder::new()
        .capacity(capacity)
        .spin(spin)
        .build::<T>()
        .unwrap();
    let fds = tx.into_fds().unwrap();
    let mut child = spawn_with_ring::<T>("send", fds, tx_api, Some(count), seed, spin);
    rx.watch_peer(Liveness::child(&child.child).unwrap());
    let consumer = spawn_bounded("consumer", move || {
        let end = consume(&mut rx, rx_api, seed, |_| {});
        (end, rx.stats())
    });
    let (end, rx_stats) = consumer.join_within(HANG);
    let reported = parse_result(&child.expect_line("result", HANG));
    child.finish();
    assert_eq!(
        (reported.count, reported.end.as_str()),
        (count, "Ok"),
        "the child must send every item (seed {seed})"
    );
    assert_eq!(
        end,
        (count, Error::Disconnected),
        "the parent must get every item, then Disconnected (seed {seed})"
    );
    (reported, rx_stats)
}

fn assert_no_wakeups(side: &str, writes: u64, sleeps: u64) {
    assert_eq!(
        (writes, sleeps),
        (0, 0),
        "{side}: busy-polling ends never arm, so nobody sleeps and no wake-up is sent"
    );
}

#[test]
fn child_receives_ten_million_items_in_order_from_parent_blocking() {
    parent_to_child::<u64>(
        1 << 12,
        TEN_MILLION,
        Api::With,
        Api::With,
        fdring::DEFAULT_SPIN,
    );
}

#[test]
fn parent_receives_ten_million_items_in_order_from_child_blocking() {
    child_to_parent::<u64>(
        1,
        TEN_MILLION,
        Api::With,
        Api::WithTimeout,
        fdring::DEFAULT_SPIN,
    );
}

#[test]
fn child_receives_ten_million_items_in_order_from_parent_nonblocking_without_any_wakeup() {
    let (tx, child) = parent_to_child::<u64>(
        1,
        TEN_MILLION,
        Api::TryWith,
        Api::TryWith,
        fdring::DEFAULT_SPIN,
    );
    assert_no_wakeups("parent sender", tx.wakeups, tx.sleeps);
    assert_no_wakeups("child receiver", child.writes, child.sleeps);
}

#[test]
fn parent_receives_ten_million_items_in_order_from_child_nonblocking_without_any_wakeup() {
    let (child, rx) = child_to_parent::<u64>(
        1 << 14,
        TEN_MILLION,
        Api::TryWith,
        Api::TryWith,
        fdring::DEFAULT_SPIN,
    );
    assert_no_wakeups("child sender", child.writes, child.sleeps);
    assert_no_wakeups("parent receiver", rx.wakeups, rx.sleeps);
}

#[test]
fn single_twelve_byte_items_stream_in_order_between_processes() {
    parent_to_child::<[u32; 3]>(1, MILLION, Api::Single, Api::Single, fdring::DEFAULT_SPIN);
    let (child, rx) = child_to_parent::<[u8; 12]>(
        1,
        MILLION,
        Api::TrySingle,
        Api::TrySlice,
        fdring::DEFAULT_SPIN,
    );
    assert_no_wakeups("child sender", child.writes, child.sleeps);
    assert_no_wakeups("parent receiver", rx.wakeups, rx.sleeps);
}

#[test]
fn processes_that_sleep_without_spinning_never_lose_a_wakeup() {
    let (tx, child) = parent_to_child::<u64>(1, MILLION, Api::With, Api::With, Duration::ZERO);
    let (child2, rx) = child_to_parent::<u64>(1, MILLION, Api::Slice, Api::With, Duration::ZERO);
    eprintln!("sender {tx:?}, receiver {child:?}; sender {child2:?}, receiver {rx:?}");
}

// ---------------------------------------------------------------------------
// A peer that is killed, or drops its end

/// How the parent learns that the child died.
#[derive(Debug, Clone, Copy)]
enum Watch {
    /// Nothing but the ring's own wake-up socket hanging up, the ring
    /// inherited.
    Wake,
    /// A pidfd of the child (`Liveness::child`) as well, the ring inherited.
    Pidfd,
    /// The hang-up of the socket the ring's fds came over.
    Socket,
}

/// A child streams sequence numbers into the parent forever and is killed
/// (SIGKILL) once the parent has received a random number of items in
/// `lo..hi`: the parent gets an in-order prefix from 0 and then
/// `Disconnected`, within `NOTICE` of the kill, and nothing after.
fn killed_producer(watch: Watch, lo: u64, hi: u64) {
    killed_producer_with(watch, Style::Blocking, lo, hi);
}

/// How the parent receives.
#[derive(Debug, Clone, Copy)]
enum Style {
    /// `recv_with`.
    Blocking,
    /// `try_recv_with`, `prepare_wait` and `poll` on the end's fd and the
    /// peer's liveness fd, as an event loop does.
    EventLoop,
}

/// Receives like an event loop: `try_recv_with` until `Empty`, then
/// `prepare_wait` and, if it allows, a poll on the end's fd and on the
/// peer's extra liveness fd if any (as the README says to register).
/// Checks the sequence and returns the count and the error that ended the
/// stream, or `Timeout` if the stream did not end within `NOTICE` of a poll
/// first reporting the peer gone.
fn event_loop_consume(rx: &mut Receiver<u64>, mut progress: impl FnMut(u64)) -> (u64, Error) {
    use rustix::event::{poll, PollFd, PollFlags};
    let mut next = 0u64;
    let mut gone_since: Option<Instant> = None;
    loop {
        if gone_since.is_some_and(|t| t.elapsed() > NOTICE) {
            return (next, Error::Timeout);
        }
        let got = rx.try_recv_with(|items| {
            common::check_seq(items, next);
            items.len()
        });
        match got {
            Ok(n) => {
                next += n as u64;
                progress(next);
            }
            Err(Error::Empty) => {
                if rx.prepare_wait().expect("prepare_wait") {
                    let mut fds = vec![PollFd::new(&*rx, PollFlags::IN | PollFlags::RDHUP)];
                    if let Some(liveness) = rx.peer_liveness() {
                        fds.push(PollFd::new(liveness, PollFlags::IN | PollFlags::RDHUP));
                    }
                    poll(&mut fds, None).expect("poll");
                    let hang_up = PollFlags::HUP | PollFlags::RDHUP;
                    let gone = fds[0].revents().intersects(hang_up)
                        || fds.get(1).is_some_and(|l| !l.revents().is_empty());
                    if gone && gone_since.is_none() {
                        gone_since = Some(Instant::now());
                    }
                }
            }
            Err(e) => return (next, e),
        }
    }
}

fn killed_producer_with(watch: Watch, style: Style, lo: u64, hi: u64) {
    let seed = seed();
    let kill_at = Rng::new(seed).range(lo, hi);
    eprintln!("seed {seed}: {watch:?}, {style:?}, kill after {kill_at} items");
    let (mut child, rx) = match watch {
        Watch::Wake | Watch::Pidfd => {
            let (tx, mut rx) = channel::<u64>(1 << 12).unwrap();
            let fds = tx.into_fds().unwrap();
            let child =
                spawn_with_ring::<u64>("send", fds, Api::With, None, seed, fdring::DEFAULT_SPIN);
            if let Watch::Pidfd = watch {
                rx.watch_peer(Liveness::child(&child.child).unwrap());
            }
            (child, rx)
        }
        Watch::Socket => {
            let (ours, theirs) = UnixStream::pair().unwrap();
            let child = ChildProc::spawn("socket_send_forever", |command| {
                command
                    .stdin(Stdio::from(OwnedFd::from(theirs)))
                    .env("FDRING_TEST_SEED", seed.to_string());
            });
            let fds = handoff::recv_fds(&ours).unwrap();
            let mut rx = Receiver::<u64>::from_fds(fds).unwrap();
            rx.watch_peer(Liveness::socket(ours));
            (child, rx)
        }
    };
    let (reached, reached_rx) = mpsc::channel();
    let consumer = spawn_bounded("consumer", move || {
        let mut rx = rx;
        let mut told = false;
        let mut tell = |n| {
            if !told && n >= kill_at {
                told = true;
                let _ = reached.send(());
            }
        };
        let (count, end) = match style {
            Style::Blocking => consume(&mut rx, Api::With, seed, tell),
            Style::EventLoop => event_loop_consume(&mut rx, &mut tell),
        };
        let ended = Instant::now();
        let after = (rx.try_recv(), rx.recv());
        (count, end, ended, after)
    });
    if reached_rx.recv_timeout(HANG).is_err() {
        panic!(
            "the stream ended or stalled before item {kill_at}; child stderr:\n{}",
            child.stderr()
        );
    }
    // Taken before the kill: the peer may notice it before this thread
    // runs again.
    let killed = Instant::now();
    child.kill();
    let (count, end, ended, after) = consumer.join_within(NOTICE + Duration::from_secs(5));
    assert_eq!(
        end,
        Error::Disconnected,
        "after {count} items (seed {seed}){}",
        if end == Error::Timeout {
            ": the liveness fd reported the peer gone, yet try_recv_with \
             still returned Empty (and prepare_wait true) for 10 s"
        } else {
            ""
        }
    );
    assert!(count >= kill_at, "{count} items, killed after {kill_at}");
    let noticed = ended.saturating_duration_since(killed);
    assert!(
        noticed < NOTICE,
        "the death was noticed only after {noticed:?}"
    );
    assert_eq!(
        after,
        (Err(Error::Disconnected), Err(Error::Disconnected)),
        "nothing after the last published item"
    );
    let status = child.wait_within(HANG);
    assert_eq!(status.signal(), Some(SIGKILL), "{status}");
    child.join_readers();
}

#[test]
fn receiver_sees_disconnect_through_its_wake_socket_after_sender_process_killed() {
    killed_producer(Watch::Wake, 1, 3_000_000);
}

#[test]
fn receiver_sees_disconnect_through_a_pidfd_after_sender_process_killed() {
    killed_producer(Watch::Pidfd, 1, 3_000_000);
}

#[test]
fn receiver_sees_disconnect_through_socket_hangup_after_sender_process_killed() {
    killed_producer(Watch::Socket, 1, 3_000_000);
}

#[test]
fn event_loop_receiver_streams_in_order_from_a_child_and_sees_its_drop() {
    let seed = seed();
    let (tx, mut rx) = channel::<u64>(1).unwrap();
    let fds = tx.into_fds().unwrap();
    let mut child = spawn_with_ring::<u64>(
        "send",
        fds,
        Api::Single,
        Some(MILLION),
        seed,
        fdring::DEFAULT_SPIN,
    );
    rx.watch_peer(Liveness::child(&child.child).unwrap());
    let consumer = spawn_bounded("event loop", move || {
        (event_loop_consume(&mut rx, |_| {}), rx.stats())
    });
    let (end, stats) = consumer.join_within(HANG);
    let reported = parse_result(&child.expect_line("result", HANG));
    child.finish();
    assert_eq!((reported.count, reported.end.as_str()), (MILLION, "Ok"));
    assert_eq!(end, (MILLION, Error::Disconnected), "seed {seed}");
    // prepare_wait arms but does not sleep itself.
    assert_eq!(stats.sleeps, 0, "{stats:?}");
}

#[test]
fn event_loop_receiver_sees_disconnect_after_sender_process_killed() {
    // The README: with an extra liveness, register `peer_liveness()` next
    // to the end's fd. After either fires, the ring must say
    // `Disconnected` (once drained), as for a blocking receiver; otherwise
    // the loop has no way out but to poll a readable liveness fd forever.
    killed_producer_with(Watch::Pidfd, Style::EventLoop, 1, 1_000_000);
}

#[test]
fn event_loop_receiver_sees_disconnect_through_its_own_fd_after_sender_process_killed() {
    // With no extra liveness, the end's own fd hangs up when the child dies.
    killed_producer_with(Watch::Wake, Style::EventLoop, 1, 1_000_000);
}

/// The child receives 1000 items and stops consuming; the parent fills the
/// ring and blocks in `send`; the child is killed: `send` returns
/// `Disconnected` within `NOTICE`, and not before the kill. The parent
/// learns of the death from its wake-up socket, and also from a pidfd of
/// the child if `pidfd`.
fn killed_consumer(pidfd: bool) {
    let seed = seed();
    let (tx, rx) = channel::<u64>(1).unwrap();
    let capacity = tx.capacity() as u64;
    let fds = rx.into_fds().unwrap();
    let mut child = ChildProc::spawn("stall_recv", |command| {
        handoff::inherit(command, RING_ENV, fds);
        command.env("FDRING_TEST_COUNT", "1000");
    });
    let mut tx = tx;
    if pidfd {
        tx.watch_peer(Liveness::child(&child.child).unwrap());
    }
    let filler = spawn_bounded("filler", move || {
        let sent = produce(&mut tx, Api::With, Some(1000 + capacity), seed);
        (sent, tx)
    });
    let (sent, mut tx) = filler.join_within(HANG);
    assert_eq!(sent, Ok(1000 + capacity), "stderr:\n{}", child.stderr());
    child.expect_line("stalled", HANG);
    assert_eq!(tx.try_send(0), Err(Error::Full));
    let blocked = spawn_bounded("blocked sender", move || {
        let result = tx.send(1000 + capacity);
        (result, Instant::now())
    });
    thread::sleep(Duration::from_millis(200));
    // Taken before the kill: the peer may notice it before this thread
    // runs again.
    let killed = Instant::now();
    child.kill();
    let (result, returned) = blocked.join_within(NOTICE + Duration::from_secs(5));
    assert_eq!(result, Err(Error::Disconnected));
    assert!(returned >= killed, "send returned before the kill");
    let noticed = returned.duration_since(killed);
    assert!(
        noticed < NOTICE,
        "the death was noticed only after {noticed:?}"
    );
    let status = child.wait_within(HANG);
    assert_eq!(status.signal(), Some(SIGKILL), "{status}");
    child.join_readers();
}

#[test]
fn blocked_sender_sees_disconnect_after_receiver_process_killed() {
    killed_consumer(false);
}

#[test]
fn blocked_sender_watching_a_pidfd_sees_disconnect_after_receiver_process_killed() {
    killed_consumer(true);
}

/// Runs `scenario` until an attempt in which the parent's end really went
/// to sleep before the child dropped its end, so that the wake-up by the
/// drop, not the check before sleeping, was tested.
fn until_it_slept(mut scenario: impl FnMut() -> Stats) {
    for attempt in 0..3 {
        if scenario().sleeps > 0 {
            return;
        }
        eprintln!("attempt {attempt}: the parent's end did not get to sleep, again");
    }
    panic!("the parent's end never went to sleep in 3 attempts");
}

/// The child receives 5000 items, stops, and drops its end but keeps
/// running; the parent, which does not watch the child at all, fills the
/// ring and sleeps, and must be woken with `Disconnected` by the drop.
fn consumer_drops_its_end() -> Stats {
    let seed = seed();
    let (tx, rx) = channel::<u64>(1).unwrap();
    let fds = rx.into_fds().unwrap();
    let child = ChildProc::spawn("recv_some_then_drop", |command| {
        handoff::inherit(command, RING_ENV, fds);
        command.env("FDRING_TEST_COUNT", "5000");
    });
    let producer = spawn_bounded("producer", move || {
        let mut tx = tx;
        (produce(&mut tx, Api::With, None, seed), tx.stats())
    });
    let (result, stats) = producer.join_within(HANG);
    let (sent, e) = result.expect_err("an endless stream ends only with an error");
    assert_eq!(e, Error::Disconnected, "stderr:\n{}", child.stderr());
    assert!(sent >= 5000, "only {sent} items were sent");
    end_child_that_dropped(child);
    stats
}

/// Checks that the child reported dropping its end and is still running
/// (so that the drop, not its death, disconnected the parent), then ends it.
fn end_child_that_dropped(mut child: ChildProc) {
    child.expect_line("dropped", HANG);
    assert!(
        child.child.try_wait().unwrap().is_none(),
        "the child must still run: the drop, not its death, disconnected"
    );
    child.kill();
    child.wait_within(HANG);
    child.join_readers();
}

#[test]
fn blocked_sender_is_woken_with_disconnect_when_receiver_process_drops_its_end() {
    until_it_slept(consumer_drops_its_end);
}

/// The child sends 5000 items, waits, and drops its end but keeps running;
/// the parent, which does not watch the child, drains the ring and sleeps,
/// and must be woken with `Disconnected` by the drop, having received every
/// item.
fn producer_drops_its_end() -> Stats {
    let seed = seed();
    let (tx, mut rx) = channel::<u64>(1).unwrap();
    let fds = tx.into_fds().unwrap();
    let child = ChildProc::spawn("send_then_drop", |command| {
        handoff::inherit(command, RING_ENV, fds);
        command
            .env("FDRING_TEST_COUNT", "5000")
            .env("FDRING_TEST_SEED", seed.to_string());
    });
    let consumer = spawn_bounded("consumer", move || {
        (consume(&mut rx, Api::With, seed, |_| {}), rx.stats())
    });
    let (end, stats) = consumer.join_within(HANG);
    assert_eq!(
        end,
        (5000, Error::Disconnected),
        "stderr:\n{}",
        child.stderr()
    );
    end_child_that_dropped(child);
    stats
}

#[test]
fn blocked_receiver_is_woken_with_disconnect_when_sender_process_drops_its_end() {
    until_it_slept(producer_drops_its_end);
}

/// A middle child creates a ring, passes its receiving end to a grandchild
/// (which watches the middle through `inherited()`'s pidfd), sends `count`
/// items and then waits holding its end. The middle is killed: the
/// grandchild, blocked in `recv_with`, reports every item and then
/// `Disconnected`, within `NOTICE` of the kill.
fn killed_parent_of_receiver(count: u64) {
    let mut middle = ChildProc::spawn("middle", |command| {
        command.env("FDRING_TEST_COUNT", count.to_string());
    });
    let grandchild: u32 = fields(&middle.expect_line("grandchild", HANG))["pid"]
        .parse()
        .unwrap();
    // Kills the grandchild if the test fails before it reported.
    struct Reaper(Option<u32>);
    impl Drop for Reaper {
        fn drop(&mut self) {
            if let Some(pid) = self.0 {
                let pid = rustix::process::Pid::from_raw(pid as i32).unwrap();
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
    }
    let mut reaper = Reaper(Some(grandchild));
    let sent = fields(&middle.expect_line("sent", HANG))["count"].clone();
    assert_eq!(sent, count.to_string());
    // Let the grandchild drain the ring and fall asleep.
    thread::sleep(Duration::from_millis(100));
    // Taken before the kill: the peer may notice it before this thread
    // runs again.
    let killed = Instant::now();
    middle.kill();
    let status = middle.wait_within(HANG);
    assert_eq!(status.signal(), Some(SIGKILL), "{status}");
    // The grandchild shares the middle's stdout.
    let reported = parse_result(&middle.expect_line("result", NOTICE));
    let noticed = killed.elapsed();
    reaper.0 = None;
    assert_eq!(
        (reported.count, reported.end.as_str()),
        (count, "Disconnected"),
        "the grandchild must get every item, then Disconnected"
    );
    assert!(
        noticed < NOTICE,
        "the death was noticed only after {noticed:?}"
    );
    middle.join_readers();
}

#[test]
fn child_blocked_in_recv_sees_disconnect_after_its_parent_killed() {
    killed_parent_of_receiver(100_000);
}

// ---------------------------------------------------------------------------
// Hand-off over a Unix socket

/// The parent sends a receiving end over a socket (the child's stdin) and
/// streams `0..count` into it; the child gets all of it in order, then
/// `Disconnected`.
fn socket_stream(count: u64) {
    let seed = seed();
    let (ours, theirs) = UnixStream::pair().unwrap();
    let mut child = ChildProc::spawn("socket_recv", |command| {
        command
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .env("FDRING_TEST_SEED", seed.to_string());
    });
    let (mut tx, rx) = channel::<u64>(1 << 13).unwrap();
    handoff::send_fds(&ours, rx.into_fds().unwrap()).unwrap();
    tx.watch_peer(Liveness::socket(ours));
    let producer = spawn_bounded("producer", move || {
        produce(&mut tx, Api::With, Some(count), seed)
    });
    assert_eq!(
        producer.join_within(HANG),
        Ok(count),
        "seed {seed}; child stderr:\n{}",
        child.stderr()
    );
    let reported = parse_result(&child.expect_line("result", HANG));
    child.finish();
    assert_eq!(
        (reported.count, reported.end.as_str()),
        (count, "Disconnected"),
        "seed {seed}"
    );
}

#[test]
fn ring_handed_over_a_unix_socket_streams_ten_million_items_in_order() {
    socket_stream(TEN_MILLION);
}

#[test]
fn a_bad_socket_handoff_is_rejected_and_a_closed_socket_is_not_a_hang() {
    // Not fdring's bytes.
    let (ours, theirs) = UnixStream::pair().unwrap();
    std::io::Write::write_all(&mut &ours, b"hello, not fds!!").unwrap();
    assert!(matches!(
        handoff::recv_fds(&theirs),
        Err(Error::Rejected(fdring::Rejection::BadHandoff(_)))
    ));
    // The peer hangs up before sending anything.
    drop(ours);
    assert!(matches!(
        handoff::recv_fds(&theirs),
        Err(Error::Rejected(fdring::Rejection::BadHandoff(_)))
    ));
}

#[test]
fn a_partial_socket_handoff_is_refused_at_once_and_a_read_timeout_bounds_the_wait() {
    // Five bytes of the tag, then nothing, the peer still connected: the
    // receiver must refuse what came, not wait for the rest.
    let (ours, theirs) = UnixStream::pair().unwrap();
    std::io::Write::write_all(&mut &ours, &b"fdring-fds-v2"[..5]).unwrap();
    let (done, outcome) = mpsc::channel();
    let receiver = theirs.try_clone().unwrap();
    thread::spawn(move || done.send(handoff::recv_fds(&receiver)));
    match outcome.recv_timeout(Duration::from_secs(10)) {
        Ok(result) => assert!(
            matches!(
                result,
                Err(Error::Rejected(fdring::Rejection::BadHandoff(_)))
            ),
            "{result:?}"
        ),
        Err(_) => panic!("recv_fds waited 10 s for the rest of a partial hand-off"),
    }
    // Nothing at all, the peer still connected: the socket's read timeout
    // ends the wait with `Timeout`, and so does a non-blocking socket.
    theirs
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let started = Instant::now();
    assert!(matches!(handoff::recv_fds(&theirs), Err(Error::Timeout)));
    assert!(started.elapsed() >= Duration::from_millis(50));
    theirs.set_nonblocking(true).unwrap();
    assert!(matches!(handoff::recv_fds(&theirs), Err(Error::Timeout)));
    drop(ours);
}

// ---------------------------------------------------------------------------
// No fd leaks

#[test]
fn streaming_to_children_and_killing_them_leaks_no_fd() {
    // Counted in a child of its own, where no other test opens fds.
    let mut child = ChildProc::spawn("fd_leak_check", |_| {});
    let line = child.expect_line("fds", HANG);
    child.finish();
    let f = fields(&line);
    assert_eq!(f["before"], f["after"], "{line}");
}

/// The counts and the other fds of a `fd_summary` report line.
fn parse_fd_summary(line: &str) -> (u64, u64, u64, String) {
    let f = fields(line);
    let number = |key: &str| f[key].parse::<u64>().unwrap();
    (
        number("memfd"),
        number("socket"),
        number("pidfd"),
        f["other"].clone(),
    )
}

#[test]
fn a_child_inherits_exactly_the_ring_fds_and_passes_none_on() {
    // A child spawned without a ring shows which fds this process passes to
    // every child anyway (those it inherited itself without close-on-exec,
    // such as cargo's jobserver pipe): the baseline.
    let mut control = ChildProc::spawn("list_fds_plain", |_| {});
    let (memfd, socket, pidfd, baseline) = parse_fd_summary(&control.expect_line("plain", HANG));
    control.finish();
    assert_eq!(
        (memfd, socket, pidfd),
        (0, 0, 0),
        "no ring fd leaks into a child"
    );
    // This process holds the other end (and, in parallel tests, many other
    // fds): only the two fds handed over may reach the child, and the
    // child's own children get nothing of the ring.
    let (tx, rx) = channel::<u64>(1).unwrap();
    let fds = rx.into_fds().unwrap();
    let mut child = ChildProc::spawn("list_fds", |command| {
        handoff::inherit(command, RING_ENV, fds);
    });
    let before = parse_fd_summary(&child.expect_line("before", HANG));
    let after = parse_fd_summary(&child.expect_line("after", HANG));
    let plain = parse_fd_summary(&child.expect_line("plain", HANG));
    child.finish();
    drop(tx);
    assert_eq!(
        before,
        (1, 1, 0, baseline.clone()),
        "the memfd and the wake-up socket"
    );
    assert_eq!(after, before, "inherited() and opening add no fd");
    assert_eq!(plain, (0, 0, 0, baseline), "the grandchild gets no ring fd");
}
