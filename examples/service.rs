//! Unrelated processes find each other by name: one serves, any number of
//! others connect to it by that name, and they stream through rings they
//! agree on over the connection.
//!
//! It shows:
//! - `service::Listener::bind(name)`: a name in the Linux abstract socket
//!   namespace, nothing on the filesystem, free again the moment the
//!   listener's process dies; `service::connect(name)` from any process of
//!   the same user;
//! - serving any number of clients over the listener's life, a thread
//!   per connection, the listener's loop waiting in `poll` on its fd and
//!   calling `try_accept`;
//! - several rings on one connection, agreed in order: every client first
//!   offers a small "hello" ring saying what it wants; a `send` client
//!   then offers a ring of `u64` and takes a reply ring for the server's
//!   verdict, a `recv` client takes the ring the server offers and
//!   streams from. Each ring has a type tag, checked by the taker before
//!   any fd is opened;
//! - access control from the kernel's `SO_PEERCRED`: a client of another
//!   user is refused by the listener (and told so), a listener of another
//!   user is refused by the client before it sends anything;
//! - a client that connects and then says nothing costs the listener one
//!   thread until the connection's timeout, and never delays the others.
//!
//! Run it with
//!
//! ```text
//! cargo run --release --example service -- serve NAME                 # terminal 1
//! cargo run --release --example service -- send NAME --items 10000000 # terminal 2
//! cargo run --release --example service -- recv NAME --items 10000000 # terminal 3
//! cargo run --release --example service -- demo --json                # all of it
//! ```
//!
//! `demo` runs every role itself as unrelated processes: it re-runs this
//! program detached (a new session with `setsid`, stdin closed) as a
//! server, a silent client, a `send` and a `recv` client streaming 10^8
//! items each with sequence checks, a client connecting 100 times to
//! measure the time from `connect()` to the first item received, and (when
//! run as root) a client and a listener as uid 65534. Each finds the
//! others only by the name; the demo process itself owns no ring, and only
//! reads what each process reports on its stdout. Its last line with
//! `--json` is one JSON object.

use std::error::Error;
use std::io::{BufRead, BufReader, Read};
use std::mem::MaybeUninit;
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdout, Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytemuck::{Pod, Zeroable};
use fdring::service::{self, Access, Connection, Listener};
use fdring::{Builder, Receiver, Rejection, Sender};

#[path = "support/json.rs"]
mod json;
use json::json_string;

/// Items per stream unless `--items` says otherwise.
const ITEMS: u64 = 100_000_000;
/// The largest `u64` ring a stream uses (512 KiB); smaller streams get a
/// ring their size.
const ITEM_CAPACITY: u64 = 1 << 16;
/// Items written or checked per closure call, at most, so that both sides
/// work at once.
const CHUNK: usize = 1 << 13;

/// The type tags of the three kinds of ring, checked by each taker.
const HELLO_TAG: u64 = u64::from_be_bytes(*b"svcHELLO");
const ITEMS_TAG: u64 = u64::from_be_bytes(*b"svcITEMS");
const VERDICT_TAG: u64 = u64::from_be_bytes(*b"svcVRDCT");

/// What a client wants, the first thing it sends on its hello ring.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
struct Hello {
    /// `SEND` or `RECV`.
    mode: u64,
    /// How many items the client sends, or wants.
    items: u64,
}

/// The client streams to the server.
const SEND: u64 = 1;
/// The server streams to the client.
const RECV: u64 = 2;

/// The server's verdict on what a `send` client streamed.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
struct Verdict {
    received: u64,
    /// The position of the first item that was not its position, or
    /// `u64::MAX`.
    first_wrong: u64,
}

/// Exit codes of a client, so that the demo tells an expected refusal from
/// a failure.
const EXIT_REFUSED_BY_LISTENER: u8 = 3;
const EXIT_LISTENER_NOT_TRUSTED: u8 = 4;

/// The uid (and gid) of the demo's processes of another user.
const OTHER_UID: u32 = 65534;

type AnyResult<T> = Result<T, Box<dyn Error + Send + Sync>>;

const USAGE: &str = "usage:
  service serve NAME [--clients N] [--for SECONDS] [--timeout SECONDS] [--allow-uid UID]
  service send NAME [--items N]
  service recv NAME [--items N] [--connections N]
  service stall NAME [--seconds S]     (connects, then says nothing)
  service demo [--json] [--items N]
  (any of them: [--as-uid UID] first, when run as root, to run as that user)";

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--as-uid") {
        let dropped = args
            .get(1)
            .ok_or_else(|| "--as-uid needs a uid".into())
            .and_then(|uid| Ok(uid.parse::<u32>()?))
            .and_then(become_user);
        if let Err(e) = dropped {
            eprintln!("service: --as-uid: {e}");
            return ExitCode::from(2);
        }
        args.drain(..2);
    }
    let (command, rest) = match args.split_first() {
        Some((command, rest)) => (command.as_str(), Options::parse(rest)),
        None => ("", Err("no command".into())),
    };
    let options = match rest {
        Ok(options) => options,
        Err(e) => {
            eprintln!("service: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let run = match (command, options.name.as_deref()) {
        ("serve", Some(name)) => serve(name, &options),
        ("send", Some(name)) => send(name, options.items),
        ("recv", Some(name)) => recv(name, options.items, options.connections),
        ("stall", Some(name)) => stall(name, options.seconds),
        ("demo", None) => return demo(&options),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("service {command}: {e}");
            match e.downcast_ref::<fdring::Error>() {
                Some(fdring::Error::Rejected(Rejection::RefusedByPeer { .. })) => {
                    ExitCode::from(EXIT_REFUSED_BY_LISTENER)
                }
                Some(fdring::Error::Rejected(Rejection::PeerNotAllowed { .. })) => {
                    ExitCode::from(EXIT_LISTENER_NOT_TRUSTED)
                }
                _ => ExitCode::FAILURE,
            }
        }
    }
}

/// The command line after the command.
struct Options {
    name: Option<String>,
    items: u64,
    connections: u32,
    seconds: f64,
    clients: Option<u64>,
    life: Option<Duration>,
    timeout: Duration,
    allow_uid: Option<u32>,
    json: bool,
}

impl Options {
    fn parse(args: &[String]) -> AnyResult<Options> {
        let mut options = Options {
            name: None,
            items: ITEMS,
            connections: 1,
            seconds: 3.0,
            clients: None,
            life: None,
            timeout: service::DEFAULT_TIMEOUT,
            allow_uid: None,
            json: false,
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut value = || args.next().ok_or(format!("{arg} needs a value"));
            match arg.as_str() {
                "--items" => options.items = value()?.parse()?,
                "--connections" => options.connections = value()?.parse()?,
                "--seconds" => options.seconds = value()?.parse()?,
                "--clients" => options.clients = Some(value()?.parse()?),
                "--for" => options.life = Some(Duration::try_from_secs_f64(value()?.parse()?)?),
                "--timeout" => options.timeout = Duration::try_from_secs_f64(value()?.parse()?)?,
                "--allow-uid" => options.allow_uid = Some(value()?.parse()?),
                "--json" => options.json = true,
                flag if flag.starts_with("--") => {
                    return Err(format!("unknown option {flag}").into())
                }
                name if options.name.is_none() => options.name = Some(name.to_owned()),
                extra => return Err(format!("unexpected argument {extra}").into()),
            }
        }
        Ok(options)
    }
}

/// A builder for a ring of the kind `tag` names.
fn ring(tag: u64) -> Builder {
    Builder::new().type_tag(tag)
}

/// A `u64` ring's capacity for a stream of `items`.
fn capacity_for(items: u64) -> usize {
    items.clamp(1, ITEM_CAPACITY) as usize
}

// ---------------------------------------------------------------- server

/// Serves clients until `--clients` connections were handled or `--for`
/// ran out (forever without either), a thread per connection.
fn serve(name: &str, options: &Options) -> AnyResult<()> {
    let access = match options.allow_uid {
        Some(uid) => Access::same_user().allow_uid(uid),
        None => Access::same_user(),
    };
    let listener = Listener::bind(name)?
        .with_access(access)
        .with_timeout(options.timeout);
    println!(
        "listening {} pid={} uid={}",
        listener.address(),
        std::process::id(),
        rustix::process::geteuid().as_raw()
    );
    let deadline = options.life.map(|life| Instant::now() + life);
    let mut handled = 0u64;
    let mut refused = 0u64;
    let mut workers = Vec::new();
    while options.clients.map_or(true, |n| handled < n) {
        let wait = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if wait == Some(Duration::ZERO) {
            println!("time is up");
            break;
        }
        // The listener's fd is readable when a connection waits: an event
        // loop would watch it with everything else.
        let timeout = wait.map(rustix::event::Timespec::try_from).transpose()?;
        let mut fds = [rustix::event::PollFd::new(
            &listener,
            rustix::event::PollFlags::IN,
        )];
        match rustix::event::poll(&mut fds, timeout.as_ref()) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
        // `try_accept` reads nothing from the client: who it is comes from
        // the kernel, so accepting never waits on a slow client.
        match listener.try_accept() {
            Ok(None) => {}
            Ok(Some(connection)) => {
                handled += 1;
                let timeout = options.timeout;
                workers.push(std::thread::spawn(move || {
                    let peer = connection.peer();
                    match serve_one(connection, timeout) {
                        Ok(line) => println!("client pid={} uid={} {line}", peer.pid, peer.uid),
                        Err(e) => println!("dropped pid={} uid={}: {e}", peer.pid, peer.uid),
                    }
                }));
            }
            Err(fdring::Error::Rejected(Rejection::PeerNotAllowed { pid, uid, gid })) => {
                handled += 1;
                refused += 1;
                println!("refused pid={pid} uid={uid} gid={gid}");
            }
            Err(e) => {
                // A client that gave up before its greeting, or a kernel
                // error: the listener goes on.
                handled += 1;
                println!("dropped before greeting: {e}");
            }
        }
        // Reap the workers that are done, so that a long-lived server does
        // not keep a handle per client it ever had.
        workers.retain(|worker| !worker.is_finished());
    }
    for worker in workers {
        let _ = worker.join();
    }
    println!("served connections={handled} refused={refused}");
    Ok(())
}

/// Agrees on the rings with one client and serves it; returns what to
/// report about it.
fn serve_one(mut connection: Connection, timeout: Duration) -> AnyResult<String> {
    let mut hello = connection.take_receiver::<Hello>(&ring(HELLO_TAG))?;
    // The hello ring is the client's: a client that never writes into it
    // is dropped after the connection's timeout, like one that never
    // offered it.
    let hello = hello.recv_timeout(timeout)?;
    match hello.mode {
        SEND => {
            let mut rx = connection.take_receiver::<u64>(&ring(ITEMS_TAG))?;
            let mut verdict =
                connection.offer_receiver::<Verdict>(&ring(VERDICT_TAG).capacity(1))?;
            // The rings are agreed: the connection is not needed any more.
            drop(connection);
            let start = Instant::now();
            let (received, first_wrong) = receive_items(&mut rx, &mut None)?;
            let seconds = start.elapsed().as_secs_f64();
            verdict.send(Verdict {
                received,
                first_wrong: first_wrong.unwrap_or(u64::MAX),
            })?;
            Ok(format!(
                "mode=send items={received} verified={} seconds={seconds:.6}",
                received == hello.items && first_wrong.is_none()
            ))
        }
        RECV => {
            let mut tx = connection
                .offer_receiver::<u64>(&ring(ITEMS_TAG).capacity(capacity_for(hello.items)))?;
            drop(connection);
            let start = Instant::now();
            send_items(&mut tx, hello.items)?;
            Ok(format!(
                "mode=recv items={} seconds={:.6}",
                hello.items,
                start.elapsed().as_secs_f64()
            ))
        }
        other => Err(format!("asked for an unknown mode {other}").into()),
    }
}

// --------------------------------------------------------------- clients

/// Connects, offers a ring of `u64`, streams `0..items` into it, and
/// reports the server's verdict.
fn send(name: &str, items: u64) -> AnyResult<()> {
    let mut connection = service::connect(name)?;
    say_hello(&mut connection, SEND, items)?;
    let mut tx =
        connection.offer_receiver::<u64>(&ring(ITEMS_TAG).capacity(capacity_for(items)))?;
    let mut verdict = connection.take_receiver::<Verdict>(&ring(VERDICT_TAG))?;
    drop(connection);
    let start = Instant::now();
    send_items(&mut tx, items)?;
    // Dropping the sender closes the ring: the server sees `Disconnected`
    // after the last item, and answers.
    drop(tx);
    let verdict = verdict.recv_timeout(Duration::from_secs(30))?;
    let seconds = start.elapsed().as_secs_f64();
    let verified = verdict.received == items && verdict.first_wrong == u64::MAX;
    println!(
        "sent items={items} seconds={seconds:.6} server_received={} verified={verified}",
        verdict.received
    );
    if verified {
        Ok(())
    } else {
        Err(format!("the server did not verify the stream: {verdict:?}").into())
    }
}

/// Connects `connections` times in turn; each time asks the server for
/// `items` items, checks them, and reports the time from `connect()` to
/// the first item.
fn recv(name: &str, items: u64, connections: u32) -> AnyResult<()> {
    let mut all_verified = true;
    for n in 0..connections {
        let start = Instant::now();
        let mut connection = service::connect(name)?;
        say_hello(&mut connection, RECV, items)?;
        let mut rx = connection.take_receiver::<u64>(&ring(ITEMS_TAG))?;
        drop(connection);
        let mut first = None;
        let (received, first_wrong) = receive_items(&mut rx, &mut first)?;
        // The stream's time, from the first item to the end.
        let seconds = first.map_or(0.0, |at: Instant| at.elapsed().as_secs_f64());
        let connect_us = first.map_or(f64::NAN, |at| (at - start).as_secs_f64() * 1e6);
        let verified = received == items && first_wrong.is_none();
        all_verified &= verified;
        println!(
            "received connection={n} items={received} connect_us={connect_us:.1} \
             seconds={seconds:.6} verified={verified}"
        );
    }
    if all_verified {
        Ok(())
    } else {
        Err("a stream was not the sequence asked for".into())
    }
}

/// Connects, then says nothing for `seconds`; then reports whether the
/// listener has dropped the connection in the meantime.
fn stall(name: &str, seconds: f64) -> AnyResult<()> {
    let mut connection = service::connect(name)?;
    println!("connected pid={}", std::process::id());
    std::thread::sleep(Duration::try_from_secs_f64(seconds)?);
    // A listener that dropped us has closed the socket: anything read on
    // it now is its end.
    connection.set_timeout(Duration::from_millis(100))?;
    let dropped = matches!(
        connection.take_receiver::<u64>(&Builder::new()),
        Err(fdring::Error::Disconnected)
    );
    println!("stalled seconds={seconds} dropped_by_listener={dropped}");
    Ok(())
}

/// Offers the hello ring and says what this client wants.
fn say_hello(connection: &mut Connection, mode: u64, items: u64) -> AnyResult<()> {
    let mut hello = connection.offer_receiver::<Hello>(&ring(HELLO_TAG).capacity(1))?;
    hello.send(Hello { mode, items })?;
    Ok(())
}

// ----------------------------------------------------- the streams

/// Streams `0..items` by writing them in place into the ring.
fn send_items(tx: &mut Sender<u64>, items: u64) -> Result<(), fdring::Error> {
    let mut next = 0u64;
    while next < items {
        let left = usize::try_from(items - next).unwrap_or(usize::MAX);
        next += tx.send_with(|slots: &mut [MaybeUninit<u64>]| {
            let n = slots.len().min(left).min(CHUNK);
            for (slot, value) in slots[..n].iter_mut().zip(next..) {
                slot.write(value);
            }
            n
        })? as u64;
    }
    Ok(())
}

/// Receives items until the sender is gone, checking in place that each is
/// its position; notes when the first arrived. Returns how many arrived
/// and the first wrong position.
fn receive_items(
    rx: &mut Receiver<u64>,
    first: &mut Option<Instant>,
) -> Result<(u64, Option<u64>), fdring::Error> {
    let mut next = 0u64;
    let mut first_wrong = None;
    loop {
        let received = rx.recv_with(|items: &[u64]| {
            first.get_or_insert_with(Instant::now);
            let items = &items[..items.len().min(CHUNK)];
            // Branch-free over the slice, so that it vectorizes; look for
            // the culprit only if something is wrong.
            let diff = items
                .iter()
                .zip(next..)
                .fold(0, |acc, (&item, expected)| acc | (item ^ expected));
            if diff != 0 && first_wrong.is_none() {
                first_wrong = (next..)
                    .zip(items)
                    .find(|&(i, &item)| item != i)
                    .map(|p| p.0);
            }
            next += items.len() as u64;
            items.len()
        });
        match received {
            Ok(_) => {}
            Err(fdring::Error::Disconnected) => return Ok((next, first_wrong)),
            Err(e) => return Err(e),
        }
    }
}

/// Runs the rest of this process as `uid` (and gid `uid`, with no
/// supplementary groups). Called first thing, while the process has one
/// thread, so that the per-thread calls change the whole process.
fn become_user(uid: u32) -> AnyResult<()> {
    use rustix::process::{Gid, Uid};
    let gid = Gid::from_raw(uid);
    rustix::thread::set_thread_groups(&[])?;
    rustix::thread::set_thread_res_gid(gid, gid, gid)?;
    let uid = Uid::from_raw(uid);
    rustix::thread::set_thread_res_uid(uid, uid, uid)?;
    Ok(())
}

// ------------------------------------------------------------------ demo

/// The demo: every role as an unrelated process, then a summary.
fn demo(options: &Options) -> ExitCode {
    if options.items == 0 {
        eprintln!("service demo: --items must be at least 1");
        return ExitCode::from(2);
    }
    let processes = Processes::default();
    // A watchdog: whatever happens, nothing outlives a minute.
    let watchdog = processes.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(55));
        eprintln!("service demo: out of time, killing every process it started");
        watchdog.kill_all();
    });
    let result = run_demo(&processes, options.items);
    processes.kill_all();
    match result {
        Ok(summary) => {
            summary.print(options.json);
            if summary.verified() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("service demo: {e}");
            if options.json {
                println!(
                    "{{\"items\": 0, \"connect_us\": null, \"refused_other_uid\": null, \
                     \"verified\": false, \"error\": {}}}",
                    json_string(&e.to_string())
                );
            }
            ExitCode::FAILURE
        }
    }
}

/// Latency connections the demo makes, and the items each asks for.
const LATENCY_CONNECTIONS: u32 = 100;
const LATENCY_ITEMS: u64 = 1000;
/// How long the demo's server waits for a silent client.
const DEMO_TIMEOUT: &str = "2";

fn run_demo(processes: &Processes, items: u64) -> AnyResult<Summary> {
    let start = Instant::now();
    let name = format!("service-demo-{}", std::process::id());
    let as_root = rustix::process::geteuid().is_root();
    // The connections the server will see: the silent one, the two
    // streams, the latency client's, and the client of another uid.
    let connections = 3 + u64::from(LATENCY_CONNECTIONS) + u64::from(as_root);

    let mut server = processes.start(
        &[
            "serve",
            &name,
            "--clients",
            &connections.to_string(),
            "--for",
            "50",
            "--timeout",
            DEMO_TIMEOUT,
        ],
        false,
    )?;
    let listening = server.line()?;
    if !listening.starts_with("listening ") {
        return Err(format!("the server did not start: {listening:?}").into());
    }

    // A client that connects and then says nothing, while all the others
    // are served.
    let mut silent = processes.start(&["stall", &name, "--seconds", "3"], false)?;
    let connected = silent.line()?;
    if !connected.starts_with("connected ") {
        return Err(format!("the silent client did not connect: {connected:?}").into());
    }

    // Both roles at once: `items` to the server and as many from it.
    let items_arg = items.to_string();
    let sender = processes.start(&["send", &name, "--items", &items_arg], false)?;
    let receiver = processes.start(&["recv", &name, "--items", &items_arg], false)?;
    let sent = sender.finish()?;
    let received = receiver.finish()?;
    let send = field(&sent, "sent", "verified") == Some("true");
    let recv = field(&received, "received", "verified") == Some("true");
    let seconds_of = |lines: &[String], kind: &str| {
        field(lines, kind, "seconds").and_then(|s| s.parse::<f64>().ok())
    };

    // Connect-to-first-item, once the streams are done.
    let latency = processes
        .start(
            &[
                "recv",
                &name,
                "--items",
                &LATENCY_ITEMS.to_string(),
                "--connections",
                &LATENCY_CONNECTIONS.to_string(),
            ],
            false,
        )?
        .finish()?;
    let mut connect_us: Vec<f64> = latency
        .iter()
        .filter(|line| line.starts_with("received "))
        .filter_map(|line| value_of(line, "connect_us")?.parse().ok())
        .collect();
    connect_us.sort_by(f64::total_cmp);
    let latency_verified = connect_us.len() == LATENCY_CONNECTIONS as usize
        && latency
            .iter()
            .filter(|line| line.starts_with("received "))
            .all(|line| value_of(line, "verified") == Some("true"));

    // Another user: refused by the listener; and a listener of another
    // user, refused by a client.
    let other_uid = if as_root {
        let uid = OTHER_UID.to_string();
        let client = processes
            .start(&["--as-uid", &uid, "recv", &name, "--items", "1"], true)?
            .outcome()?;
        let impostor_name = format!("{name}-impostor");
        let mut impostor = processes.start(
            &["--as-uid", &uid, "serve", &impostor_name, "--for", "20"],
            false,
        )?;
        let listening = impostor.line()?;
        if !listening.starts_with("listening ") {
            return Err(format!("the listener of uid {uid} did not start: {listening:?}").into());
        }
        let client_of_impostor = processes
            .start(&["recv", &impostor_name, "--items", "1"], true)?
            .outcome()?;
        impostor.kill();
        OtherUid::Tried {
            refused: client.0 == Some(i32::from(EXIT_REFUSED_BY_LISTENER)),
            client_said: client.1,
            listener_refused: client_of_impostor.0 == Some(i32::from(EXIT_LISTENER_NOT_TRUSTED)),
            client_of_listener_said: client_of_impostor.1,
        }
    } else {
        OtherUid::Skipped("not running as root: cannot start a process of another uid")
    };

    let silent_report = silent.finish()?;
    let served = server.finish()?;
    let silent_pid = value_of(&connected, "pid").unwrap_or("?");
    // The server reports each client when it is done with it.
    let silent_line = served.iter().position(|line| {
        line.starts_with(&format!("dropped pid={silent_pid} "))
            && line.contains(&fdring::Error::Timeout.to_string())
    });
    let silent_dropped = silent_line.is_some()
        && field(&silent_report, "stalled", "dropped_by_listener") == Some("true");
    let served_while_silent = served[..silent_line.unwrap_or(0)]
        .iter()
        .filter(|line| line.starts_with("client "))
        .count();
    let server_verified_send = served
        .iter()
        .any(|line| line.contains("mode=send") && value_of(line, "verified") == Some("true"));
    let server_refused = served.iter().filter(|l| l.starts_with("refused ")).count();
    let server_done = field(&served, "served", "connections") == Some(&*connections.to_string());

    Ok(Summary {
        items,
        send_seconds: seconds_of(&sent, "sent"),
        recv_seconds: seconds_of(&received, "received"),
        connect_us,
        streams_verified: send && recv && server_verified_send,
        latency_verified,
        server_done,
        server_refused,
        silent_dropped,
        served_while_silent,
        other_uid,
        seconds: start.elapsed().as_secs_f64(),
        name,
    })
}

/// What came of the processes of another uid.
enum OtherUid {
    Skipped(&'static str),
    Tried {
        /// The client of uid 65534 exited with "refused by the listener".
        refused: bool,
        client_said: String,
        /// A client of this uid refused the listener of uid 65534.
        listener_refused: bool,
        client_of_listener_said: String,
    },
}

struct Summary {
    items: u64,
    send_seconds: Option<f64>,
    recv_seconds: Option<f64>,
    /// Sorted.
    connect_us: Vec<f64>,
    streams_verified: bool,
    latency_verified: bool,
    server_done: bool,
    server_refused: usize,
    silent_dropped: bool,
    /// Clients the server was done with before it dropped the silent one.
    served_while_silent: usize,
    other_uid: OtherUid,
    seconds: f64,
    name: String,
}

impl Summary {
    fn verified(&self) -> bool {
        let other_uid = match &self.other_uid {
            OtherUid::Skipped(_) => true,
            OtherUid::Tried {
                refused,
                listener_refused,
                ..
            } => *refused && *listener_refused && self.server_refused == 1,
        };
        self.streams_verified
            && self.latency_verified
            && self.server_done
            && self.silent_dropped
            && other_uid
    }

    fn percentile(&self, p: f64) -> Option<f64> {
        let last = self.connect_us.len().checked_sub(1)?;
        Some(self.connect_us[((last as f64) * p).round() as usize])
    }

    fn print(&self, json: bool) {
        let rate = |seconds: Option<f64>| seconds.map(|s| self.items as f64 / s);
        let show =
            |x: Option<f64>, unit: &str| x.map_or("?".to_owned(), |x| format!("{x:.1}{unit}"));
        let show3 = |x: Option<f64>| x.map_or("?".to_owned(), |x| format!("{x:.3} s"));
        println!(
            "fdring service demo: every role a separate process (own session), found by the name @fdring:{}",
            self.name
        );
        println!(
            "  send: a client streamed {} items to the server in {} ({} M items/s), sequence checked by the server",
            self.items,
            show3(self.send_seconds),
            show(rate(self.send_seconds).map(|r| r / 1e6), "")
        );
        println!(
            "  recv: the server streamed {} items to a client in {} ({} M items/s), sequence checked by the client",
            self.items,
            show3(self.recv_seconds),
            show(rate(self.recv_seconds).map(|r| r / 1e6), "")
        );
        println!(
            "  connect() to first item, {} connections: median {}, p99 {}",
            self.connect_us.len(),
            show(self.percentile(0.5), " µs"),
            show(self.percentile(0.99), " µs")
        );
        if self.silent_dropped {
            println!(
                "  a client that connected and said nothing: dropped by the server after its \
                 {DEMO_TIMEOUT} s timeout; meanwhile it served {} others",
                self.served_while_silent
            );
        } else {
            println!("  a client that connected and said nothing: NOT dropped as expected");
        }
        match &self.other_uid {
            OtherUid::Skipped(why) => println!("  another uid: not tried ({why})"),
            OtherUid::Tried {
                refused,
                client_said,
                listener_refused,
                client_of_listener_said,
            } => {
                println!(
                    "  a client of uid {OTHER_UID}: {} ({client_said})",
                    if *refused { "refused" } else { "NOT refused" }
                );
                println!(
                    "  a listener of uid {OTHER_UID}: {} by a client of this uid ({client_of_listener_said})",
                    if *listener_refused { "refused" } else { "NOT refused" }
                );
            }
        }
        println!(
            "  verified: {} ({:.1} s in all)",
            self.verified(),
            self.seconds
        );
        if json {
            let number = |x: Option<f64>| x.map_or("null".to_owned(), |x| format!("{x:.1}"));
            let (refused, listener_refused, why) = match &self.other_uid {
                OtherUid::Skipped(why) => ("null".to_owned(), "null".to_owned(), json_string(why)),
                OtherUid::Tried {
                    refused,
                    listener_refused,
                    ..
                } => (
                    refused.to_string(),
                    listener_refused.to_string(),
                    "null".to_owned(),
                ),
            };
            println!(
                "{{\"items\": {}, \"items_each_way\": {}, \
                 \"send_items_per_s\": {}, \"recv_items_per_s\": {}, \
                 \"connect_us\": {}, \"connect_p99_us\": {}, \"connections_timed\": {}, \
                 \"refused_other_uid\": {refused}, \"refused_listener_of_other_uid\": {listener_refused}, \
                 \"other_uid_skipped\": {why}, \"silent_client_dropped\": {}, \
                 \"served_while_silent\": {}, \
                 \"seconds\": {:.3}, \"verified\": {}}}",
                2 * self.items,
                self.items,
                number(rate(self.send_seconds)),
                number(rate(self.recv_seconds)),
                number(self.percentile(0.5)),
                number(self.percentile(0.99)),
                self.connect_us.len(),
                self.silent_dropped,
                self.served_while_silent,
                self.seconds,
                self.verified()
            );
        }
    }
}

/// The processes the demo started, so that it can kill them all if it
/// fails or runs out of time.
#[derive(Clone, Default)]
struct Processes(Arc<Mutex<Vec<u32>>>);

impl Processes {
    /// Starts this program with `args`, detached: in a session of its own
    /// (no terminal, no process group shared with the demo), stdin closed,
    /// stdout piped to the demo; stderr too if `capture_errors`.
    fn start(&self, args: &[&str], capture_errors: bool) -> AnyResult<Process> {
        let mut command = Command::new(std::env::current_exe()?);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(if capture_errors {
                Stdio::piped()
            } else {
                Stdio::inherit()
            });
        // SAFETY: between fork and exec the child may only call
        // async-signal-safe functions; `setsid` is one, and the closure
        // allocates nothing. (Not `process_group(0)` as well: a process
        // group leader cannot `setsid`, and `setsid` makes the child the
        // leader of a new group anyway.)
        unsafe {
            command.pre_exec(|| {
                rustix::process::setsid()?;
                Ok(())
            });
        }
        let mut child = command.spawn()?;
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(child.id());
        let stdout = BufReader::new(child.stdout.take().ok_or("stdout not piped")?);
        Ok(Process {
            child,
            stdout,
            what: args.join(" "),
            processes: self.clone(),
        })
    }

    fn forget(&self, pid: u32) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|&p| p != pid);
    }

    /// Kills every process started and not yet reaped.
    fn kill_all(&self) {
        for &pid in self.0.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
    }
}

/// One process the demo started.
struct Process {
    child: Child,
    stdout: BufReader<ChildStdout>,
    what: String,
    processes: Processes,
}

impl Process {
    /// The next line it printed.
    fn line(&mut self) -> AnyResult<String> {
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            return Err(format!("`service {}` ended without a word", self.what).into());
        }
        Ok(line.trim_end().to_owned())
    }

    /// Every line it printed until it exited; an error unless it succeeded.
    fn finish(mut self) -> AnyResult<Vec<String>> {
        let lines: Vec<String> = (&mut self.stdout).lines().collect::<Result<_, _>>()?;
        let status = self.child.wait()?;
        self.processes.forget(self.child.id());
        if !status.success() {
            return Err(format!("`service {}` failed: {status}", self.what).into());
        }
        Ok(lines)
    }

    /// Its exit code, and the last line of what it said on stderr.
    fn outcome(mut self) -> AnyResult<(Option<i32>, String)> {
        let mut errors = String::new();
        if let Some(mut stderr) = self.child.stderr.take() {
            stderr.read_to_string(&mut errors)?;
        }
        std::io::copy(&mut self.stdout, &mut std::io::sink())?;
        let status = self.child.wait()?;
        self.processes.forget(self.child.id());
        let said = errors.lines().last().unwrap_or("").to_owned();
        Ok((status.code(), said))
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.processes.forget(self.child.id());
    }
}

/// The value of `key=value` in `line`.
fn value_of<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .filter_map(|word| word.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.trim_end_matches(':'))
}

/// The value of `key` on the first of `lines` that starts with `kind`.
fn field<'a>(lines: &'a [String], kind: &str, key: &str) -> Option<&'a str> {
    lines
        .iter()
        .find(|line| line.split_whitespace().next() == Some(kind))
        .and_then(|line| value_of(line, key))
}
