//! Services between unrelated processes (issue 13): a listener and its
//! clients are sibling processes of this test binary, each started detached
//! in a session of its own (`setsid`, stdin null, reports on stdout). The
//! test process owns no ring and passes no fd: the children find each other
//! by the service's name alone (each checks at start that it inherited no
//! socket and no memfd).
//!
//! What is proved: streams of 10^7 items in order in both roles, and a
//! connection carrying two rings; access control by uid on both sides (run
//! as root, the children drop to unprivileged uids); names taken, stale
//! and killed; clients that say nothing, half a message or garbage, and
//! listeners that never accept or send garbage; mismatched rings refused
//! on both sides; clients killed, clients coming and going, and a thousand
//! connections that leak nothing in the listener.
//!
//! The fdring side of anything hostile runs in a child process, so that a
//! regression kills the child, not the test runner: the parent asserts that
//! the child exited normally and reported the error.

mod common;

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use common::{
    consume, env, env_u64, err_of, fields, number, park, produce, report, seed, spawn_bounded,
    start_watchdog, unique_name, word_of, Api, ChildProc, CHILD_ENV, HANG, NOTICE,
};
use fdring::service::{self, Access, Connection, Connector, Listener};
use fdring::{Builder, Error, Field, Rejection};

const TEN_MILLION: u64 = 10_000_000;

// The configuration of a child, in its environment.
/// The service's name (abstract namespace).
const NAME: &str = "FDRING_SVC_NAME";
/// A socket file path instead of a name.
const PATH: &str = "FDRING_SVC_PATH";
/// What a listener does with each connection, or what a client does.
const ACTION: &str = "FDRING_SVC_ACTION";
/// How many connections a listener serves before it exits.
const CONNECTIONS: &str = "FDRING_SVC_CONNECTIONS";
/// Items a producer sends; 0: until it is killed.
const ITEMS: &str = "FDRING_SVC_ITEMS";
/// The connection timeout, in milliseconds.
const TIMEOUT_MS: &str = "FDRING_SVC_TIMEOUT_MS";
/// A listener's access policy: `same-user` (the default), `uid:N`
/// (`Access::same_user().allow_uid(N)`), or `anyone`.
const ACCESS: &str = "FDRING_SVC_ACCESS";
/// A client's trust in the listener, as `ACCESS` (`same-user-or-root` by
/// default).
const TRUST: &str = "FDRING_SVC_TRUST";
/// The mismatch cases, comma-separated, in the order of the connections.
const CASES: &str = "FDRING_SVC_CASES";
/// How many silent connections a patient listener accepts first.
const IDLE: &str = "FDRING_SVC_IDLE";
/// What a raw client sends after the greeting: `half`, `garbage`, `version2`.
const RAW: &str = "FDRING_SVC_RAW";

/// After how many items a consuming side reports that the stream flows.
const FLOWING_AT: u64 = 100_000;

/// The uids the tests drop to (root runs the tests in CI).
const NOBODY: u32 = 65534;
const OTHER: u32 = 65533;

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
    start_watchdog(Duration::from_secs(60));
    assert_inherited_nothing();
    match role.as_str() {
        "listener" => role_listener(),
        "patient-listener" => role_patient_listener(),
        "client" => role_client(),
        "raw-client" => role_raw_client(),
        other => panic!("unknown child role {other}"),
    }
}

/// A child shares nothing with the test process but its name: no socket,
/// no memfd came with it (std opens everything close-on-exec).
fn assert_inherited_nothing() {
    let shared: Vec<_> = common::open_fds()
        .into_iter()
        .filter(|(_, target)| target.starts_with("socket:") || target.contains("memfd:"))
        .collect();
    assert!(
        shared.is_empty(),
        "this child inherited sockets or memfds: {shared:?}"
    );
}

fn access_from(var: &str, default: Access) -> Access {
    match env(var).as_deref() {
        None => default,
        Some("same-user") => Access::same_user(),
        Some("anyone") => Access::anyone(),
        Some(other) => {
            let uid = other
                .strip_prefix("uid:")
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{var}={other:?}"));
            Access::same_user().allow_uid(uid)
        }
    }
}

fn timeout_from_env() -> Duration {
    Duration::from_millis(env_u64(TIMEOUT_MS, 5_000))
}

fn listener_from_env() -> Listener {
    let listener = match (env(NAME), env(PATH)) {
        (Some(name), _) => Listener::bind(&name),
        (None, Some(path)) => Listener::bind_path(path),
        (None, None) => panic!("neither {NAME} nor {PATH} is set"),
    }
    .expect("bind the service");
    listener
        .with_access(access_from(ACCESS, Access::same_user()))
        .with_timeout(timeout_from_env())
}

fn connector_from_env() -> Connector {
    let connector = match (env(NAME), env(PATH)) {
        (Some(name), _) => Connector::new(&name),
        (None, Some(path)) => Connector::path(path),
        (None, None) => panic!("neither {NAME} nor {PATH} is set"),
    };
    connector
        .trust(access_from(TRUST, Access::same_user_or_root()))
        .timeout(timeout_from_env())
}

/// `err=` and the error's `Debug`, last on a report line (an `Io` error
/// also gets its kind, as a word of its own).
fn describe(e: &Error) -> String {
    match e {
        Error::Io { source, .. } => format!("io_kind={:?} err={e:?}", source.kind()),
        _ => format!("err={e:?}"),
    }
}

fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Open fds of this process (the listing's own fd not counted).
fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
        - 1
}

/// Binds, then serves `CONNECTIONS` connections one after the other with
/// `ACTION`, reporting each (and each refused client) on a line.
fn role_listener() {
    let listener = listener_from_env();
    report(&format!(
        "listening pid={} uid={}",
        std::process::id(),
        euid()
    ));
    let action = env(ACTION).unwrap_or_else(|| "take-items".to_owned());
    if action == "never-accept" {
        park();
    }
    let connections = env_u64(CONNECTIONS, 1);
    let cases: Vec<String> = env(CASES)
        .map(|c| c.split(',').map(str::to_owned).collect())
        .unwrap_or_default();
    let mut served = 0u64;
    let mut accept_errors = 0u64;
    while served < connections {
        let mut connection = match listener.accept() {
            Ok(connection) => connection,
            Err(e) => {
                accept_errors += 1;
                report(&format!("accept-error {}", describe(&e)));
                continue;
            }
        };
        served += 1;
        let peer = connection.peer();
        let outcome = match action.as_str() {
            "mismatch" => mismatch_case(&cases[served as usize - 1], Side::Take, &mut connection),
            "take-one" => {
                take_one(&mut connection, served);
                drop(connection);
                if served == 50 || served == connections {
                    report(&format!(
                        "held n={served} fds={} maps={} rss_kib={}",
                        fd_count(),
                        common::mappings().len(),
                        common::rss_bytes() / 1024
                    ));
                }
                continue;
            }
            _ => run(&action, &mut connection),
        };
        report(&format!(
            "served n={served} pid={} uid={} accept_errors={accept_errors} {outcome}",
            peer.pid, peer.uid
        ));
    }
}

/// Accepts `IDLE` connections and leaves them waiting, then accepts one
/// more and serves it, and only then asks each waiting one for a ring.
fn role_patient_listener() {
    let listener = listener_from_env();
    report(&format!("listening pid={}", std::process::id()));
    let mut idle = Vec::new();
    for _ in 0..env_u64(IDLE, 1) {
        let connection = listener.accept().expect("accept a waiting client");
        report(&format!("accepted pid={}", connection.peer().pid));
        idle.push(connection);
    }
    let mut connection = listener.accept().expect("accept the served client");
    let pid = connection.peer().pid;
    let outcome = run("take-items", &mut connection);
    report(&format!("served pid={pid} {outcome}"));
    for mut connection in idle {
        let asked = Instant::now();
        let outcome = match connection.take_receiver::<u64>(&Builder::new()) {
            Ok(_) => "took-a-ring".to_owned(),
            Err(e) => describe(&e),
        };
        report(&format!(
            "idle pid={} waited_ms={} {outcome}",
            connection.peer().pid,
            asked.elapsed().as_millis()
        ));
    }
}

/// Connects and does `ACTION` (or, for `mismatches` and `cycles`, connects
/// once for each).
fn role_client() {
    let action = env(ACTION).unwrap_or_else(|| "offer-items".to_owned());
    let connector = connector_from_env();
    match action.as_str() {
        "mismatches" => {
            for case in env(CASES).expect(CASES).split(',') {
                let mut connection = connector.connect().expect("connect");
                let outcome = mismatch_case(case, Side::Offer, &mut connection);
                report(&format!("did {outcome}"));
            }
            return;
        }
        "cycles" => {
            let cycles = env_u64(ITEMS, 1000);
            for i in 1..=cycles {
                let mut connection = connector.connect().expect("connect");
                let mut tx = connection
                    .offer_receiver::<u64>(&Builder::new().capacity(512))
                    .expect("offer a ring");
                tx.send(i).expect("send");
            }
            report(&format!("did cycles={cycles}"));
            return;
        }
        _ => {}
    }
    let started = Instant::now();
    let mut connection = match connector.connect() {
        Ok(connection) => connection,
        Err(e) => {
            report(&format!(
                "connect-error elapsed_ms={} {}",
                started.elapsed().as_millis(),
                describe(&e)
            ));
            return;
        }
    };
    let listener = connection.peer();
    report(&format!(
        "connected pid={} uid={} listener_pid={} listener_uid={}",
        std::process::id(),
        euid(),
        listener.pid,
        listener.uid
    ));
    let outcome = run(&action, &mut connection);
    report(&format!("did {outcome}"));
}

/// What a side does on a connection; a line of `key=value` words for the
/// report, ending with `err=` if something failed.
fn run(action: &str, connection: &mut Connection) -> String {
    let items = env_u64(ITEMS, TEN_MILLION);
    let count = (items > 0).then_some(items);
    let capacity = Builder::new().capacity(64 * 1024);
    let outcome = match action {
        // This side takes the receiving end and consumes.
        "take-items" => connection
            .take_receiver::<u64>(&Builder::new())
            .map(|mut rx| consumed(&mut rx)),
        // This side offers the receiving end and produces.
        "offer-items" => connection
            .offer_receiver::<u64>(&capacity)
            .map(|mut tx| produced(&mut tx, count)),
        // This side offers the sending end and consumes.
        "offer-sender-items" => connection
            .offer_sender::<u64>(&capacity)
            .map(|mut rx| consumed(&mut rx)),
        // This side takes the sending end and produces.
        "take-sender-items" => connection
            .take_sender::<u64>(&Builder::new())
            .map(|mut tx| produced(&mut tx, count)),
        "echo-serve" => echo_serve(connection),
        "echo-client" => echo_client(connection, items),
        "silent" => Ok(wait_for_hangup(connection)),
        other => panic!("unknown action {other}"),
    };
    outcome.unwrap_or_else(|e| describe(&e))
}

fn consumed(rx: &mut fdring::Receiver<u64>) -> String {
    let mut flowing = false;
    let (n, end) = consume(rx, Api::With, seed(), |n| {
        if !flowing && n >= FLOWING_AT {
            flowing = true;
            report(&format!("flowing items={n}"));
        }
    });
    // Nothing after the end: a receiver is disconnected only once drained.
    let after = rx.try_recv();
    format!("items={n} end={end:?} after={after:?}")
}

fn produced(tx: &mut fdring::Sender<u64>, count: Option<u64>) -> String {
    match produce(tx, Api::With, count, seed()) {
        Ok(n) => format!("items={n}"),
        Err((n, e)) => format!("items={n} {}", describe(&e)),
    }
}

/// The reply to a request.
fn reply_to(request: u64) -> u64 {
    request.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5a5a
}

/// Takes the request ring, offers the reply ring, and answers each request
/// until the client hangs up.
fn echo_serve(connection: &mut Connection) -> Result<String, Error> {
    let mut requests = connection.take_receiver::<u64>(&Builder::new())?;
    let mut replies = connection.offer_receiver::<u64>(&Builder::new().capacity(1024))?;
    let mut buf = vec![0u64; 1024];
    let mut echoed = 0u64;
    let end = loop {
        match requests.recv_slice(&mut buf) {
            Ok(n) => {
                let answers: Vec<u64> = buf[..n].iter().map(|&r| reply_to(r)).collect();
                replies.send_slice(&answers)?;
                echoed += n as u64;
            }
            Err(e) => break e,
        }
    };
    Ok(format!("echoed={echoed} end={end:?}"))
}

/// Offers the request ring, takes the reply ring, and sends `items`
/// requests in batches of up to 512 (fewer than either ring holds, so that
/// neither side can block the other for good), checking every reply.
fn echo_client(connection: &mut Connection, items: u64) -> Result<String, Error> {
    let mut requests = connection.offer_receiver::<u64>(&Builder::new().capacity(1024))?;
    let mut replies = connection.take_receiver::<u64>(&Builder::new())?;
    let mut rng = common::Rng::new(seed());
    let mut next = 0u64;
    let mut got = vec![0u64; 512];
    while next < items {
        let batch = rng.upto(512).min((items - next) as usize);
        let sent: Vec<u64> = (next..next + batch as u64).collect();
        requests.send_slice(&sent)?;
        let mut have = 0;
        while have < batch {
            have += replies.recv_slice(&mut got[have..batch])?;
        }
        for (request, reply) in sent.iter().zip(&got[..batch]) {
            assert_eq!(*reply, reply_to(*request), "the reply to request {request}");
        }
        next += batch as u64;
    }
    Ok(format!("echoed={next}"))
}

/// Waits until the listener hangs up on this connection (or `HANG`).
fn wait_for_hangup(connection: &Connection) -> String {
    report("waiting");
    let fd = connection.as_fd().try_clone_to_owned().expect("dup");
    let mut stream = UnixStream::from(fd);
    stream.set_read_timeout(Some(HANG)).expect("timeout");
    let mut rest = Vec::new();
    match stream.read_to_end(&mut rest) {
        Ok(_) => format!("hung-up bytes_after_greeting={}", rest.len()),
        Err(e) => format!("still-open {e}"),
    }
}

/// Takes the one-item ring of cycle `n` and checks its item.
fn take_one(connection: &mut Connection, n: u64) {
    let mut rx = connection
        .take_receiver::<u64>(&Builder::new())
        .unwrap_or_else(|e| panic!("connection {n}: take_receiver: {e}"));
    let item = rx
        .recv_timeout(HANG)
        .unwrap_or_else(|e| panic!("connection {n}: recv: {e}"));
    assert_eq!(item, n, "connection {n} carried the item of another");
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Offer,
    Take,
}

/// One side of a mismatch case: the listener takes what it expects, the
/// client offers something else (or, in `matching`, the same). Reports the
/// fds this process held before and after, and the error.
fn mismatch_case(case: &str, side: Side, connection: &mut Connection) -> String {
    let offer = Builder::new().capacity(4096);
    let take = Builder::new();
    let before = fd_count();
    let result: Result<(), Error> = match (case, side) {
        ("item-size", Side::Offer) => connection.offer_receiver::<u64>(&offer).map(drop),
        ("item-size", Side::Take) => connection.take_receiver::<u32>(&take).map(drop),
        ("item-align", Side::Offer) => connection.offer_receiver::<u64>(&offer).map(drop),
        ("item-align", Side::Take) => connection.take_receiver::<[u8; 8]>(&take).map(drop),
        ("type-tag", Side::Offer) => connection
            .offer_receiver::<u64>(&offer.type_tag(0x1111))
            .map(drop),
        ("type-tag", Side::Take) => connection
            .take_receiver::<u64>(&take.type_tag(0x2222))
            .map(drop),
        ("end", Side::Offer) => connection.offer_receiver::<u64>(&offer).map(drop),
        ("end", Side::Take) => connection.take_sender::<u64>(&take).map(drop),
        ("shape", Side::Offer) => connection.offer_frame_receiver(&offer, 8).map(drop),
        ("shape", Side::Take) => connection.take_receiver::<u64>(&take).map(drop),
        ("frame-align", Side::Offer) => connection.offer_frame_receiver(&offer, 8).map(drop),
        ("frame-align", Side::Take) => connection.take_frame_receiver(&take, 16).map(drop),
        // Both sides offer, or both take: nobody answers as expected.
        ("both-offer", _) => connection.offer_receiver::<u64>(&offer).map(drop),
        ("both-take", _) => connection.take_receiver::<u64>(&take).map(drop),
        // The control: the same description on both sides opens.
        ("matching", Side::Offer) => connection.offer_frame_receiver(&offer, 16).map(drop),
        ("matching", Side::Take) => connection.take_frame_receiver(&take, 16).map(drop),
        (other, _) => panic!("unknown mismatch case {other}"),
    };
    let after = fd_count();
    let result = match result {
        Ok(()) => "ok=true".to_owned(),
        Err(e) => describe(&e),
    };
    format!("case={case} fds_before={before} fds_after={after} {result}")
}

// The messages of the connection protocol, built byte by byte as a peer of
// another implementation (or a hostile one) would (docs/format.md,
// section 9): 64 bytes, native byte order.
const WELCOME: u32 = 1;
const OFFER: u32 = 3;
const DECLINE: u32 = 5;

fn message(version: u32, kind: u32) -> [u8; 64] {
    let mut m = [0u8; 64];
    m[..8].copy_from_slice(b"FDRSVC\0\0");
    m[8..12].copy_from_slice(&version.to_ne_bytes());
    m[12..16].copy_from_slice(&kind.to_ne_bytes());
    m
}

/// An offer of a ring of `u64` whose receiving end is for the taker.
fn offer_of_u64_receiver(version: u32) -> [u8; 64] {
    let mut m = message(version, OFFER);
    m[36..40].copy_from_slice(&1u32.to_ne_bytes()); // end: the receiver
    m[40..44].copy_from_slice(&8u32.to_ne_bytes()); // item_size
    m[44..48].copy_from_slice(&8u32.to_ne_bytes()); // item_align
    m
}

fn word(m: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(m[at..at + 4].try_into().unwrap())
}

/// Connects with a plain socket, reads the greeting, sends what `RAW`
/// says, then reports what the listener answered before it hung up.
fn role_raw_client() {
    let name = env(NAME).expect(NAME);
    let addr = SocketAddr::from_abstract_name(format!("{}{name}", service::ABSTRACT_PREFIX))
        .expect("abstract address");
    let mut stream = UnixStream::connect_addr(&addr).expect("connect");
    stream.set_read_timeout(Some(HANG)).expect("timeout");
    let mut greeting = [0u8; 64];
    stream.read_exact(&mut greeting).expect("the greeting");
    assert_eq!(word(&greeting, 12), WELCOME, "the listener's greeting");
    let mode = env(RAW).expect(RAW);
    match mode.as_str() {
        "half" => stream.write_all(&offer_of_u64_receiver(1)[..32]),
        "garbage" => stream.write_all(&[0xa5; 64]),
        "version2" => stream.write_all(&offer_of_u64_receiver(2)),
        other => panic!("unknown raw mode {other}"),
    }
    .expect("send");
    report(&format!("sent pid={}", std::process::id()));
    let mut answer = Vec::new();
    let outcome = match stream.read_to_end(&mut answer) {
        Ok(_) => "hung-up",
        Err(_) => "still-open",
    };
    let (kind, reason, version) = if answer.len() >= 64 {
        (word(&answer, 12), word(&answer, 28), word(&answer, 8))
    } else {
        (0, 0, 0)
    };
    report(&format!(
        "answered {outcome} bytes={} kind={kind} reason={reason} version={version}",
        answer.len()
    ));
}

// ---------------------------------------------------------------------------
// The test side

/// Starts this test binary in `role` as a process of its own session,
/// configured by `vars`, as the user `uid` (and its group, with no
/// supplementary groups) if given.
fn spawn_detached(role: &str, vars: &[(&str, &str)], uid: Option<u32>) -> ChildProc {
    ChildProc::spawn(role, |command| {
        for (key, value) in vars {
            command.env(key, value);
        }
        if let Some(uid) = uid {
            // std drops the supplementary groups (`setgroups(0)`) when
            // root sets a uid.
            command.uid(uid).gid(uid);
        }
        // SAFETY: the closure runs between fork and exec and calls only
        // `setsid`, which is async-signal-safe; it allocates nothing.
        unsafe {
            command.pre_exec(|| {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    })
}

fn spawn_listener(vars: &[(&str, &str)]) -> (ChildProc, u32) {
    spawn_listener_as(vars, None)
}

fn spawn_listener_as(vars: &[(&str, &str)], uid: Option<u32>) -> (ChildProc, u32) {
    let mut listener = spawn_detached("listener", vars, uid);
    let line = listener.expect_line("listening", HANG);
    let pid = fields(&line)["pid"].parse().unwrap();
    assert_eq!(pid, listener.id(), "{line}");
    (listener, pid)
}

/// Waits for the listener's report of serving `client` (`items` items, no
/// accept error), passing over the connections of `departed`, which hung
/// up before they were served (a refused peer, a probe).
fn expect_served(listener: &mut ChildProc, departed: u64, client: u32, items: u64) {
    let served = loop {
        let served = listener.expect_line("served", HANG);
        if number(&served, "pid") != departed {
            break served;
        }
        assert_eq!(err_of(&served), "Disconnected", "{served}");
    };
    assert_eq!(
        (
            number(&served, "pid"),
            number(&served, "accept_errors"),
            number(&served, "items")
        ),
        (u64::from(client), 0, items),
        "{served}"
    );
}

/// Whether this process may start children as other users.
fn can_switch_users(test: &str) -> bool {
    let root = rustix::process::geteuid().is_root();
    if !root {
        eprintln!("{test}: skipped: starting processes as other uids needs root");
    }
    root
}

/// The listener (one process) takes `listener_action`'s ring, the client
/// (another) does `client_action`; `items` flow from whichever side
/// produces, and the consumer checks every one.
fn stream_between_unrelated_processes(listener_action: &str, client_action: &str, items: u64) {
    let name = unique_name("svctest", "stream");
    let items_s = items.to_string();
    let (mut listener, listener_pid) =
        spawn_listener(&[(NAME, &name), (ACTION, listener_action), (ITEMS, &items_s)]);
    let mut client = spawn_detached(
        "client",
        &[(NAME, &name), (ACTION, client_action), (ITEMS, &items_s)],
        None,
    );
    let connected = client.expect_line("connected", HANG);
    assert_eq!(
        number(&connected, "listener_pid"),
        u64::from(listener_pid),
        "the client found the listener by its name: {connected}"
    );
    let served = listener.expect_line("served", HANG);
    let did = client.expect_line("did", HANG);
    assert_eq!(
        number(&served, "pid"),
        u64::from(client.id()),
        "the kernel names the client: {served}"
    );
    let listener_consumes = matches!(listener_action, "take-items" | "offer-sender-items");
    let (consumer, producer) = if listener_consumes {
        (&served, &did)
    } else {
        (&did, &served)
    };
    assert_eq!(number(producer, "items"), items, "producer: {producer}");
    assert_eq!(
        (
            number(consumer, "items"),
            word_of(consumer, "end"),
            word_of(consumer, "after")
        ),
        (items, "Disconnected", "Err(Disconnected)"),
        "the consumer got every item in order, then Disconnected: {consumer}"
    );
    listener.finish();
    client.finish();
}

#[test]
fn unrelated_processes_stream_ten_million_items_to_a_listener_that_takes_the_receiver() {
    stream_between_unrelated_processes("take-items", "offer-items", TEN_MILLION);
}

#[test]
fn unrelated_processes_stream_ten_million_items_from_a_listener_that_offers_the_receiver() {
    stream_between_unrelated_processes("offer-items", "take-items", TEN_MILLION);
}

#[test]
fn offering_and_taking_the_sending_end_streams_in_order_both_ways() {
    // The listener keeps the receiver and hands out the sender...
    stream_between_unrelated_processes("offer-sender-items", "take-sender-items", 200_000);
    // ...and the other way round.
    stream_between_unrelated_processes("take-sender-items", "offer-sender-items", 200_000);
}

#[test]
fn one_connection_carries_a_request_ring_and_a_reply_ring() {
    let name = unique_name("svctest", "echo");
    let items = "300000";
    let (mut listener, _) = spawn_listener(&[(NAME, &name), (ACTION, "echo-serve")]);
    let mut client = spawn_detached(
        "client",
        &[(NAME, &name), (ACTION, "echo-client"), (ITEMS, items)],
        None,
    );
    let did = client.expect_line("did", HANG);
    assert_eq!(word_of(&did, "echoed"), items, "{did}");
    let served = listener.expect_line("served", HANG);
    assert_eq!(
        (word_of(&served, "echoed"), word_of(&served, "end")),
        (items, "Disconnected"),
        "{served}"
    );
    listener.finish();
    client.finish();
}

// ---- access control --------------------------------------------------------

#[test]
fn a_client_of_another_uid_is_refused_by_default_and_the_listener_goes_on() {
    if !can_switch_users("a_client_of_another_uid_is_refused_by_default") {
        return;
    }
    let name = unique_name("svctest", "uid-refused");
    let (mut listener, listener_pid) =
        spawn_listener(&[(NAME, &name), (ACTION, "take-items"), (ITEMS, "1000")]);
    let mut stranger = spawn_detached("client", &[(NAME, &name), (ITEMS, "1000")], Some(NOBODY));
    let refused = stranger.expect_line("connect-error", HANG);
    let pid = stranger.id();
    assert_eq!(
        err_of(&refused),
        format!(
            "{:?}",
            Error::Rejected(Rejection::RefusedByPeer {
                pid,
                uid: NOBODY,
                gid: NOBODY
            })
        ),
        "the client of uid {NOBODY} learns it was refused: {refused}"
    );
    let refusal = listener.expect_line("accept-error", HANG);
    assert_eq!(
        err_of(&refusal),
        format!(
            "{:?}",
            Error::Rejected(Rejection::PeerNotAllowed {
                pid,
                uid: NOBODY,
                gid: NOBODY
            })
        ),
        "the listener names the refused client: {refusal}"
    );
    stranger.finish();
    // The refusal cost the listener nothing: a client of its own uid is
    // served next.
    let mut client = spawn_detached("client", &[(NAME, &name), (ITEMS, "1000")], None);
    let served = listener.expect_line("served", HANG);
    assert_eq!(number(&served, "pid"), u64::from(client.id()), "{served}");
    assert_eq!(number(&served, "items"), 1000, "{served}");
    assert_eq!(
        number(&client.expect_line("connected", HANG), "listener_pid"),
        u64::from(listener_pid)
    );
    client.finish();
    listener.finish();
}

#[test]
fn a_client_of_another_uid_is_served_when_the_policy_allows_its_uid() {
    if !can_switch_users("a_client_of_another_uid_is_served_when_the_policy_allows_it") {
        return;
    }
    let name = unique_name("svctest", "uid-allowed");
    let allow = format!("uid:{NOBODY}");
    let (mut listener, _) = spawn_listener(&[
        (NAME, &name),
        (ACTION, "take-items"),
        (ACCESS, &allow),
        (ITEMS, "100000"),
    ]);
    let mut client = spawn_detached("client", &[(NAME, &name), (ITEMS, "100000")], Some(NOBODY));
    let connected = client.expect_line("connected", HANG);
    assert_eq!(
        (
            number(&connected, "uid"),
            number(&connected, "listener_uid")
        ),
        (u64::from(NOBODY), 0),
        "{connected}"
    );
    let served = listener.expect_line("served", HANG);
    assert_eq!(
        (number(&served, "uid"), number(&served, "items")),
        (u64::from(NOBODY), 100_000),
        "the ring of a client of uid {NOBODY} streams: {served}"
    );
    client.finish();
    listener.finish();
}

#[test]
fn a_root_client_refuses_a_listener_of_another_uid_and_sends_it_nothing() {
    if !can_switch_users("a_root_client_refuses_a_listener_of_another_uid") {
        return;
    }
    let name = unique_name("svctest", "uid-listener");
    // The listener would let root in: the refusal is the client's own.
    let (mut listener, listener_pid) = spawn_listener_as(
        &[
            (NAME, &name),
            (ACTION, "take-items"),
            (ACCESS, "uid:0"),
            (ITEMS, "1000"),
            (CONNECTIONS, "1000000"),
        ],
        Some(NOBODY),
    );
    let mut client = spawn_detached("client", &[(NAME, &name), (ITEMS, "1000")], None);
    let refused = client.expect_line("connect-error", HANG);
    assert_eq!(
        err_of(&refused),
        format!(
            "{:?}",
            Error::Rejected(Rejection::PeerNotAllowed {
                pid: listener_pid,
                uid: NOBODY,
                gid: NOBODY
            })
        ),
        "a root client trusts root and itself only: {refused}"
    );
    let root_pid = u64::from(client.id());
    client.finish();
    // A client of the listener's own uid is served next. Before it, the
    // listener saw of the root client at most a connection that hung up
    // with nothing sent on it (no offer, no fd); or nothing at all, if it
    // hung up before the listener got to it.
    let peer = spawn_detached("client", &[(NAME, &name), (ITEMS, "1000")], Some(NOBODY));
    expect_served(&mut listener, root_pid, peer.id(), 1000);
    peer.finish();
    drop(listener);
}

#[test]
fn an_unprivileged_client_refuses_another_unprivileged_uid_but_trusts_root() {
    if !can_switch_users("an_unprivileged_client_refuses_another_uid_but_trusts_root") {
        return;
    }
    // A listener of uid NOBODY, a client of uid OTHER: refused by the
    // client's default trust (its own uid, or root).
    let name = unique_name("svctest", "uid-peers");
    let allow = format!("uid:{OTHER}");
    let (listener, listener_pid) = spawn_listener_as(
        &[(NAME, &name), (ACTION, "take-items"), (ACCESS, &allow)],
        Some(NOBODY),
    );
    let mut client = spawn_detached("client", &[(NAME, &name), (ITEMS, "1000")], Some(OTHER));
    let refused = client.expect_line("connect-error", HANG);
    assert_eq!(
        err_of(&refused),
        format!(
            "{:?}",
            Error::Rejected(Rejection::PeerNotAllowed {
                pid: listener_pid,
                uid: NOBODY,
                gid: NOBODY
            })
        ),
        "{refused}"
    );
    client.finish();
    drop(listener);
    // A root listener that allows uid OTHER: the same client trusts it,
    // and streams.
    let name = unique_name("svctest", "uid-root-listener");
    let (mut listener, _) = spawn_listener(&[
        (NAME, &name),
        (ACTION, "take-items"),
        (ACCESS, &allow),
        (ITEMS, "100000"),
    ]);
    let mut client = spawn_detached("client", &[(NAME, &name), (ITEMS, "100000")], Some(OTHER));
    let connected = client.expect_line("connected", HANG);
    assert_eq!(number(&connected, "listener_uid"), 0, "{connected}");
    let served = listener.expect_line("served", HANG);
    assert_eq!(
        (number(&served, "uid"), number(&served, "items")),
        (u64::from(OTHER), 100_000),
        "{served}"
    );
    client.finish();
    listener.finish();
}

// ---- names: taken, stale, killed -------------------------------------------

fn io_kind(result: Result<Listener, Error>) -> std::io::ErrorKind {
    match result {
        Err(Error::Io { source, .. }) => source.kind(),
        other => panic!("expected an Io error, got {other:?}"),
    }
}

#[test]
fn an_abstract_name_taken_by_a_live_listener_is_addr_in_use() {
    let name = unique_name("svctest", "taken");
    let (listener, _) = spawn_listener(&[(NAME, &name), (ACTION, "never-accept")]);
    assert_eq!(
        io_kind(Listener::bind(&name)),
        std::io::ErrorKind::AddrInUse
    );
    drop(listener);
}

#[test]
fn a_live_listeners_path_is_addr_in_use_and_the_attempt_does_not_disturb_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("svc.sock");
    let path_s = path.to_str().unwrap();
    let (mut listener, _) = spawn_listener(&[
        (PATH, path_s),
        (ACTION, "take-items"),
        (ITEMS, "1000"),
        (CONNECTIONS, "1000000"),
    ]);
    // The second bind probes the file to tell a live listener from a
    // stale file: this one answers.
    assert_eq!(
        io_kind(Listener::bind_path(&path)),
        std::io::ErrorKind::AddrInUse
    );
    assert!(path.exists(), "the live listener's file is still there");
    // The probe's connection came and went: if the listener got to it
    // first, it saw a connection that hung up with nothing on it; if not,
    // nothing at all. Either way its accept goes on to the next real
    // client, without an error.
    let client = spawn_detached("client", &[(PATH, path_s), (ITEMS, "1000")], None);
    expect_served(
        &mut listener,
        u64::from(std::process::id()),
        client.id(),
        1000,
    );
    client.finish();
    drop(listener);
}

#[test]
fn a_stale_socket_file_of_a_killed_listener_is_replaced_by_the_next_bind() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("svc.sock");
    let (mut listener, _) =
        spawn_listener(&[(PATH, path.to_str().unwrap()), (ACTION, "never-accept")]);
    listener.kill();
    listener.wait_within(HANG);
    let kind = std::fs::symlink_metadata(&path)
        .expect("kill -9 leaves the socket file behind")
        .file_type();
    assert!(kind.is_socket());
    // Nobody answers there: a client is refused at once...
    let started = Instant::now();
    match Connector::path(&path)
        .timeout(Duration::from_secs(30))
        .connect()
    {
        Err(Error::Io { source, .. }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::ConnectionRefused)
        }
        other => panic!("connect to a stale socket file: {other:?}"),
    }
    assert!(started.elapsed() < NOTICE, "a dead listener is no wait");
    // ...and the next listener replaces the stale file and serves.
    let next = Listener::bind_path(&path).expect("bind over a stale socket file");
    let client = spawn_bounded("client", {
        let path = path.clone();
        move || -> Result<u64, Error> {
            let mut connection = Connector::path(&path).connect()?;
            let mut tx = connection.offer_receiver::<u64>(&Builder::new().capacity(512))?;
            tx.send(7)?;
            Ok(7)
        }
    });
    let mut connection = next.accept().expect("accept");
    let mut rx = connection
        .take_receiver::<u64>(&Builder::new())
        .expect("take");
    assert_eq!(rx.recv_timeout(HANG), Ok(7));
    assert_eq!(client.join_within(HANG), Ok(7));
    drop(next);
    assert!(!path.exists(), "the new listener's file goes with it");
}

/// A socket for a listener that never accepts; close-on-exec, as
/// everything the test process opens must be, or the children started
/// meanwhile would inherit it.
fn stuck_listener_socket() -> std::os::fd::OwnedFd {
    rustix::net::socket_with(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::STREAM,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .unwrap()
}

#[test]
fn binding_the_path_of_a_live_listener_whose_queue_is_full_is_addr_in_use_not_a_wait() {
    // A listener (stuck, or hostile) that never accepts, with a queue of
    // one connection, already taken.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("svc.sock");
    let stuck = stuck_listener_socket();
    rustix::net::bind(&stuck, &rustix::net::SocketAddrUnix::new(&path).unwrap()).unwrap();
    rustix::net::listen(&stuck, 0).unwrap();
    let queued = UnixStream::connect(&path).expect("the one queued connection");
    // Probing it must not wait for a place in its queue.
    let bind = spawn_bounded("bind_path", {
        let path = path.clone();
        move || io_kind(Listener::bind_path(&path))
    });
    assert_eq!(bind.join_within(NOTICE), std::io::ErrorKind::AddrInUse);
    drop((queued, stuck));
}

#[test]
fn a_path_that_is_a_regular_file_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("not-a-socket");
    std::fs::write(&path, b"precious").unwrap();
    assert_eq!(
        io_kind(Listener::bind_path(&path)),
        std::io::ErrorKind::AddrInUse
    );
    assert_eq!(std::fs::read(&path).unwrap(), b"precious");
}

/// The lines of `/proc/net/unix` that name the abstract socket `name`.
fn abstract_sockets_named(name: &str) -> Vec<String> {
    let wanted = format!("@{}{name}", service::ABSTRACT_PREFIX);
    std::fs::read_to_string("/proc/net/unix")
        .expect("/proc/net/unix")
        .lines()
        .filter(|line| line.split_whitespace().nth(7) == Some(wanted.as_str()))
        .map(str::to_owned)
        .collect()
}

#[test]
fn after_an_abstract_listener_is_killed_connect_is_refused_at_once_and_the_name_is_free() {
    let name = unique_name("svctest", "killed");
    let (mut listener, _) = spawn_listener(&[(NAME, &name), (ACTION, "never-accept")]);
    // The name lives in the abstract namespace only: the kernel lists it
    // with '@', no file stands for it.
    assert_eq!(
        abstract_sockets_named(&name).len(),
        1,
        "the listening socket, listed as @{}{name}",
        service::ABSTRACT_PREFIX
    );
    listener.kill();
    listener.wait_within(HANG);
    assert!(
        abstract_sockets_named(&name).is_empty(),
        "nothing of the listener is left after kill -9"
    );
    let started = Instant::now();
    match Connector::new(&name)
        .timeout(Duration::from_secs(30))
        .connect()
    {
        Err(Error::Io { source, .. }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::ConnectionRefused)
        }
        other => panic!("connect to a killed listener's name: {other:?}"),
    }
    assert!(
        started.elapsed() < NOTICE,
        "a dead listener fails connect at once, not after the timeout"
    );
    let again = Listener::bind(&name).expect("the name is free again");
    drop(again);
}

// ---- peers that are slow, silent or broken ---------------------------------

#[test]
fn silent_and_broken_clients_do_not_block_the_listener_and_are_dropped() {
    let name = unique_name("svctest", "patient");
    let mut listener = spawn_detached(
        "patient-listener",
        &[
            (NAME, &name),
            (IDLE, "3"),
            (TIMEOUT_MS, "300"),
            (ITEMS, "1000"),
        ],
        None,
    );
    listener.expect_line("listening", HANG);
    // A client that connects and says nothing...
    let mut silent = spawn_detached("client", &[(NAME, &name), (ACTION, "silent")], None);
    silent.expect_line("waiting", HANG);
    // ...one that sends half an offer, and one that sends garbage.
    let mut half = spawn_detached("raw-client", &[(NAME, &name), (RAW, "half")], None);
    half.expect_line("sent", HANG);
    let mut garbage = spawn_detached("raw-client", &[(NAME, &name), (RAW, "garbage")], None);
    garbage.expect_line("sent", HANG);
    for idle in [&silent, &half, &garbage] {
        let accepted = listener.expect_line("accepted", HANG);
        assert_eq!(number(&accepted, "pid"), u64::from(idle.id()), "{accepted}");
    }
    // The listener holds the three, and a well-behaved client is served
    // before it asks any of them for anything.
    let client = spawn_detached("client", &[(NAME, &name), (ITEMS, "1000")], None);
    let served = listener.expect_line("served", HANG);
    assert_eq!(
        (number(&served, "pid"), number(&served, "items")),
        (u64::from(client.id()), 1000),
        "{served}"
    );
    client.finish();
    // Asked for a ring, the silent one times out after the listener's
    // timeout; the broken ones are protocol errors at once.
    let line = listener.expect_line("idle", HANG);
    assert_eq!(number(&line, "pid"), u64::from(silent.id()));
    assert_eq!(err_of(&line), "Timeout", "{line}");
    let line = listener.expect_line("idle", HANG);
    assert_eq!(number(&line, "pid"), u64::from(half.id()));
    assert!(
        err_of(&line).starts_with("Rejected(BadHandoff(")
            && line.contains("broke the protocol")
            && line.contains("a message of 32 bytes"),
        "{line}"
    );
    let line = listener.expect_line("idle", HANG);
    assert_eq!(number(&line, "pid"), u64::from(garbage.id()));
    assert!(
        err_of(&line).starts_with("Rejected(BadHandoff(") && line.contains("without the magic"),
        "{line}"
    );
    listener.finish();
    // Each was dropped: it saw the listener hang up, with nothing sent
    // after the greeting.
    let did = silent.expect_line("did", HANG);
    assert!(did.contains("hung-up bytes_after_greeting=0"), "{did}");
    for raw in [&mut half, &mut garbage] {
        let answered = raw.expect_line("answered", HANG);
        assert!(answered.contains("hung-up bytes=0"), "{answered}");
    }
    silent.finish();
    half.finish();
    garbage.finish();
}

#[test]
fn a_peer_of_another_protocol_version_is_refused_naming_both_versions() {
    let name = unique_name("svctest", "version");
    let (mut listener, _) = spawn_listener(&[(NAME, &name), (ACTION, "take-items")]);
    let mut raw = spawn_detached("raw-client", &[(NAME, &name), (RAW, "version2")], None);
    let served = listener.expect_line("served", HANG);
    assert_eq!(
        err_of(&served),
        format!(
            "{:?}",
            Error::Rejected(Rejection::Mismatch {
                field: Field::Version,
                offered: 2,
                expected: u64::from(service::PROTOCOL_VERSION)
            })
        ),
        "{served}"
    );
    // The peer was told, in a message of the version it can read.
    let answered = raw.expect_line("answered", HANG);
    assert_eq!(
        (
            number(&answered, "kind"),
            number(&answered, "reason"),
            number(&answered, "version")
        ),
        (u64::from(DECLINE), 1, 1),
        "a DECLINE naming the version field: {answered}"
    );
    raw.finish();
    listener.finish();
}

#[test]
fn connect_times_out_when_the_listener_never_accepts() {
    let name = unique_name("svctest", "no-accept");
    let (listener, _) = spawn_listener(&[(NAME, &name), (ACTION, "never-accept")]);
    let mut client = spawn_detached("client", &[(NAME, &name), (TIMEOUT_MS, "300")], None);
    let line = client.expect_line("connect-error", HANG);
    assert_eq!(err_of(&line), "Timeout", "{line}");
    client.finish();
    drop(listener);
}

#[test]
fn connect_times_out_when_the_listeners_queue_is_full() {
    // A listener that never accepts, with a queue of one connection,
    // already taken: a connect waits for a place until its timeout.
    let name = unique_name("svctest", "full-queue");
    let stuck = stuck_listener_socket();
    let addr = format!("{}{name}", service::ABSTRACT_PREFIX);
    let addr = rustix::net::SocketAddrUnix::new_abstract_name(addr.as_bytes()).unwrap();
    rustix::net::bind(&stuck, &addr).unwrap();
    rustix::net::listen(&stuck, 0).unwrap();
    let queued = Connector::new(&name).timeout(Duration::from_millis(300));
    let queued = spawn_bounded("queued", move || queued.connect().map(drop));
    // The first connect is queued (and waits for a greeting that never
    // comes); the next finds the queue full.
    let full = Connector::new(&name).timeout(Duration::from_millis(300));
    let full = spawn_bounded("full", move || full.connect().map(drop));
    assert_eq!(queued.join_within(NOTICE), Err(Error::Timeout));
    assert_eq!(full.join_within(NOTICE), Err(Error::Timeout));
    drop(stuck);
}

#[test]
fn connect_to_a_missing_socket_file_is_not_found_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    match Connector::path(dir.path().join("nobody-here"))
        .timeout(Duration::from_secs(30))
        .connect()
    {
        Err(Error::Io { source, .. }) => assert_eq!(source.kind(), std::io::ErrorKind::NotFound),
        other => panic!("connect to a missing socket file: {other:?}"),
    }
    assert!(started.elapsed() < NOTICE, "a missing listener is no wait");
}

/// Accepts one connection on a plain listener, waiting at most `HANG`.
fn accept_within(raw: &UnixListener) -> UnixStream {
    raw.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + HANG;
    loop {
        match raw.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).unwrap();
                stream.set_read_timeout(Some(HANG)).unwrap();
                return stream;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "no client connected");
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

fn welcome() -> [u8; 64] {
    let mut m = message(1, WELCOME);
    m[16..20].copy_from_slice(&std::process::id().to_ne_bytes());
    m
}

/// Sends `bytes` with `fds` in one message.
fn send_with_fds(stream: &UnixStream, bytes: &[u8], fds: &[std::os::fd::BorrowedFd<'_>]) {
    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    assert!(control.push(SendAncillaryMessage::ScmRights(fds)));
    let sent = rustix::net::sendmsg(
        stream,
        &[std::io::IoSlice::new(bytes)],
        &mut control,
        SendFlags::NOSIGNAL,
    )
    .expect("sendmsg");
    assert_eq!(sent, bytes.len());
}

#[test]
fn a_listener_that_sends_garbage_is_a_protocol_error_for_the_client() {
    let name = unique_name("svctest", "fake-listener");
    let raw = UnixListener::bind_addr(
        &SocketAddr::from_abstract_name(format!("{}{name}", service::ABSTRACT_PREFIX)).unwrap(),
    )
    .unwrap();
    let client = |action: &str| {
        spawn_detached(
            "client",
            &[(NAME, &name), (ACTION, action), (TIMEOUT_MS, "5000")],
            None,
        )
    };
    let decline_reason = |stream: &mut UnixStream| {
        let mut answer = [0u8; 64];
        stream.read_exact(&mut answer).expect("the client's answer");
        (word(&answer, 12), word(&answer, 28))
    };

    // 64 bytes of garbage instead of a greeting.
    let mut child = client("take-items");
    let mut stream = accept_within(&raw);
    stream.write_all(&[0x5a; 64]).unwrap();
    let line = child.expect_line("connect-error", HANG);
    assert!(
        err_of(&line).starts_with("Rejected(BadHandoff(") && line.contains("without the magic"),
        "{line}"
    );
    child.finish();

    // A greeting, then 20 bytes instead of an offer.
    let mut child = client("take-items");
    let mut stream = accept_within(&raw);
    stream.write_all(&welcome()).unwrap();
    stream.write_all(&[1; 20]).unwrap();
    let line = child.expect_line("did", HANG);
    assert!(
        err_of(&line).starts_with("Rejected(BadHandoff(") && line.contains("20 bytes"),
        "{line}"
    );
    child.finish();

    // A well-formed offer that carries no fds: declined.
    let mut child = client("take-items");
    let mut stream = accept_within(&raw);
    stream.write_all(&welcome()).unwrap();
    stream.write_all(&offer_of_u64_receiver(1)).unwrap();
    assert_eq!(decline_reason(&mut stream), (DECLINE, 100));
    let line = child.expect_line("did", HANG);
    assert!(line.contains("an offer carrying 0 fds, not 2"), "{line}");
    child.finish();

    // A well-formed offer whose two fds are not a ring (an empty memfd,
    // unsealed, and a pipe): refused by the checks of open, declined.
    let mut child = client("take-items");
    let mut stream = accept_within(&raw);
    stream.write_all(&welcome()).unwrap();
    let memfd = rustix::fs::memfd_create("not-a-ring", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
    let (pipe_r, _pipe_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
    send_with_fds(
        &stream,
        &offer_of_u64_receiver(1),
        &[memfd.as_fd(), pipe_r.as_fd()],
    );
    assert_eq!(decline_reason(&mut stream), (DECLINE, 100));
    let line = child.expect_line("did", HANG);
    assert!(err_of(&line).starts_with("Rejected("), "{line}");
    child.finish();
}

// ---- mismatches ------------------------------------------------------------

#[test]
fn mismatched_rings_are_refused_on_both_sides_naming_the_field_and_both_values() {
    let cases = [
        ("item-size", Field::ItemSize, 8, 4),
        ("item-align", Field::ItemAlign, 8, 1),
        ("type-tag", Field::TypeTag, 0x1111, 0x2222),
        ("end", Field::End, 1, 0),
        ("shape", Field::Shape, 1, 0),
        ("frame-align", Field::FrameAlign, 8, 16),
    ];
    let names: Vec<&str> = cases.iter().map(|c| c.0).chain(["matching"]).collect();
    let names = names.join(",");
    let connections = (cases.len() + 1).to_string();
    let name = unique_name("svctest", "mismatch");
    let (mut listener, _) = spawn_listener(&[
        (NAME, &name),
        (ACTION, "mismatch"),
        (CASES, &names),
        (CONNECTIONS, &connections),
    ]);
    let mut client = spawn_detached(
        "client",
        &[(NAME, &name), (ACTION, "mismatches"), (CASES, &names)],
        None,
    );
    for (case, field, offered, expected) in cases {
        let want = format!(
            "{:?}",
            Error::Rejected(Rejection::Mismatch {
                field,
                offered,
                expected
            })
        );
        for (side, line) in [
            ("taker", listener.expect_line("served", HANG)),
            ("offerer", client.expect_line("did", HANG)),
        ] {
            assert_eq!(word_of(&line, "case"), case, "{line}");
            assert_eq!(err_of(&line), want, "{case}: the {side}'s error: {line}");
            assert_eq!(
                number(&line, "fds_after"),
                number(&line, "fds_before"),
                "{case}: the {side} holds nothing of the refused ring: {line}"
            );
        }
    }
    // The control: the same description on both sides opens.
    for line in [
        listener.expect_line("served", HANG),
        client.expect_line("did", HANG),
    ] {
        assert!(
            line.contains("case=matching") && line.contains("ok=true"),
            "{line}"
        );
    }
    client.finish();
    listener.finish();
}

#[test]
fn two_sides_that_both_offer_or_both_take_each_get_an_error_and_hold_nothing() {
    let name = unique_name("svctest", "both");
    let (mut listener, _) = spawn_listener(&[
        (NAME, &name),
        (ACTION, "mismatch"),
        (CASES, "both-offer,both-take"),
        (CONNECTIONS, "2"),
        (TIMEOUT_MS, "300"),
    ]);
    let mut client = spawn_detached(
        "client",
        &[
            (NAME, &name),
            (ACTION, "mismatches"),
            (CASES, "both-offer,both-take"),
            (TIMEOUT_MS, "20000"),
        ],
        None,
    );
    for line in [
        listener.expect_line("served", HANG),
        client.expect_line("did", HANG),
    ] {
        assert!(
            err_of(&line).starts_with("Rejected(BadHandoff(")
                && line.contains("offered a ring too"),
            "both offered: {line}"
        );
        assert_eq!(
            number(&line, "fds_after"),
            number(&line, "fds_before"),
            "{line}"
        );
    }
    // Both wait for an offer: the listener, whose timeout is shorter, gives
    // up first and hangs up, which the client sees.
    for (line, want) in [
        (listener.expect_line("served", HANG), "Timeout"),
        (client.expect_line("did", HANG), "Disconnected"),
    ] {
        assert_eq!(err_of(&line), want, "both waited for an offer: {line}");
        assert_eq!(
            number(&line, "fds_after"),
            number(&line, "fds_before"),
            "{line}"
        );
    }
    client.finish();
    listener.finish();
}

// ---- liveness and lifecycle ------------------------------------------------

#[test]
fn a_listener_sees_disconnected_after_its_client_is_killed_mid_stream() {
    let name = unique_name("svctest", "killed-client");
    let (mut listener, _) = spawn_listener(&[(NAME, &name), (ACTION, "take-items")]);
    // The client streams until it is killed.
    let mut client = spawn_detached("client", &[(NAME, &name), (ITEMS, "0")], None);
    listener.expect_line("flowing", HANG);
    client.kill();
    client.wait_within(HANG);
    let served = listener.expect_line("served", HANG);
    assert_eq!(
        (word_of(&served, "end"), word_of(&served, "after")),
        ("Disconnected", "Err(Disconnected)"),
        "the listener drained the ring, then saw the client's death: {served}"
    );
    assert!(number(&served, "items") >= FLOWING_AT, "{served}");
    listener.finish();
}

#[test]
fn a_listener_serves_three_producers_one_after_another_under_the_same_name() {
    let name = unique_name("svctest", "come-and-go");
    let (mut listener, listener_pid) =
        spawn_listener(&[(NAME, &name), (ACTION, "take-items"), (CONNECTIONS, "3")]);
    for n in 1..=3u64 {
        let items = (n * 50_000).to_string();
        let mut client = spawn_detached("client", &[(NAME, &name), (ITEMS, &items)], None);
        let connected = client.expect_line("connected", HANG);
        assert_eq!(
            number(&connected, "listener_pid"),
            u64::from(listener_pid),
            "{connected}"
        );
        let served = listener.expect_line("served", HANG);
        assert_eq!(
            (
                number(&served, "n"),
                number(&served, "pid"),
                word_of(&served, "items"),
                word_of(&served, "end")
            ),
            (n, u64::from(client.id()), items.as_str(), "Disconnected"),
            "producer {n} was served in full, and its leaving ended its ring: {served}"
        );
        client.finish();
    }
    listener.finish();
}

#[test]
fn a_thousand_connections_leak_no_fd_and_no_memory_in_the_listener() {
    let name = unique_name("svctest", "cycles");
    let (mut listener, _) =
        spawn_listener(&[(NAME, &name), (ACTION, "take-one"), (CONNECTIONS, "1000")]);
    let mut client = spawn_detached(
        "client",
        &[(NAME, &name), (ACTION, "cycles"), (ITEMS, "1000")],
        None,
    );
    let early = listener.expect_line("held", HANG);
    let late = listener.expect_line("held", HANG);
    eprintln!("the listener after 50, then 1000 connections: {early} / {late}");
    assert_eq!(
        (number(&early, "n"), number(&late, "n")),
        (50, 1000),
        "{early} / {late}"
    );
    assert_eq!(
        number(&late, "fds"),
        number(&early, "fds"),
        "the listener's open fds after 1000 connections are what they were after the first \
         50: {early} / {late}"
    );
    assert!(
        number(&late, "maps") <= number(&early, "maps") + 4,
        "the listener's mappings after 1000 connections are within 4 of what they were after \
         the first 50: {early} / {late}"
    );
    assert!(
        number(&late, "rss_kib") <= number(&early, "rss_kib") + 1024,
        "the listener's RSS after 1000 connections is within 1 MiB of what it was after the \
         first 50: {early} / {late}"
    );
    assert_eq!(word_of(&client.expect_line("did", HANG), "cycles"), "1000");
    client.finish();
    listener.finish();
}

// ---- in one process: what the listener makes of a departed client --------

#[test]
fn a_client_that_left_before_it_was_accepted_does_not_fail_accept() {
    let name = unique_name("svctest", "departed");
    let listener = Listener::bind(&name).unwrap();
    // A client connects and leaves before the listener gets to it (a
    // client whose connect timed out, or a probe).
    let addr =
        SocketAddr::from_abstract_name(format!("{}{name}", service::ABSTRACT_PREFIX)).unwrap();
    drop(UnixStream::connect_addr(&addr).unwrap());
    match listener.try_accept() {
        Ok(None) => {}
        other => panic!("try_accept after the only client left: {other:?}, not Ok(None)"),
    }
    drop(UnixStream::connect_addr(&addr).unwrap());
    // A real client comes next: accept returns it, not the departed one's
    // error.
    let client = spawn_bounded("client", {
        let name = name.clone();
        move || -> Result<u64, Error> {
            let mut connection = service::connect(&name)?;
            let mut tx = connection.offer_receiver::<u64>(&Builder::new().capacity(512))?;
            tx.send(42)?;
            Ok(42)
        }
    });
    let mut connection = listener.accept().expect("accept the real client");
    assert_eq!(connection.peer().pid, std::process::id());
    let mut rx = connection.take_receiver::<u64>(&Builder::new()).unwrap();
    assert_eq!(rx.recv_timeout(HANG), Ok(42));
    assert_eq!(client.join_within(HANG), Ok(42));
}
