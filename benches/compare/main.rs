//! fdring side by side with the physical floor and with the peers a user
//! would pick instead; the cases, goals and habits are in
//! `shared/BENCHMARKS.md`.
//!
//! ```text
//! cargo bench --bench compare -- [--quick] [--rounds N] [--json FILE] [--case NAME] [--plot DIR]
//! ```
//!
//! Every contender moves 64-bit sequence numbers (frames are runs of them),
//! and the receiving side checks every one it gets: a contender that moves
//! wrong data is reported FAILED, not timed. A case runs in rounds (15 with
//! `--quick`, 25 without), each short, and each round runs every contender
//! of the case back to back (A B C A B C ...). The table quotes each
//! contender's median over the rounds, and the headline ratio is *paired*:
//! the median over rounds of fdring ÷ contender within the same round, in
//! the row's unit (the goals read the case's first unit). A round in which the case's floor (its first
//! contender named "floor ...", or fdring in a case with no floor) did
//! worse than half its own median is a slow phase of the machine; so is a
//! round before which the machine's gauge (a cross-core cache-line round
//! trip, `gauge`) took more than twice the run's median, which catches a
//! slow phase as long as the whole case. A slow round stays in the JSON
//! lists but not in the ratio (unless every round was slow), and the line
//! under the case counts them. A case left with fewer than 8 fast rounds
//! runs more at the end of the run, until it has 8 or has run twice its
//! rounds.
//!
//! Two processes are this binary run again with `--role NAME`: the parent
//! (core 0) produces, pings or connects, the child (core 1) consumes, pongs
//! or listens, and fdring's fds reach it through `handoff::inherit` as in
//! `examples/demo.rs`.
//! Thread-only peers run between two threads pinned the same way, and so
//! does fdring next to them ("fdring/threads"). In the topologies'
//! cases (`fan_in_8`, `worker_pool_4`) the parent is the one consumer or
//! dispatcher, alone on core 0, and its several children share core 1.
//!
//! The video cases move a few frames off the clock first (`video`'s
//! `WARM`): a run is timed from when its receiver had them, so that every
//! contender is raced with its shared memory already touched.
//!
//! In `pingpong_block` the "fdring" row spins 0 µs, so that every receive
//! sleeps on its wake-up socket as its floor sleeps on an eventfd; "fdring spin 20µs" is the
//! default. In `frames_video`, "fdring/mlock" locks (and so pre-faults) both
//! mappings, which shows what first-touch page faults cost the default.
//!
//! `--json FILE` writes one JSON object per line and row:
//!
//! | field | what |
//! |---|---|
//! | `case`, `contender`, `unit` | the row |
//! | `median`, `min`, `max` | the contender's own values over the rounds |
//! | `ratio_vs_fdring`, `ratio_min`, `ratio_max` | the paired ratio: median, min and max over the rounds that were not slow (over all if every one was) of fdring ÷ contender in that round (`null` in a case of one contender, or if either side failed) |
//! | `rounds` | how many rounds the case ran, those run again for slow phases included |
//! | `values` | the contender's value in each round, in order |
//! | `ratios` | fdring ÷ contender in each round, slow or not (only in rows with a paired ratio) |
//! | `slow` | parallel to `ratios`: `true` for a round that was a slow phase, left out of `ratio_vs_fdring` |
//! | `slow_judged_by` | the contender whose `values` (in the case's first unit) judged the slow rounds |
//! | `gauge_rtt_ns` | the machine's gauge before each round: the cross-core round trip in ns, the other judge of slow rounds |
//! | `failed` | why the row failed, if it did |
//!
//! fdring's counters (`allocs/msg`, `wake-ups/msg`) are rows too: `median`,
//! `min` and `max` are all the most of any round, and `values` each round's.
//!
//! The bench is split by idea, one module each:
//!
//! | module | what it holds |
//! |---|---|
//! | `process` | the parameters of a run, its two sides (thread or child process), the gates, core pinning |
//! | `child` | the child's entry point and its role table |
//! | `data` | the sequence numbers, their checking, the `Tx` / `Rx` / `Duplex` sides |
//! | `ours` | fdring's contenders: items, one at a time, ping-pong, between threads |
//! | `floors` | the least code that could do the job: bare SPSC, cache line, `memcpy` |
//! | `peers` | the other crates and the kernel's own transports |
//! | `iceoryx` | iceoryx2, configured as its own benchmarks configure it |
//! | `ipc_channel` | Servo's ipc-channel, handed over through a one-shot server |
//! | `many_rings` | one consumer thread serving many rings through `mio` |
//! | `fleet` | one side against several peers: starting them together, joining them |
//! | `sockets` | the topologies' `UnixStream`s: words out of a byte stream, fair turns under `mio` |
//! | `fan_in` | `fan_in_8`: eight producer processes, one consumer |
//! | `worker_pool` | `worker_pool_4`: a dispatcher, four worker processes, the replies back |
//! | `connect` | `connect_latency`: a service found by name, to the first item |
//! | `create_open` | `create_open`: a ring made, handed to a running child, to the first item |
//! | `frames` | the frame layer and its peers, and the sized frame cases |
//! | `video` | the video cases: 1080p frames through items and the frame layer, room for 4 and for 2, after a warm-up |
//! | `c_producer` | `stream_u64_batch`'s C producer: a C program on `fdring.h`, built with `cc` |
//! | `cases` | the table of cases, their contenders, metrics and goals |
//! | `report` | running a case round by round, the table, the goals |
//! | `json` | the rows of `--json` |
//! | `paired` | the paired ratio: per-round ratios, slow phases, their median |
//! | `plots` | the SVG charts of `--plot` |

use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytemuck::{Pod, Zeroable};

mod c_producer;
mod cases;
mod child;
mod connect;
mod create_open;
mod data;
mod fan_in;
mod fleet;
mod floors;
mod frames;
mod gauge;
mod iceoryx;
mod ipc_channel;
mod json;
mod many_rings;
mod ours;
mod paired;
mod peers;
mod plots;
mod process;
mod report;
mod sockets;
mod video;
mod worker_pool;

use cases::cases;
use child::child_main;
use json::json_row;
use many_rings::{MANY_RINGS, MANY_RINGS_4096};
use plots::plot;
use process::{pin, PEER_CORE};
use report::{goals, machine, measure, measure_again, print_header, print_row, report_case};

/// What every contender returns.
type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Capacity of the `u64` rings (512 KiB), as in the demo.
const CAP: usize = 1 << 16;
/// Items per closure call: an eighth of the ring, so that both sides work
/// at once (see `CHUNK` in the demo); also the pipe's 64 KiB writes.
const CHUNK: usize = CAP / 8;
/// A 1920x1080 RGBA frame, 8,294,400 bytes, in 64-bit words.
const FRAME_WORDS: usize = 1920 * 1080 * 4 / 8;
/// Frames a frame ring holds.
const FRAME_RING: usize = 4;
/// `wakeups`: items per burst and the pause between bursts.
const BURST: u64 = 10_000;
const PAUSE: Duration = Duration::from_micros(100);

#[repr(transparent)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Frame([u64; FRAME_WORDS]);

// A counting allocator, per thread (the allocation counts).
#[path = "../../tests/support/counting_alloc.rs"]
mod counting_alloc;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--role") {
        return child_main(&args[1..]);
    }
    let (mut quick, mut json, mut only, mut plot_dir, mut rounds) =
        (false, None, None, None, None::<usize>);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--json" => json = it.next().cloned(),
            "--case" => only = it.next().cloned(),
            "--plot" => plot_dir = it.next().cloned(),
            "--rounds" => rounds = it.next().and_then(|n| n.parse().ok()).filter(|&n| n > 0),
            "--bench" => {}
            _ => {
                eprintln!(
                    "usage: compare [--quick] [--rounds N] [--json FILE] [--case NAME] [--plot DIR]"
                );
                return ExitCode::from(2);
            }
        }
    }
    let rounds = rounds.unwrap_or(if quick { 15 } else { 25 });
    let nproc = std::thread::available_parallelism().map_or(1, |n| n.get());
    PEER_CORE.store(usize::from(nproc > 1), Ordering::Relaxed);
    println!(
        "fdring compare{}: {rounds} rounds a case, each running the case's contenders back to back",
        if quick { " --quick" } else { "" }
    );
    println!("machine: {}", machine());
    pin(0);
    println!(
        "cores: parent (producer, pinger) on core 0, child process or second thread (consumer, ponger) on core {}",
        PEER_CORE.load(Ordering::Relaxed)
    );
    println!("median, min–max: the contender's own, over the rounds");
    println!("ratio, min–max: paired, the median over rounds of fdring ÷ contender in the same round, in the row's unit (GB/s, Mitems/s: > 1 fdring is faster; per RTT or per connection: < 1 fdring is faster)");
    println!("slow round: the case's floor (or fdring, in a case with no floor) worse than half its own median, or the machine's gauge (a cross-core cache-line round trip, before each round) above twice the run's median; listed under the case and left out of its ratios");
    for (name, rings) in [
        ("many_rings", MANY_RINGS),
        ("many_rings_4096", MANY_RINGS_4096),
    ] {
        if only.as_ref().map_or(true, |o| o == name) {
            println!("{}", many_rings::header(name, rings));
        }
    }
    let cases = cases(quick);
    if let Some(case) = cases.iter().find(|c| c.name == "connect_latency") {
        if only.as_ref().map_or(true, |o| o == case.name) {
            println!("{}", connect::header(case.cfg.n));
        }
    }
    if let Some(case) = cases.iter().find(|c| c.name == "create_open") {
        if only.as_ref().map_or(true, |o| o == case.name) {
            println!("{}", create_open::header(case.cfg.n));
        }
    }
    for case in cases.iter() {
        if only.as_ref().is_some_and(|o| o != case.name) {
            continue;
        }
        match case.name {
            "fan_in_8" => println!("{}", fan_in::header(&case.cfg)),
            "worker_pool_4" => println!("{}", worker_pool::header(&case.cfg)),
            _ => {}
        }
    }
    println!();
    print_header();
    if let Some(name) = only.as_deref() {
        if !cases.iter().any(|c| c.name == name) {
            eprintln!("no case {name}");
            return ExitCode::from(2);
        }
    }
    let started = Instant::now();
    let mut gauge = gauge::Gauge::new();
    // Every case is measured before any is reported, so that the slow
    // rounds are judged on the gauge's median over the whole run.
    let mut measured = Vec::new();
    for case in cases.iter() {
        if only.as_ref().is_some_and(|o| o != case.name) {
            continue;
        }
        let m = measure(case, rounds, &mut gauge);
        eprintln!("measured {}", case.name);
        measured.push((case, m));
    }
    for (case, m) in &mut measured {
        measure_again(case, m, &mut gauge);
    }
    let (mut rows, mut verdicts) = (Vec::new(), Vec::new());
    for (case, m) in &measured {
        let case_rows = report_case(case, m, &gauge);
        verdicts.extend(goals(case, &case_rows));
        if case.name == "create_open" {
            verdicts.extend(create_open::goals(&case_rows));
        }
        rows.extend(case_rows);
    }
    println!("\ngoals (BENCHMARKS.md, unless marked):");
    verdicts.iter().for_each(|v| println!("{v}"));
    println!("\nfdring's counters, the most of any round, both sides (allocations counted from each side's start to its end):");
    for r in rows.iter().filter(|r| r.unit.ends_with("/msg")) {
        print_row(r);
    }
    println!("\nwhole report: {:.1} s", started.elapsed().as_secs_f64());
    let failed = rows.iter().any(|r| r.values.is_err());
    if let Some(path) = json {
        let text: String = rows.iter().map(|r| json_row(r) + "\n").collect();
        if let Err(e) = std::fs::write(&path, text) {
            eprintln!("writing {path}: {e}");
            return ExitCode::FAILURE;
        }
    }
    if let Some(dir) = plot_dir {
        if let Err(e) = plot(&dir, &rows) {
            eprintln!("plotting into {dir}: {e}");
            return ExitCode::FAILURE;
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
