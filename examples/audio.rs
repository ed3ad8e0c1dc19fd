//! Real-time audio through fdring frames: a child process produces 48 kHz
//! stereo `f32` periods (256 frames each, a logarithmic sine sweep from
//! 20 Hz to 20 kHz) on the audio clock, one every 5.33 ms, and the parent
//! receives them with blocking receives, as an audio callback would.
//!
//! It shows:
//! - a `FrameSender` / `FrameReceiver` over a ring of bytes, with payloads
//!   aligned to a cache line;
//! - writing each period in place, viewed as `&mut [[f32; 2]]` with
//!   bytemuck, and the tag set last to the commit time;
//! - reading each period in place as `&[[f32; 2]]`, no copy.
//!
//! The parent checks every sample of every period against the sweep it
//! expects, and reports the period latency (commit in the child to
//! receipt in the parent, on the shared monotonic clock: p50, p99, max) and
//! the xruns: periods that reached the parent more than one period after
//! they were due (an output with one period of buffering would have run
//! dry), and periods the child committed late. It exits non-zero unless
//! every period arrived intact and in order.
//!
//! Run it with
//!
//! ```text
//! cargo run --release --example audio                        # 10 s
//! cargo run --release --example audio -- --seconds 30 --json # last line: JSON
//! ```

use std::error::Error;
use std::io::{BufRead, BufReader};
use std::process::{Command, ExitCode, Stdio};

use fdring::{handoff, FrameReceiver, FrameSender, Sender};
use rustix::time::{clock_gettime, ClockId, Timespec};

const RATE: u32 = 48_000;
const CHANNELS: usize = 2;
/// Frames (sample pairs) per period.
const PERIOD: usize = 256;
const PERIOD_BYTES: usize = PERIOD * CHANNELS * std::mem::size_of::<f32>();
/// Periods the ring holds: 85 ms of audio.
const RING_PERIODS: usize = 16;
/// Payload alignment: a cache line, so that each period can be processed
/// with aligned SIMD loads.
const ALIGN: usize = 64;
/// The sweep's lowest and highest frequency in Hz.
const SWEEP: (f64, f64) = (20.0, 20_000.0);
/// Where the child finds the ring.
const RING_VAR: &str = "FDRING_AUDIO";

type AnyResult<T> = Result<T, Box<dyn Error>>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        return match child(&args[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("audio child: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let options = match Options::parse(&args) {
        Ok(options) => options,
        Err(e) => {
            eprintln!("audio: {e}\nusage: audio [--seconds N] [--json]");
            return ExitCode::from(2);
        }
    };
    match parent(&options) {
        Ok(summary) => {
            summary.print(options.json);
            if summary.verified() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("audio: {e}");
            if options.json {
                println!(
                    "{{\"example\": \"audio\", \"verified\": false, \"error\": {:?}}}",
                    e.to_string()
                );
            }
            ExitCode::FAILURE
        }
    }
}

struct Options {
    seconds: f64,
    json: bool,
}

impl Options {
    fn parse(args: &[String]) -> AnyResult<Options> {
        let mut options = Options {
            seconds: 10.0,
            json: false,
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--json" => options.json = true,
                "--seconds" => {
                    options.seconds = args.next().ok_or("--seconds needs a value")?.parse()?;
                    if !options.seconds.is_finite() || options.seconds <= 0.0 {
                        return Err("--seconds must be positive".into());
                    }
                }
                other => return Err(format!("unknown argument {other}").into()),
            }
        }
        Ok(options)
    }

    fn periods(&self) -> u64 {
        (self.seconds * f64::from(RATE) / PERIOD as f64).ceil() as u64
    }
}

/// The monotonic clock in nanoseconds: the same clock in both processes.
fn now_ns() -> u64 {
    let t = clock_gettime(ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// When period `k` is due: the audio clock, started at `start_ns`.
fn due_ns(start_ns: u64, k: u64) -> u64 {
    start_ns + k * PERIOD as u64 * 1_000_000_000 / u64::from(RATE)
}

const PERIOD_NS: u64 = PERIOD as u64 * 1_000_000_000 / RATE as u64;

/// Writes period `k` of the sweep (lasting `seconds`) into `out`: the left
/// channel a sine, the right the same sine a quarter turn later.
fn render(k: u64, seconds: f64, out: &mut [[f32; 2]]) {
    let (f0, f1) = SWEEP;
    let octaves = (f1 / f0).ln();
    for (i, frame) in out.iter_mut().enumerate() {
        let t = (k * PERIOD as u64 + i as u64) as f64 / f64::from(RATE);
        // Phase of an exponential sweep: 2π f0 T / ln(f1/f0) (e^(t/T ln(f1/f0)) - 1).
        let phase =
            std::f64::consts::TAU * f0 * seconds / octaves * ((t / seconds * octaves).exp() - 1.0);
        *frame = [(0.5 * phase.sin()) as f32, (0.5 * phase.cos()) as f32];
    }
}

// ---------------------------------------------------------------- parent

fn parent(options: &Options) -> AnyResult<Summary> {
    let periods = options.periods();
    let capacity = FrameSender::capacity_for(RING_PERIODS, PERIOD_BYTES, ALIGN);
    let (tx, rx) = fdring::channel::<u8>(capacity)?;
    let mut rx = FrameReceiver::with_align(rx, ALIGN);

    // The audio clock starts a little later, once the child runs.
    let start_ns = now_ns() + 100_000_000;
    let mut command = Command::new(std::env::current_exe()?);
    command
        .arg("--child")
        .args([
            start_ns.to_string(),
            periods.to_string(),
            options.seconds.to_string(),
        ])
        .stdout(Stdio::piped());
    handoff::inherit(&mut command, RING_VAR, tx.into_fds()?);
    let mut child = command.spawn()?;
    // Close the parent's copies of the child's fds: if the child dies, the
    // receiver's wake-up socket hangs up and `recv` returns Disconnected.
    drop(command);

    let mut latencies = Vec::with_capacity(periods as usize);
    let mut expected = vec![[0f32; 2]; PERIOD];
    let (mut xruns, mut bad) = (0u64, Vec::new());
    for k in 0..periods {
        render(k, options.seconds, &mut expected);
        let checked = rx.recv_frame_with(|frame| {
            let received = now_ns();
            let samples: &[[f32; 2]] = bytemuck::cast_slice(frame.bytes());
            (received, frame.tag(), samples == expected.as_slice())
        });
        let (received, committed, intact) = match checked {
            Ok(checked) => checked,
            Err(e) => return Err(format!("period {k}: {e}").into()),
        };
        latencies.push(received.saturating_sub(committed));
        if !intact {
            bad.push(k);
        }
        // Paced by the audio clock: a period that arrives more than one
        // period after it was due is an underrun of the output.
        if received > due_ns(start_ns, k) + PERIOD_NS {
            xruns += 1;
        }
    }
    let end = rx.recv_frame_with(|frame| frame.len());
    let stats = rx.stats();
    let mut from_child = BufReader::new(child.stdout.take().ok_or("child stdout not piped")?);
    let mut line = String::new();
    from_child.read_line(&mut line)?;
    let status = child.wait()?;
    Ok(Summary {
        periods,
        seconds: options.seconds,
        latencies,
        xruns,
        bad,
        ended: matches!(end, Err(fdring::Error::Disconnected)),
        wakeups: stats.ring.wakeups,
        sleeps: stats.ring.sleeps,
        child: ChildReport::parse(&line),
        child_succeeded: status.success(),
    })
}

struct Summary {
    periods: u64,
    seconds: f64,
    latencies: Vec<u64>,
    xruns: u64,
    bad: Vec<u64>,
    ended: bool,
    wakeups: u64,
    sleeps: u64,
    child: Option<ChildReport>,
    child_succeeded: bool,
}

impl Summary {
    fn verified(&self) -> bool {
        self.bad.is_empty()
            && self.ended
            && self.latencies.len() as u64 == self.periods
            && self.child_succeeded
            && self
                .child
                .as_ref()
                .is_some_and(|c| c.committed == self.periods)
    }

    /// p50, p99 and max latency in microseconds.
    fn percentiles(&self) -> [f64; 3] {
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        let at = |q: f64| {
            let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
            sorted[i] as f64 / 1000.0
        };
        if sorted.is_empty() {
            return [0.0; 3];
        }
        [at(0.50), at(0.99), at(1.0)]
    }

    fn print(&self, json: bool) {
        let [p50, p99, max] = self.percentiles();
        let late = self.child.as_ref().map_or(0, |c| c.late);
        let (child_wakeups, child_sleeps) = self
            .child
            .as_ref()
            .map_or((0, 0), |c| (c.wakeups, c.sleeps));
        println!(
            "fdring audio: {} periods of {PERIOD} stereo f32 frames at {RATE} Hz \
             ({PERIOD_BYTES} bytes, one every {:.2} ms), {:.1} s of a {}-{} Hz sweep",
            self.periods,
            PERIOD_NS as f64 / 1e6,
            self.seconds,
            SWEEP.0,
            SWEEP.1
        );
        println!("  period latency, commit to receipt: p50 {p50:.1} µs, p99 {p99:.1} µs, max {max:.1} µs");
        println!(
            "  xruns: {} (periods received more than one period late), {late} committed late by the child",
            self.xruns
        );
        println!(
            "  wake-ups sent: child {child_wakeups}, parent {}; times asleep: parent {}, child {child_sleeps}",
            self.wakeups, self.sleeps
        );
        println!(
            "  every sample checked: {} periods intact, {} damaged; verified: {}",
            self.latencies.len() - self.bad.len(),
            self.bad.len(),
            self.verified()
        );
        if json {
            println!(
                "{{\"example\": \"audio\", \"rate\": {RATE}, \"channels\": {CHANNELS}, \
                 \"period_frames\": {PERIOD}, \"periods\": {}, \"seconds\": {}, \
                 \"latency_us\": {{\"p50\": {p50:.1}, \"p99\": {p99:.1}, \"max\": {max:.1}}}, \
                 \"xruns\": {}, \"late_commits\": {late}, \"damaged\": {}, \
                 \"wakeups\": {{\"parent\": {}, \"child\": {child_wakeups}}}, \
                 \"sleeps\": {{\"parent\": {}, \"child\": {child_sleeps}}}, \"verified\": {}}}",
                self.periods,
                self.seconds,
                self.xruns,
                self.bad.len(),
                self.wakeups,
                self.sleeps,
                self.verified()
            );
        }
    }
}

/// The child's last line: `done committed=N late=N wakeups=N sleeps=N`.
struct ChildReport {
    committed: u64,
    late: u64,
    wakeups: u64,
    sleeps: u64,
}

impl ChildReport {
    fn parse(line: &str) -> Option<ChildReport> {
        let mut words = line.split_whitespace();
        if words.next() != Some("done") {
            return None;
        }
        let mut value = |key: &str| {
            words
                .next()?
                .strip_prefix(key)?
                .strip_prefix('=')?
                .parse()
                .ok()
        };
        Some(ChildReport {
            committed: value("committed")?,
            late: value("late")?,
            wakeups: value("wakeups")?,
            sleeps: value("sleeps")?,
        })
    }
}

// ----------------------------------------------------------------- child

/// Produces the periods on the audio clock: sleeps until each is due,
/// renders it in place, stamps it with the commit time and commits it.
fn child(args: &[String]) -> AnyResult<()> {
    let [start_ns, periods, seconds] = args else {
        return Err("usage: --child START_NS PERIODS SECONDS".into());
    };
    let (start_ns, periods, seconds): (u64, u64, f64) =
        (start_ns.parse()?, periods.parse()?, seconds.parse()?);
    let tx = Sender::<u8>::from_fds(handoff::inherited(RING_VAR)?)?;
    let mut tx = FrameSender::with_align(tx, ALIGN);
    let mut late = 0;
    for k in 0..periods {
        let due = due_ns(start_ns, k);
        let wake = Timespec {
            tv_sec: (due / 1_000_000_000) as i64,
            tv_nsec: (due % 1_000_000_000) as i64,
        };
        // EINTR only shortens the sleep; the period is then early, not lost.
        let _ = rustix::thread::clock_nanosleep_absolute(ClockId::Monotonic, &wake);
        tx.send_frame_with(PERIOD_BYTES, |frame| {
            render(k, seconds, bytemuck::cast_slice_mut(frame.bytes_mut()));
            frame.set_tag(now_ns());
            PERIOD_BYTES
        })?;
        if now_ns() > due + PERIOD_NS / 2 {
            late += 1;
        }
    }
    let stats = tx.stats();
    drop(tx);
    println!(
        "done committed={} late={late} wakeups={} sleeps={}",
        stats.frames, stats.ring.wakeups, stats.ring.sleeps
    );
    Ok(())
}
