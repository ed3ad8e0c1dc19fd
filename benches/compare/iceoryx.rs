//! iceoryx2 as a peer (issue 15): zero-copy publish-subscribe in its own
//! shared memory, between two processes, configured as iceoryx2's own
//! benchmarks configure it.
//!
//! What is copied, and from where in the iceoryx2 repository:
//!
//! - `benchmarks/publish-subscribe/src/main.rs` (its ping-pong): two
//!   services, `a2b` and `b2a`, each built with `max_publishers(1)`,
//!   `max_subscribers(1)`, `history_size(0)`,
//!   `subscriber_max_buffer_size(1)`, `enable_safe_overflow(true)`; the
//!   `ipc::Service` setup (its `--bench-ipc`: shared memory between
//!   processes; `local` is one process only); each side loans its next
//!   sample before it waits for the other's, and waits by busy-polling
//!   `receive()`; the log level `Error`. Its payload is a `[u8]` slice of
//!   `initial_max_slice_len(payload_size)`; ours is one `u64`.
//! - `benchmarks/event/src/main.rs` (its blocking ping-pong): an event
//!   service per direction with `max_notifiers(1)`, `max_listeners(1)`,
//!   `event_id_max_value(128)`, and a `Listener` that blocks (its
//!   `blocking_wait_one`; `blocking_wait` in 0.10) rather than a `WaitSet`,
//!   which would put an epoll around the same listener. Here the event
//!   only wakes the other side: the `u64` travels through the
//!   publish-subscribe services above, as in iceoryx2's
//!   `event_based_communication` example.
//!
//! The streams (`stream_u64_batch`, `frames_video`) have no benchmark
//! there. They keep the settings above, except what a stream needs to
//! lose nothing: safe overflow off and the publisher's
//! `BackpressureStrategy::RetryUntilDelivered` (0.10's default, spelled
//! out: `send` waits while the subscriber's buffer is full), and a
//! subscriber buffer of several samples (`STREAM_BUFFER`, `FRAME_BUFFER`).
//! Samples are `[u64]` slices loaned with `loan_slice_uninit`, as long as
//! the case's chunk, written in place, and checked in place by the
//! subscriber, which busy-polls `receive()` as the benchmark does.
//!
//! Every run has an iceoryx2 domain of its own ([`Domain`]: its own file
//! prefix and root directory instead of `iox2_` and `/tmp/iceoryx2`), so
//! that runs, and benches run at the same time, never meet. iceoryx2
//! removes its files as the run's ports, services and nodes drop, except
//! the domain's node counter (`*.global_mgmt` in `/dev/shm`), which it
//! keeps for as long as the domain may be used; the run removes that and
//! its root directory at its end, and the first run of a bench whatever a
//! bench that died left.

use std::hint::spin_loop;
use std::mem::MaybeUninit;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;

use iceoryx2::port::listener::Listener;
use iceoryx2::port::notifier::Notifier;
use iceoryx2::port::publisher::Publisher;
use iceoryx2::port::subscriber::Subscriber;
use iceoryx2::prelude::*;
use iceoryx2::sample_mut_uninit::SampleMutUninit;

use crate::data::{check, fill, pingpong_side, rx_side, tx_side, Duplex, Rx, Tx};
use crate::process::{child_with_env, pair, Cfg, Gate, Run};
use crate::Res;

/// The inter-process setup of iceoryx2's benchmarks (`--bench-ipc`).
type Ipc = ipc::Service;

/// How the child learns its run's domain.
pub const DOMAIN_VAR: &str = "FDRING_BENCH_IOX";
/// The start of every domain's name: `fdring-bench-iox-PID-RUN`, the PID
/// the bench's.
const DOMAIN_PREFIX: &str = "fdring-bench-iox-";

/// Samples a `stream_u64_batch` subscriber may hold unread: 8 chunks of
/// `CHUNK` words, the bytes fdring's ring of `CAP` holds. (2, 4 and 16
/// ran within the noise of 8 here.)
pub const STREAM_BUFFER: usize = 8;
/// Frames a `frames_video` subscriber may hold unread: 4, as fdring's ring
/// of `FRAME_RING` frames; the "buf2" row has 2.
pub const FRAME_BUFFER: usize = 4;

/// One run's iceoryx2 domain: its files are named `NAME_*` in `/dev/shm`
/// and live under `/tmp/NAME`; the parent's is removed when it drops.
pub struct Domain {
    name: String,
    config: Config,
    owned: bool,
}

impl Domain {
    /// A domain no other run, of this bench or of another, uses.
    pub fn fresh() -> Res<Domain> {
        static RUNS: AtomicU64 = AtomicU64::new(0);
        static SWEEP: Once = Once::new();
        SWEEP.call_once(sweep_dead);
        let run = RUNS.fetch_add(1, Ordering::Relaxed);
        let name = format!("{DOMAIN_PREFIX}{}-{run}", std::process::id());
        let mut domain = Domain::named(name)?;
        domain.owned = true;
        Ok(domain)
    }

    /// The child's: its parent's, by name.
    pub fn inherited() -> Res<Domain> {
        Domain::named(std::env::var(DOMAIN_VAR)?)
    }

    /// The domain's name, for [`DOMAIN_VAR`].
    pub fn name(&self) -> &str {
        &self.name
    }

    fn named(name: String) -> Res<Domain> {
        let mut config = Config::global_config().clone();
        config.global.prefix = FileName::new(format!("{name}_").as_bytes())?;
        config
            .global
            .set_root_path(&Path::new(root(&name).to_string_lossy().as_bytes())?);
        Ok(Domain {
            name,
            config,
            owned: false,
        })
    }

    /// A node, as quiet as the benchmarks' (`LogLevel::Error`), leaving
    /// the bench's own signals alone.
    pub fn node(&self) -> Res<Node<Ipc>> {
        set_log_level(LogLevel::Error);
        let node = NodeBuilder::new()
            .config(&self.config)
            .signal_handling_mode(SignalHandlingMode::Disabled)
            .create::<Ipc>()?;
        Ok(node)
    }
}

impl Drop for Domain {
    fn drop(&mut self) {
        if self.owned {
            remove_domain(&self.name);
        }
    }
}

fn root(name: &str) -> PathBuf {
    std::env::temp_dir().join(name)
}

/// Removes what is left of domain `name`: after a clean run, its node
/// counter and its empty directories.
fn remove_domain(name: &str) {
    let prefix = format!("{name}_");
    if let Ok(entries) = std::fs::read_dir("/dev/shm") {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    let _ = std::fs::remove_dir_all(root(name));
}

/// Removes the domains of benches that died before they removed them.
fn sweep_dead() {
    let mut dead = std::collections::BTreeSet::new();
    for dir in ["/dev/shm".into(), std::env::temp_dir()] {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            let Some(rest) = file.strip_prefix(DOMAIN_PREFIX) else {
                continue;
            };
            let mut parts = rest.splitn(3, ['-', '_']);
            let (Some(pid), Some(run)) = (parts.next(), parts.next()) else {
                continue;
            };
            let alive = std::path::Path::new(&format!("/proc/{pid}")).exists();
            if !alive && pid.parse::<u32>().is_ok() && run.parse::<u64>().is_ok() {
                dead.insert(format!("{DOMAIN_PREFIX}{pid}-{run}"));
            }
        }
    }
    dead.iter().for_each(|name| remove_domain(name));
}

/// A publisher of `[u64]` slices, each loaned, written and sent whole.
pub struct Publishing<'a>(&'a Publisher<Ipc, [u64], ()>);

impl Tx for Publishing<'_> {
    fn put(&mut self, first: u64, max: usize) -> Res<usize> {
        let mut sample = self.0.loan_slice_uninit(max)?;
        fill(sample.payload_mut(), first);
        // SAFETY: `fill` wrote every one of the slice's `max` words.
        let sample = unsafe { sample.assume_init() };
        sample.send()?;
        Ok(max)
    }
}

/// A subscriber of `[u64]` slices, each checked in place, busy-polling.
pub struct Subscribing(Subscriber<Ipc, [u64], ()>);

impl Rx for Subscribing {
    fn take(&mut self, first: u64, max: usize) -> Res<(usize, u64)> {
        loop {
            if let Some(sample) = self.0.receive()? {
                let words = sample.payload();
                let k = words.len();
                return Ok((k, check(words, first) | u64::from(k == 0 || k > max)));
            }
            spin_loop();
        }
    }
}

/// A stream of `c.chunk`-word samples, the subscriber holding up to
/// `buffer` unread.
pub fn iox_stream(c: &Cfg, buffer: usize) -> Res<Run> {
    let domain = Domain::fresh()?;
    let node = domain.node()?;
    let service = node
        .service_builder(&"a2b".try_into()?)
        .publish_subscribe::<[u64]>()
        .max_publishers(1)
        .max_subscribers(1)
        .history_size(0)
        .subscriber_max_buffer_size(buffer)
        .enable_safe_overflow(false)
        .create()?;
    let publisher = service
        .publisher_builder()
        .initial_max_slice_len(c.chunk)
        .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
        .create()?;
    // The child subscribes before it reports ready, so that no sample goes
    // out before it listens. The publisher outlives the run: what it sent
    // lives in its data segment until the child has read it.
    let env = [(DOMAIN_VAR, domain.name.as_str())];
    let peer = child_with_env("iox-stream", c, vec![], vec![], &env)?;
    pair(peer, |gate| tx_side(Publishing(&publisher), c, gate))
}

/// The child's side of [`iox_stream`].
pub fn iox_stream_rx(c: &Cfg, gate: Gate) -> Res<Run> {
    let node = Domain::inherited()?.node()?;
    let service = node
        .service_builder(&"a2b".try_into()?)
        .publish_subscribe::<[u64]>()
        .open()?;
    let subscriber = Subscribing(service.subscriber_builder().create()?);
    rx_side(subscriber, c, gate)
}

/// One end of a ping-pong: a publisher out with its next sample already
/// loaned, a subscriber in, and, when blocking, a notifier out and a
/// listener in.
pub struct IoxEnd {
    next: Option<SampleMutUninit<Ipc, MaybeUninit<u64>, ()>>,
    publisher: Publisher<Ipc, u64, ()>,
    subscriber: Subscriber<Ipc, u64, ()>,
    wake: Option<(Notifier<Ipc>, Listener<Ipc>)>,
}

impl IoxEnd {
    /// This end of a run; `pinger` publishes on `a2b`.
    fn new(node: &Node<Ipc>, pinger: bool, block: bool) -> Res<IoxEnd> {
        let (out, into) = if pinger {
            ("a2b", "b2a")
        } else {
            ("b2a", "a2b")
        };
        let topic = |what| {
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(
                node.service_builder(&ServiceName::new(what)?)
                    .publish_subscribe::<u64>()
                    .max_publishers(1)
                    .max_subscribers(1)
                    .history_size(0)
                    .subscriber_max_buffer_size(1)
                    .enable_safe_overflow(true)
                    .open_or_create()?,
            )
        };
        let event = |what: &str| {
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(
                node.service_builder(&ServiceName::new(&format!("{what}-event"))?)
                    .event()
                    .max_notifiers(1)
                    .max_listeners(1)
                    .event_id_max_value(128)
                    .open_or_create()?,
            )
        };
        let publisher = topic(out)?.publisher_builder().create()?;
        let subscriber = topic(into)?.subscriber_builder().create()?;
        let wake = if block {
            let notifier = event(out)?.notifier_builder().create()?;
            Some((notifier, event(into)?.listener_builder().create()?))
        } else {
            None
        };
        Ok(IoxEnd {
            next: Some(publisher.loan_uninit()?),
            publisher,
            subscriber,
            wake,
        })
    }
}

impl Duplex for IoxEnd {
    fn send(&mut self, v: u64) -> Res<()> {
        let sample = match self.next.take() {
            Some(sample) => sample,
            None => self.publisher.loan_uninit()?,
        };
        sample.write_payload(v).send()?;
        if let Some((notifier, _)) = &self.wake {
            notifier.notify()?;
        }
        // The next sample is loaned while the other side works, as the
        // benchmark does.
        self.next = Some(self.publisher.loan_uninit()?);
        Ok(())
    }

    fn recv(&mut self) -> Res<u64> {
        loop {
            if let Some(sample) = self.subscriber.receive()? {
                return Ok(*sample.payload());
            }
            match &self.wake {
                // Events already counted are consumed here too; a wake-up
                // with no sample behind it loops back to `receive`.
                Some((_, listener)) => {
                    listener.blocking_wait(|_| {})?;
                }
                None => spin_loop(),
            }
        }
    }
}

/// A ping-pong of one `u64`, busy-polling, or blocking on events.
pub fn iox_pingpong(c: &Cfg, block: bool) -> Res<Run> {
    let domain = Domain::fresh()?;
    let node = domain.node()?;
    let end = IoxEnd::new(&node, true, block)?;
    let role = if block {
        "iox-pong-block"
    } else {
        "iox-pong-spin"
    };
    let env = [(DOMAIN_VAR, domain.name.as_str())];
    let peer = child_with_env(role, c, vec![], vec![], &env)?;
    pair(peer, |gate| pingpong_side(end, c, true, gate))
}

/// The child's side of [`iox_pingpong`].
pub fn iox_pong(c: &Cfg, block: bool, gate: Gate) -> Res<Run> {
    let node = Domain::inherited()?.node()?;
    let end = IoxEnd::new(&node, false, block)?;
    pingpong_side(end, c, false, gate)
}
