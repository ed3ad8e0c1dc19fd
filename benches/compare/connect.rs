//! `connect_latency`: how long a process that finds a service by name waits
//! from its `connect` call to the first item in its hands.
//!
//! The listener is a child of the bench (core 1), bound to a name made
//! fresh for each run; the parent (core 0) connects `n` times in a row and
//! times each connection alone. With fdring, a connection is
//! `service::connect(name)`, `take_receiver::<u64>` of the 64 KiB ring the
//! listener makes and offers (`offer_receiver`), and `recv` of the item the
//! listener sends on it once the parent took it: the direction of a client
//! subscribing to a service, and the one in which the whole connect path,
//! ring creation included, is between the two clock readings. Against
//! it, the least a Unix socket does for the same: `UnixStream::connect` to
//! a listening socket in the same namespace and `read_exact` of the 8
//! bytes the listener writes once it accepted.
//!
//! Connection `k` of a run carries the item `MARK + k`, and the parent
//! checks each one. The round's value of each metric is the median, or the
//! 99th percentile (nearest rank), of its `n` connections; the table then
//! quotes, as for every case, the median of the rounds' values and their
//! min–max. The counters' "per message" is per connection.

/// What the report's header says about the case.
pub fn header(n: u64) -> String {
    format!(
        "connect_latency: {n} connections to a listener child per round, each timed to its first item; \
         p50 and p99 are the round's median and 99th percentile (nearest rank); fdring's ring is {} KiB; per msg = per connection",
        CONNECT_CAP * 8 / 1024
    )
}

use std::io::{Read, Write};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fdring::service::{self, Listener};
use fdring::{Builder, Sender};

use crate::cases::Metric;
use crate::ours::stats;
use crate::process::{child_with_env, pair, Cfg, Gate, Run};
use crate::Res;

/// How the listener child learns the name to bind.
const NAME_VAR: &str = "FDRING_BENCH_SERVICE";

/// The ring each fdring connection gets, in `u64` items: 64 KiB, the
/// smallest ring of BENCHMARKS.md's `create_open`.
const CONNECT_CAP: usize = 8192;

/// The items carry `MARK + k`, so that a zeroed slot or a stale item from
/// another connection is wrong data.
pub const MARK: u64 = 0xfd00_c0de_0000_0000;

/// The longest the parent waits for an item: far more than a connection
/// takes, so that a broken listener fails the run instead of hanging it.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// The metrics: a round's median and 99th percentile, in µs.
pub const P50_US: Metric = ("µs/conn p50", |_, r| r.latency[0] * 1e6);
pub const P99_US: Metric = ("µs/conn p99", |_, r| r.latency[1] * 1e6);

/// A name no other run, bench or test has bound.
fn fresh_name(kind: &str) -> String {
    static RUNS: AtomicU64 = AtomicU64::new(0);
    let run = RUNS.fetch_add(1, Ordering::Relaxed);
    format!("bench-connect-{kind}-{}-{run}", std::process::id())
}

/// The median and the 99th percentile (nearest rank) of `times`, in
/// seconds.
fn percentiles(mut times: Vec<Duration>) -> [f64; 2] {
    times.sort();
    let rank = |p: f64| {
        let i = ((p * times.len() as f64).ceil() as usize).clamp(1, times.len()) - 1;
        times[i].as_secs_f64()
    };
    [rank(0.5), rank(0.99)]
}

/// The parent's side of both contenders: `n` connections through
/// `connect_and_receive`, each timed from before the connect to the
/// first item in hand, and checked; what it returns to keep (the ends) is
/// dropped once the clock stopped. The side's counters are summed.
pub fn connect_side<Ends>(
    c: &Cfg,
    gate: Gate,
    mut connect_and_receive: impl FnMut() -> Res<(u64, [u64; 2], Ends)>,
) -> Res<Run> {
    let mut times = Vec::with_capacity(c.n as usize);
    let (mut ok, mut counters) = (true, [0, 0]);
    let before = gate.open();
    for k in 0..c.n {
        let start = Instant::now();
        let (item, [writes, sleeps], ends) = connect_and_receive()?;
        times.push(start.elapsed());
        drop(ends);
        ok &= item == MARK + k;
        counters = [counters[0] + writes, counters[1] + sleeps];
    }
    let run = Run::side(ok, before, counters)?;
    Ok(Run {
        latency: percentiles(times),
        ..run
    })
}

/// fdring: connect by name, take the ring the listener offers, receive its
/// first item. The ends are dropped after the clock stopped.
pub fn fdring_connects(c: &Cfg) -> Res<Run> {
    let name = fresh_name("fdring");
    let peer = child_with_env("connect-fdring", c, vec![], vec![], &[(NAME_VAR, &name)])?;
    let builder = Builder::new().spin(c.spin);
    pair(peer, |gate| {
        connect_side(c, gate, || {
            let mut connection = service::connect(&name)?;
            let mut rx = connection.take_receiver::<u64>(&builder)?;
            let item = rx.recv_timeout(PATIENCE)?;
            Ok((item, stats(rx.stats()), (rx, connection)))
        })
    })
}

/// The listener child of [`fdring_connects`]: accepts `n` connections one
/// after the other, offers each a ring and sends the item on it.
pub fn serve_fdring(c: &Cfg, builder: Builder, gate: Gate) -> Res<Run> {
    let listener = Listener::bind(&std::env::var(NAME_VAR)?)?;
    let builder = builder.capacity(CONNECT_CAP);
    let mut counters = [0, 0];
    let before = gate.open();
    for k in 0..c.n {
        let mut connection = listener.accept()?;
        let mut tx: Sender<u64> = connection.offer_receiver(&builder)?;
        tx.send(MARK + k)?;
        let [writes, sleeps] = stats(tx.stats());
        counters = [counters[0] + writes, counters[1] + sleeps];
        // Dropping the sender leaves the item in the ring for the client.
    }
    Run::side(true, before, counters)
}

/// The Unix socket: connect to the listener's abstract address and read
/// its 8 bytes.
pub fn unix_connects(c: &Cfg) -> Res<Run> {
    let name = fresh_name("unix");
    let peer = child_with_env("connect-unix", c, vec![], vec![], &[(NAME_VAR, &name)])?;
    let address = SocketAddr::from_abstract_name(&name)?;
    pair(peer, |gate| {
        connect_side(c, gate, || {
            let mut stream = UnixStream::connect_addr(&address)?;
            let mut bytes = [0; 8];
            stream.read_exact(&mut bytes)?;
            Ok((u64::from_ne_bytes(bytes), [0, 0], stream))
        })
    })
}

/// The listener child of [`unix_connects`]: accepts `n` connections one
/// after the other and writes the item on each.
pub fn serve_unix(c: &Cfg, gate: Gate) -> Res<Run> {
    let name = std::env::var(NAME_VAR)?;
    let listener = UnixListener::bind_addr(&SocketAddr::from_abstract_name(name)?)?;
    let before = gate.open();
    for k in 0..c.n {
        let (mut stream, _) = listener.accept()?;
        stream.write_all(&(MARK + k).to_ne_bytes())?;
    }
    Run::side(true, before, [0, 0])
}
