//! A parent process streams data to a child process through two fdring
//! rings; the child is this same program, run again with `--child`.
//!
//! It shows:
//! - creating rings with `fdring::channel` and handing the receiving ends
//!   to a child with `handoff::inherit` (parent) and `handoff::inherited`
//!   (child);
//! - learning of the child's death for free: each end's wake-up socket
//!   hangs up when the child's end is gone, so the parent gets
//!   `Disconnected` instead of hanging if the child dies;
//! - the zero-copy closure API: 2^28 `u64` sequence numbers (2 GiB)
//!   written in place with `send_with` and checked in place with
//!   `recv_with`, in chunks so that both processes work at once;
//! - `io::Write` / `io::Read` on a ring of bytes: 16384 records of
//!   0 to 64 KiB (a little-endian `u32` length, then a pattern) that keep
//!   crossing the ring's wrap;
//! - the counters each end keeps (`stats`): wake-ups are sent only when
//!   the other side actually slept.
//!
//! The child checks every number and every byte and reports on its stdout;
//! the parent prints a summary and exits non-zero unless all was verified.
//!
//! Run it with
//!
//! ```text
//! cargo run --release --example demo
//! cargo run --release --example demo -- --json   # last line: one JSON object
//! ```

use std::error::Error;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::mem::MaybeUninit;
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use fdring::{handoff, Receiver, Sender};

#[path = "support/json.rs"]
mod json;
use json::json_string;

/// Sequence numbers streamed through the `u64` ring.
const ITEMS: u64 = 1 << 28;
/// Capacity of the `u64` ring in items (512 KiB).
const ITEM_CAPACITY: usize = 1 << 16;
/// Items written or checked per closure call, at most. Each call publishes
/// (or releases) what it did when it returns, so chunks well below the
/// capacity let the child read one chunk while the parent writes the next;
/// filling the whole ring at once would make the two sides take turns.
const CHUNK: usize = ITEM_CAPACITY / 8;
/// Records written through the byte ring.
const RECORDS: u64 = 16384;
/// The longest record body in bytes.
const MAX_RECORD: usize = 64 * 1024;
/// Capacity of the byte ring: a few records' worth, so that records keep
/// crossing its wrap.
const BYTE_CAPACITY: usize = 256 * 1024;
/// The record pattern repeats every `PERIOD` bytes; a prime, so that it
/// never lines up with pages or with the ring's wrap.
const PERIOD: usize = 251;
/// Seed of the record lengths; both processes derive the same lengths.
const SEED: u64 = 0x5eed_f0d0_c0de_0001;

/// The environment variables that carry each ring's fds to the child.
const ITEMS_VAR: &str = "FDRING_DEMO";
const BYTES_VAR: &str = "FDRING_DEMO_BYTES";

type AnyResult<T> = Result<T, Box<dyn Error>>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        return match child() {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("demo child: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let json = match args.as_slice() {
        [] => false,
        [flag] if flag == "--json" => true,
        _ => {
            eprintln!("usage: demo [--json]");
            return ExitCode::from(2);
        }
    };
    match parent() {
        Ok(summary) => {
            summary.print(json);
            if summary.verified() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("demo: {e}");
            if json {
                println!(
                    "{{\"items\": 0, \"bytes\": 0, \"seconds\": 0, \"wakeups\": 0, \"eventfd_writes\": 0, \
                     \"verified\": false, \"error\": {}}}",
                    json_string(&e.to_string())
                );
            }
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------- parent

fn parent() -> AnyResult<Summary> {
    let (mut items_tx, items_rx) = fdring::channel::<u64>(ITEM_CAPACITY)?;
    let (mut bytes_tx, bytes_rx) = fdring::channel::<u8>(BYTE_CAPACITY)?;

    let mut command = Command::new(std::env::current_exe()?);
    command.arg("--child").stdout(Stdio::piped());
    handoff::inherit(&mut command, ITEMS_VAR, items_rx.into_fds()?);
    handoff::inherit(&mut command, BYTES_VAR, bytes_rx.into_fds()?);
    let mut child = command.spawn()?;
    // The Command holds the parent's copies of the fds it passed on; drop
    // it so that the child's ends live in the child only, and the parent's
    // wake-up sockets hang up if the child dies.
    drop(command);

    let mut from_child = BufReader::new(child.stdout.take().ok_or("child stdout not piped")?);
    let mut line = String::new();
    from_child.read_line(&mut line)?;
    if line.trim_end() != "ready" {
        return Err(format!("the child did not start (it said {line:?})").into());
    }

    let start = Instant::now();
    send_items(&mut items_tx).map_err(|e| format!("streaming the numbers: {e}"))?;
    let items_stats = items_tx.stats();
    // Dropping the sender marks it closed: the child gets `Disconnected`
    // once it has received the last item.
    drop(items_tx);
    let items_sent = Instant::now();
    let record_bytes =
        send_records(&mut bytes_tx).map_err(|e| format!("writing the records: {e}"))?;
    let bytes_stats = bytes_tx.stats();
    drop(bytes_tx);

    line.clear();
    from_child.read_line(&mut line)?;
    let seconds = start.elapsed().as_secs_f64();
    let status = child.wait()?;
    Ok(Summary {
        items_seconds: (items_sent - start).as_secs_f64(),
        record_bytes,
        seconds,
        wakeups: items_stats.wakeups + bytes_stats.wakeups,
        sleeps: items_stats.sleeps + bytes_stats.sleeps,
        child: ChildReport::parse(&line),
        child_succeeded: status.success(),
        child_pid: child.id(),
    })
}

/// Streams `0..ITEMS` by writing them in place into the ring.
fn send_items(tx: &mut Sender<u64>) -> Result<(), fdring::Error> {
    let mut next = 0u64;
    while next < ITEMS {
        let left = usize::try_from(ITEMS - next).unwrap_or(usize::MAX);
        let sent = tx.send_with(|slots: &mut [MaybeUninit<u64>]| {
            let n = slots.len().min(left).min(CHUNK);
            for (slot, value) in slots[..n].iter_mut().zip(next..) {
                slot.write(value);
            }
            n
        })?;
        next += sent as u64;
    }
    Ok(())
}

/// Writes every record, length first, through `io::Write`; returns the
/// bytes written.
fn send_records(tx: &mut Sender<u8>) -> io::Result<u64> {
    let pattern = pattern();
    let mut bytes = 0;
    for (index, len) in record_lengths().enumerate() {
        tx.write_all(&(len as u32).to_le_bytes())?;
        tx.write_all(record_body(&pattern, index, len))?;
        bytes += 4 + len as u64;
    }
    Ok(bytes)
}

/// What the parent measured and what the child reported.
struct Summary {
    items_seconds: f64,
    record_bytes: u64,
    seconds: f64,
    wakeups: u64,
    sleeps: u64,
    child: Option<ChildReport>,
    child_succeeded: bool,
    child_pid: u32,
}

impl Summary {
    fn verified(&self) -> bool {
        self.child_succeeded && self.child.as_ref().is_some_and(ChildReport::verified)
    }

    fn item_bytes(&self) -> u64 {
        ITEMS * std::mem::size_of::<u64>() as u64
    }

    fn bytes(&self) -> u64 {
        self.item_bytes() + self.record_bytes
    }

    fn print(&self, json: bool) {
        let gb_per_s = |bytes: u64, seconds: f64| bytes as f64 / seconds / 1e9;
        let records_seconds = self.seconds - self.items_seconds;
        let (child_wakeups, child_sleeps) = self
            .child
            .as_ref()
            .map_or((0, 0), |c| (c.wakeups, c.sleeps));
        println!(
            "fdring demo: parent {} -> child {} (this program, run with --child)",
            std::process::id(),
            self.child_pid
        );
        println!(
            "  u64 ring ({ITEM_CAPACITY} items), send_with/recv_with: {ITEMS} items, \
             {} bytes in {:.3} s = {:.2} GB/s",
            self.item_bytes(),
            self.items_seconds,
            gb_per_s(self.item_bytes(), self.items_seconds)
        );
        println!(
            "  u8 ring ({BYTE_CAPACITY} bytes), io::Write/io::Read: {RECORDS} records of \
             0..={MAX_RECORD} bytes, {} bytes in {:.3} s = {:.2} GB/s",
            self.record_bytes,
            records_seconds,
            gb_per_s(self.record_bytes, records_seconds)
        );
        println!(
            "  total: {} bytes in {:.3} s = {:.2} GB/s",
            self.bytes(),
            self.seconds,
            gb_per_s(self.bytes(), self.seconds)
        );
        println!(
            "  wake-ups sent: parent {}, child {} (times asleep: parent {}, child {})",
            self.wakeups, child_wakeups, self.sleeps, child_sleeps
        );
        match &self.child {
            Some(c) => println!(
                "  child received {} items ({}), {} records with {} bytes ({})",
                c.items,
                if c.items_in_order {
                    "all in order"
                } else {
                    "NOT in order"
                },
                c.records,
                c.record_bytes,
                if c.records_intact {
                    "all intact"
                } else {
                    "NOT intact"
                },
            ),
            None => println!("  the child sent no report"),
        }
        println!("  verified: {}", self.verified());
        if json {
            // `eventfd_writes` is the name scripts were promised when the
            // wake-ups were eventfd writes; it stays, equal to `wakeups`.
            let wakeups = self.wakeups + child_wakeups;
            println!(
                "{{\"items\": {ITEMS}, \"records\": {RECORDS}, \"bytes\": {}, \
                 \"seconds\": {:.6}, \"gb_per_s\": {:.3}, \"wakeups\": {wakeups}, \
                 \"eventfd_writes\": {wakeups}, \
                 \"wakeups_parent\": {}, \"wakeups_child\": {}, \
                 \"sleeps_parent\": {}, \"sleeps_child\": {}, \"verified\": {}}}",
                self.bytes(),
                self.seconds,
                gb_per_s(self.bytes(), self.seconds),
                self.wakeups,
                child_wakeups,
                self.sleeps,
                child_sleeps,
                self.verified()
            );
        }
    }
}

// ----------------------------------------------------------------- child

fn child() -> AnyResult<bool> {
    // Each bundle comes with a pidfd of the parent, so a blocking receive
    // returns `Disconnected` if the parent dies.
    let mut items_rx = Receiver::<u64>::from_fds(handoff::inherited(ITEMS_VAR)?)?;
    let mut bytes_rx = Receiver::<u8>::from_fds(handoff::inherited(BYTES_VAR)?)?;
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "ready")?;
    stdout.flush()?;

    let (items, first_wrong) =
        receive_items(&mut items_rx).map_err(|e| format!("receiving the numbers: {e}"))?;
    if let Some(index) = first_wrong {
        eprintln!("demo child: item {index} is not {index}");
    }
    let records =
        receive_records(&mut bytes_rx).map_err(|e| format!("reading the records: {e}"))?;
    let report = ChildReport {
        items,
        items_in_order: first_wrong.is_none(),
        records: records.count,
        record_bytes: records.bytes,
        records_intact: records.intact,
        wakeups: items_rx.stats().wakeups + bytes_rx.stats().wakeups,
        sleeps: items_rx.stats().sleeps + bytes_rx.stats().sleeps,
    };
    writeln!(stdout, "{}", report.line())?;
    stdout.flush()?;
    Ok(report.verified())
}

/// Receives items until the sender is gone, checking in place that each is
/// the next number. Returns how many arrived and the first wrong position.
fn receive_items(rx: &mut Receiver<u64>) -> Result<(u64, Option<u64>), fdring::Error> {
    let mut next = 0u64;
    let mut first_wrong = None;
    loop {
        let received = rx.recv_with(|items: &[u64]| {
            let items = &items[..items.len().min(CHUNK)];
            // Branch-free over the whole slice, so that it vectorizes; look
            // for the culprit only if something is wrong.
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

struct Records {
    count: u64,
    bytes: u64,
    intact: bool,
}

/// Reads and checks every record through `io::Read`, then expects the end
/// of the stream.
fn receive_records(rx: &mut Receiver<u8>) -> io::Result<Records> {
    let pattern = pattern();
    let mut body = vec![0u8; MAX_RECORD];
    let mut records = Records {
        count: 0,
        bytes: 0,
        intact: true,
    };
    for (index, expected_len) in record_lengths().enumerate() {
        let mut prefix = [0u8; 4];
        rx.read_exact(&mut prefix)?;
        let len = u32::from_le_bytes(prefix) as usize;
        if len != expected_len {
            eprintln!("demo child: record {index} is {len} bytes, not {expected_len}");
            records.intact = false;
            break;
        }
        rx.read_exact(&mut body[..len])?;
        if body[..len] != *record_body(&pattern, index, len) {
            eprintln!("demo child: record {index} has wrong bytes");
            records.intact = false;
        }
        records.count += 1;
        records.bytes += 4 + len as u64;
    }
    // After the last record the sender closed its end: end of file. (After
    // a bad length, read on to the end so that the parent is not left
    // waiting for space.)
    let trailing = io::copy(rx, &mut io::sink())?;
    if trailing != 0 {
        records.intact = false;
    }
    Ok(records)
}

/// What the child found, sent to the parent as one line on its stdout.
struct ChildReport {
    items: u64,
    items_in_order: bool,
    records: u64,
    record_bytes: u64,
    records_intact: bool,
    wakeups: u64,
    sleeps: u64,
}

impl ChildReport {
    /// True only if every item and every record arrived, in order, intact.
    fn verified(&self) -> bool {
        self.items == ITEMS && self.items_in_order && self.records == RECORDS && self.records_intact
    }

    fn line(&self) -> String {
        format!(
            "report items={} items_in_order={} records={} record_bytes={} \
             records_intact={} wakeups={} sleeps={}",
            self.items,
            self.items_in_order,
            self.records,
            self.record_bytes,
            self.records_intact,
            self.wakeups,
            self.sleeps
        )
    }

    fn parse(line: &str) -> Option<ChildReport> {
        let mut words = line.split_whitespace();
        if words.next() != Some("report") {
            return None;
        }
        let fields: Vec<(&str, &str)> = words.filter_map(|w| w.split_once('=')).collect();
        let field = |name: &str| fields.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
        let number = |name: &str| field(name)?.parse::<u64>().ok();
        let flag = |name: &str| field(name)?.parse::<bool>().ok();
        Some(ChildReport {
            items: number("items")?,
            items_in_order: flag("items_in_order")?,
            records: number("records")?,
            record_bytes: number("record_bytes")?,
            records_intact: flag("records_intact")?,
            wakeups: number("wakeups")?,
            sleeps: number("sleeps")?,
        })
    }
}

// ------------------------------------------------- shared by both sides

/// Record lengths: the first empty, the second the longest, the rest
/// pseudo-random in `0..=MAX_RECORD` (splitmix64), the same in both
/// processes.
fn record_lengths() -> impl Iterator<Item = usize> {
    let mut state = SEED;
    (0..RECORDS).map(move |index| match index {
        0 => 0,
        1 => MAX_RECORD,
        _ => {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            (z % (MAX_RECORD as u64 + 1)) as usize
        }
    })
}

/// `i % PERIOD` for every byte a record can start at and span.
fn pattern() -> Vec<u8> {
    (0..MAX_RECORD + PERIOD)
        .map(|i| (i % PERIOD) as u8)
        .collect()
}

/// The body of record `index`: the pattern from a start that depends on
/// the index, so that a lost, repeated or reordered record is noticed.
fn record_body(pattern: &[u8], index: usize, len: usize) -> &[u8] {
    let start = index.wrapping_mul(131) % PERIOD;
    &pattern[start..start + len]
}
