//! A merge that serves a service's listener: producer processes that know
//! only the name join, stream, close and leave, and new ones join the same
//! merge; a client that never offers is dropped at the join timeout
//! without holding up the others; clients of another uid or item type are
//! refused with the typed error; and a client joins while another source
//! keeps the merge busy.

use std::collections::HashMap;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::thread;
use std::time::{Duration, Instant};

use crate::common::{env, env_u64, err_of, number, report, unique_name, word_of, ChildProc, HANG};
use crate::peers::{parts, spawn_on_sender, COUNT_ENV, PRODUCER, PRODUCER_ENV};
use fdring::service::{self, Listener};
use fdring::topology::{Key, Merge, Next};
use fdring::{Builder, Error, Field, Receiver, Rejection};

/// A producer that finds the merge by the service's name.
pub(crate) const SERVICE_PRODUCER: &str = "service_producer";
/// A client that connects and never offers a ring.
pub(crate) const SILENT_CLIENT: &str = "silent_client";

/// The service's name.
const NAME_ENV: &str = "FDRING_TOPO_SERVICE";
/// `u32`: the producer offers a ring of `u32`s instead of `u64`s.
const ITEM_ENV: &str = "FDRING_TEST_ITEM";

/// The uid the refused client runs as (root runs the tests in CI).
const NOBODY: u32 = 65534;

/// Child: connects to the service `NAME_ENV`, offers a receiving end, and
/// as producer `PRODUCER_ENV` sends its `COUNT_ENV` items, closes, and
/// reports `done count=<sent> drained=<wait_drained's result>` once the
/// merge took them. A refusal is reported as `connect-error err=...` or
/// `offer-error err=...`.
pub(crate) fn role_service_producer() {
    let name = env(NAME_ENV).expect("the service's name");
    let (p, count) = (env_u64(PRODUCER_ENV, 0), env_u64(COUNT_ENV, 0));
    let mut connection = match service::connect(&name) {
        Ok(connection) => connection,
        Err(e) => return report(&format!("connect-error err={e:?}")),
    };
    let ring = Builder::new().capacity(1024);
    if env(ITEM_ENV).as_deref() == Some("u32") {
        let offered = connection.offer_receiver::<u32>(&ring);
        return report(&format!("offer-error err={:?}", offered.err()));
    }
    let mut tx = match connection.offer_receiver::<u64>(&ring) {
        Ok(tx) => tx,
        Err(e) => return report(&format!("offer-error err={e:?}")),
    };
    let items: Vec<u64> = (0..count).map(|seq| crate::peers::item(p, seq)).collect();
    for chunk in items.chunks(700) {
        tx.send_slice(chunk).expect("send");
    }
    tx.close();
    let drained = tx.wait_drained(HANG);
    report(&format!("done count={count} drained={drained:?}"));
}

/// Child: connects to the service `NAME_ENV`, reports `connected`, offers
/// nothing, and reports `dropped` once the listener hangs up on it.
pub(crate) fn role_silent_client() {
    let name = env(NAME_ENV).expect("the service's name");
    let connection = service::connect(&name).expect("connect");
    report("connected");
    let mut stream = UnixStream::from(connection.as_fd().try_clone_to_owned().expect("dup"));
    stream.set_read_timeout(Some(HANG)).expect("timeout");
    let mut rest = Vec::new();
    match std::io::Read::read_to_end(&mut stream, &mut rest) {
        Ok(_) => report(&format!("dropped bytes={}", rest.len())),
        Err(e) => report(&format!("still-open {e}")),
    }
}

/// A merge serving a listener bound to `name`, taking a ring of `u64`s
/// from each client.
fn listening_merge(name: &str) -> Merge<Receiver<u64>> {
    let mut merge = Merge::new().expect("merge");
    merge
        .listen(Listener::bind(name).expect("bind"), |_key, connection| {
            connection.take_receiver::<u64>(&Builder::new())
        })
        .expect("listen");
    merge
}

/// Starts a client of the service `name` in `role` as producer `p` of
/// `count` items, as the user `uid` if given.
fn spawn_client(role: &str, name: &str, p: u64, count: u64, vars: &[(&str, &str)]) -> ChildProc {
    spawn_client_as(role, name, p, count, vars, None)
}

fn spawn_client_as(
    role: &str,
    name: &str,
    p: u64,
    count: u64,
    vars: &[(&str, &str)],
    uid: Option<u32>,
) -> ChildProc {
    ChildProc::spawn(role, |command| {
        command
            .env(NAME_ENV, name)
            .env(PRODUCER_ENV, p.to_string())
            .env(COUNT_ENV, count.to_string());
        for (key, value) in vars {
            command.env(key, value);
        }
        if let Some(uid) = uid {
            command.uid(uid).gid(uid);
        }
    })
}

/// What the merge delivered, with each source's items checked: a source
/// is the producer its first item names, and its items come in order.
struct Deliveries {
    /// Per source: its producer and its next item's position.
    streams: HashMap<Key, (u64, u64)>,
}

impl Deliveries {
    fn new() -> Deliveries {
        Deliveries {
            streams: HashMap::new(),
        }
    }

    fn recv(&mut self, merge: &mut Merge<Receiver<u64>>, timeout: Duration) -> Next<usize> {
        let streams = &mut self.streams;
        let got = merge.recv_with_timeout(timeout, |key, items| {
            for &item in items {
                let (p, seq) = parts(item);
                let stream = streams.entry(key).or_insert((p, 0));
                assert_eq!(
                    (p, seq),
                    *stream,
                    "source {key} lost, repeated or mixed an item"
                );
                stream.1 += 1;
            }
            items.len()
        });
        got.unwrap_or_else(|e| panic!("the merge failed: {e}"))
    }

    /// Expects the stream of a client that joins: `Joined`, then its
    /// `count` items, then its end; `other` is called with anything else.
    fn expect_stream(
        &mut self,
        merge: &mut Merge<Receiver<u64>>,
        p: u64,
        count: u64,
        mut other: impl FnMut(Next<usize>),
    ) -> Key {
        let key = loop {
            match self.recv(merge, HANG) {
                Next::Joined(key) => break key,
                next => other(next),
            }
        };
        loop {
            match self.recv(merge, HANG) {
                Next::Ready(k, _) if k == key => {}
                Next::Ended(k, why) if k == key => {
                    assert_eq!(why, Error::Disconnected);
                    assert_eq!(self.streams.get(&key), Some(&(p, count)), "every item");
                    return key;
                }
                next => other(next),
            }
        }
    }
}

/// A producer process joins by the name, streams, closes and leaves; a
/// new process joins the same merge under the same name, with a new key,
/// while the consumer goes on. The merge never ends while it listens.
#[test]
fn producers_join_by_name_close_and_a_new_process_joins_the_same_merge() {
    let name = unique_name("topotest", "rejoin");
    let mut merge = listening_merge(&name);
    let mut deliveries = Deliveries::new();
    let mut keys = Vec::new();
    for p in 1..=2 {
        let mut producer = spawn_client(SERVICE_PRODUCER, &name, p, 50_000, &[]);
        let key = deliveries.expect_stream(&mut merge, p, 50_000, |next| {
            panic!("producer {p}: {next:?}")
        });
        let done = producer.expect_line("done", HANG);
        assert_eq!(
            (number(&done, "count"), word_of(&done, "drained")),
            (50_000, "Ok(())"),
            "{done}"
        );
        producer.finish();
        assert!(merge.is_empty());
        keys.push(key);
    }
    assert_ne!(keys[0], keys[1], "the second producer is a new source");
    assert_eq!(
        merge.recv_timeout(Duration::from_millis(100)),
        Err(Error::Timeout),
        "a listening merge waits for the next producer"
    );
    assert!(merge.unlisten().is_some());
    assert_eq!(
        merge.recv(),
        Err(Error::Disconnected),
        "nothing can come any more"
    );
}

/// A client connects and never offers: it is dropped after the join
/// timeout as `Refused(Timeout)` (not before), and meanwhile another
/// client joins and its items flow.
#[test]
fn a_silent_client_is_refused_at_the_join_timeout_without_holding_up_the_others() {
    let name = unique_name("topotest", "silent");
    let join_timeout = Duration::from_secs(3);
    let mut merge = listening_merge(&name);
    merge.join_timeout(join_timeout);
    let spawned = Instant::now();
    // It connects (the merge greets it in its next call), and is silent.
    let mut silent = spawn_client(SILENT_CLIENT, &name, 0, 0, &[]);
    let mut producer = spawn_client(SERVICE_PRODUCER, &name, 1, 20_000, &[]);
    let mut deliveries = Deliveries::new();
    let (mut joined, mut ended, mut refused) = (None, false, None);
    while !ended || refused.is_none() {
        match deliveries.recv(&mut merge, HANG) {
            Next::Joined(key) => {
                assert!(joined.is_none(), "one client joins");
                joined = Some(key);
            }
            Next::Ready(key, _) => assert_eq!(Some(key), joined),
            Next::Ended(key, why) => {
                assert_eq!((Some(key), why), (joined, Error::Disconnected));
                ended = true;
            }
            Next::Refused(why) => {
                assert_eq!(why, Error::Timeout, "the silent client is refused");
                assert!(refused.is_none(), "refused twice");
                // What the other client had delivered meanwhile.
                let delivered = joined.and_then(|k| deliveries.streams.get(&k));
                refused = Some((spawned.elapsed(), delivered.map_or(0, |s| s.1)));
            }
        }
    }
    let (waited, delivered) = refused.expect("refused");
    assert!(
        waited >= join_timeout,
        "refused after {waited:?}, before the join timeout"
    );
    assert!(
        delivered > 0,
        "the other client's items flowed while the silent one was pending"
    );
    let key = joined.expect("joined");
    assert_eq!(deliveries.streams[&key], (1, 20_000), "every item");
    producer.expect_line("done", HANG);
    producer.finish();
    silent.expect_line("connected", HANG);
    silent.expect_line("dropped", HANG);
    silent.finish();
}

/// A client of another uid, and one that offers a ring of `u32`s: each is
/// `Refused` with the typed error (naming the client, or the field and
/// both values), and told; the merge goes on and the next client joins.
#[test]
fn clients_of_another_uid_or_item_type_are_refused_with_the_typed_error() {
    let name = unique_name("topotest", "refused");
    let mut merge = listening_merge(&name);
    let mut deliveries = Deliveries::new();
    if rustix::process::geteuid().is_root() {
        let mut stranger = spawn_client_as(SERVICE_PRODUCER, &name, 1, 10, &[], Some(NOBODY));
        let pid = stranger.id();
        assert_eq!(
            deliveries.recv(&mut merge, HANG),
            Next::Refused(Error::Rejected(Rejection::PeerNotAllowed {
                pid,
                uid: NOBODY,
                gid: NOBODY
            }))
        );
        let told = stranger.expect_line("connect-error", HANG);
        assert_eq!(
            err_of(&told),
            format!(
                "{:?}",
                Error::Rejected(Rejection::RefusedByPeer {
                    pid,
                    uid: NOBODY,
                    gid: NOBODY
                })
            )
        );
        stranger.finish();
    } else {
        eprintln!("the client of another uid is skipped: starting it needs root");
    }
    let mut mismatched = spawn_client(SERVICE_PRODUCER, &name, 2, 10, &[(ITEM_ENV, "u32")]);
    let mismatch = || {
        Error::Rejected(Rejection::Mismatch {
            field: Field::ItemSize,
            offered: 4,
            expected: 8,
        })
    };
    assert_eq!(deliveries.recv(&mut merge, HANG), Next::Refused(mismatch()));
    let told = mismatched.expect_line("offer-error", HANG);
    assert_eq!(err_of(&told), format!("{:?}", Some(mismatch())));
    mismatched.finish();
    let producer = spawn_client(SERVICE_PRODUCER, &name, 3, 1000, &[]);
    deliveries.expect_stream(&mut merge, 3, 1000, |next| panic!("{next:?}"));
    producer.finish();
    assert!(merge.is_empty());
}

/// A source whose ring never runs dry (a full ring of 16 384 items, taken
/// 8 a turn by a consumer that works 2 ms per turn: 4 s at least): a
/// client joins meanwhile, long before that ring is drained, and both
/// stream.
#[test]
fn a_client_joins_while_another_source_keeps_the_merge_busy() {
    const BUSY: u64 = 16_384;
    let name = unique_name("topotest", "busy");
    let mut merge = listening_merge(&name).budget(8);
    let (busy_rx, mut busy) = spawn_on_sender(PRODUCER, 1, BUSY, BUSY as usize);
    assert_eq!(number(&busy.expect_line("filled", HANG), "count"), BUSY);
    let busy_key = merge.add(busy_rx).expect("add");
    let mut client = spawn_client(SERVICE_PRODUCER, &name, 2, 5000, &[]);
    let mut deliveries = Deliveries::new();
    let busy_items = |d: &Deliveries| d.streams.get(&busy_key).map_or(0, |s| s.1);
    let (joined, busy_before) = loop {
        match deliveries.recv(&mut merge, HANG) {
            Next::Ready(key, _) => {
                assert_eq!(key, busy_key);
                thread::sleep(Duration::from_millis(2));
            }
            Next::Joined(key) => break (key, busy_items(&deliveries)),
            other => panic!("before the client joined: {other:?}"),
        }
    };
    assert!(
        busy_before < BUSY,
        "the client joined only once the busy ring had run dry, after all its {busy_before} items"
    );
    let mut ended = Vec::new();
    while ended.len() < 2 {
        match deliveries.recv(&mut merge, HANG) {
            Next::Ready(..) => {}
            Next::Ended(key, Error::Disconnected) => ended.push(key),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(deliveries.streams[&busy_key], (1, BUSY));
    assert_eq!(deliveries.streams[&joined], (2, 5000));
    assert_eq!(
        word_of(&busy.expect_line("drained", HANG), "result"),
        "Ok(())"
    );
    assert_eq!(
        word_of(&client.expect_line("done", HANG), "drained"),
        "Ok(())"
    );
    client.finish();
    busy.finish();
}
