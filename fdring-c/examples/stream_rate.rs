//! How fast a C producer streams u64 into a Rust consumer in another
//! process, next to a Rust producer doing the same: the C side is
//! `tests/c/stream_producer.c` (reserve up to 4096 items, write them in
//! place, commit), the Rust side this program run as a child (closure
//! API, the same batches). The consumer is the same for both: this
//! process, taking every ready item with `recv_with` and checking the
//! sequence. A quick look, not the benchmark (`benches/compare`).
//!
//! ```sh
//! cargo build --release -p fdring-c
//! cc -O2 -Wall -Wextra -Werror -std=c11 -I fdring-c/include -I fdring-c/tests/c \
//!     fdring-c/tests/c/stream_producer.c target/release/libfdring_c.a \
//!     -lpthread -ldl -lm -o target/release/stream_producer
//! cargo run --release -p fdring-c --example stream_rate -- target/release/stream_producer 100000000
//! ```

use std::process::Command;
use std::time::Instant;

use fdring::{Builder, Error, Sender};

const RING: usize = 1 << 16;
const BATCH: usize = 4096;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--produce") {
        return produce(args[2].parse()?);
    }
    let (Some(c_producer), Some(count)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: stream_rate PATH_TO_C_STREAM_PRODUCER COUNT");
        std::process::exit(2);
    };
    let count: u64 = count.parse()?;
    let mut c = Command::new(c_producer);
    c.arg(count.to_string());
    let mut rust = Command::new(std::env::current_exe()?);
    rust.args(["--produce", &count.to_string()]);
    for (name, command) in [("C producer", c), ("Rust producer", rust)] {
        let rate = consume(command, count)?;
        println!("{name} -> Rust consumer: {count} u64 at {rate:.0} Mitems/s");
    }
    Ok(())
}

/// Spawns `command` with a ring's sending end and receives `count` items
/// in order; returns millions of items a second, from the first item to
/// the last.
fn consume(mut command: Command, count: u64) -> Result<f64, Box<dyn std::error::Error>> {
    let (tx, mut rx) = Builder::new().capacity(RING).build::<u64>()?;
    fdring::handoff::inherit(&mut command, "FDRING_RING", tx.into_fds()?);
    let mut child = command.spawn()?;
    drop(command);
    let mut expected = 0u64;
    let mut started = None;
    loop {
        match rx.recv_with(|items: &[u64]| {
            started.get_or_insert_with(Instant::now);
            for &item in items {
                assert_eq!(item, expected, "out of order");
                expected += 1;
            }
            items.len()
        }) {
            Ok(_) => {}
            Err(Error::Disconnected) => break,
            Err(e) => return Err(e.into()),
        }
    }
    let elapsed = started.map_or(0.0, |s| s.elapsed().as_secs_f64());
    assert!(child.wait()?.success(), "the producer failed");
    assert_eq!(expected, count, "items missing");
    Ok(count as f64 / elapsed / 1e6)
}

/// The Rust producer: the same batches as the C one.
fn produce(count: u64) -> Result<(), Box<dyn std::error::Error>> {
    let mut tx = Builder::new().open_sender::<u64>(fdring::handoff::inherited("FDRING_RING")?)?;
    stream(&mut tx, count)?;
    Ok(())
}

fn stream(tx: &mut Sender<u64>, count: u64) -> Result<(), Error> {
    let mut next = 0u64;
    while next < count {
        next += tx.send_with(|slots| {
            let n = slots.len().min(BATCH).min((count - next) as usize);
            for (i, slot) in slots[..n].iter_mut().enumerate() {
                slot.write(next + i as u64);
            }
            n
        })? as u64;
    }
    Ok(())
}
