//! 1080p video through fdring frames: a child process renders 1920x1080
//! RGBA frames (a moving test pattern, each frame stamped with its number)
//! in place in the ring at a target rate, and the parent receives them in
//! place, checks every one, and can pipe them to ffmpeg.
//!
//! It shows:
//! - a `FrameSender` / `FrameReceiver` over a ring of four frames, payloads
//!   aligned to a cache line, each frame viewed as `&mut [[u8; 4]]` pixels
//!   with bytemuck while it is rendered into the ring;
//! - latest-frame-wins (`--latest`): the child *offers* frames and never
//!   waits, dropping a frame when the ring is full, and the parent takes
//!   the newest frame each time, skipping older ones, so that a slow
//!   consumer (`--slow-ms`) shows fresh frames rather than stale ones;
//! - feeding a real media tool: with `--ffmpeg FILE` (if ffmpeg is
//!   installed) the parent writes each received frame straight from the
//!   ring into ffmpeg's stdin, which encodes it into FILE.
//!
//! Every frame carries its number twice: drawn as 32 black or white
//! squares along its top edge (visible in an encoded clip), and in its
//! last 16 bytes together with a checksum of all the bytes before. The
//! parent checks the squares, the number, the checksum and the order of
//! every frame it receives; a torn frame would fail the checksum. It
//! reports frames/s, GB/s, dropped frames and the latency from commit to
//! receipt, and exits non-zero unless every frame received was intact.
//!
//! Run it with
//!
//! ```text
//! cargo run --release --example video                     # 300 frames at 60 fps
//! cargo run --release --example video -- --fps 0 --json   # as fast as it goes
//! cargo run --release --example video -- --latest --slow-ms 40 --json
//! cargo run --release --example video -- --frames 120 --ffmpeg clip.mp4
//! ```

use std::error::Error;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use fdring::{handoff, FrameReceiver, FrameSender, Sender};
use rustix::time::{clock_gettime, ClockId, Timespec};

const WIDTH: usize = 1920;
const HEIGHT: usize = 1080;
const FRAME_BYTES: usize = WIDTH * HEIGHT * 4;
/// Frames the ring holds at once.
const RING_FRAMES: usize = 4;
const ALIGN: usize = 64;
/// The stamp: 32 squares of `STAMP` pixels along the top edge, bit 0 first.
const STAMP: usize = 32;
const STAMP_BITS: usize = 32;
/// Where the child finds the ring.
const RING_VAR: &str = "FDRING_VIDEO";

type AnyResult<T> = Result<T, Box<dyn Error>>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        return match child(&args[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("video child: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let options = match Options::parse(&args) {
        Ok(options) => options,
        Err(e) => {
            eprintln!(
                "video: {e}\nusage: video [--frames N] [--fps F (0: as fast as possible)] \
                 [--latest] [--slow-ms MS] [--ffmpeg FILE] [--json]"
            );
            return ExitCode::from(2);
        }
    };
    match parent(&options) {
        Ok(summary) => {
            summary.print(&options);
            if summary.verified() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("video: {e}");
            if options.json {
                println!(
                    "{{\"example\": \"video\", \"verified\": false, \"error\": {:?}}}",
                    e.to_string()
                );
            }
            ExitCode::FAILURE
        }
    }
}

struct Options {
    frames: u64,
    fps: f64,
    latest: bool,
    slow: Duration,
    ffmpeg: Option<String>,
    json: bool,
}

impl Options {
    fn parse(args: &[String]) -> AnyResult<Options> {
        let mut options = Options {
            frames: 300,
            fps: 60.0,
            latest: false,
            slow: Duration::ZERO,
            ffmpeg: None,
            json: false,
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut value = || args.next().ok_or(format!("{arg} needs a value"));
            match arg.as_str() {
                "--frames" => options.frames = value()?.parse()?,
                "--fps" => options.fps = value()?.parse()?,
                "--latest" => options.latest = true,
                "--slow-ms" => {
                    options.slow = Duration::from_secs_f64(value()?.parse::<f64>()? / 1e3)
                }
                "--ffmpeg" => options.ffmpeg = Some(value()?.clone()),
                "--json" => options.json = true,
                other => return Err(format!("unknown argument {other}").into()),
            }
        }
        if options.frames == 0 || !options.fps.is_finite() || options.fps < 0.0 {
            return Err("--frames must be positive and --fps not negative".into());
        }
        Ok(options)
    }
}

/// The monotonic clock in nanoseconds: the same clock in both processes.
fn now_ns() -> u64 {
    let t = clock_gettime(ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

// ------------------------------------------------------------- the frames

/// Renders frame `n` into `frame` (`FRAME_BYTES` bytes, in the ring): a
/// gradient and a checkerboard moving with `n`, the stamp squares along the
/// top, and the number and checksum in the last 16 bytes.
fn render(n: u64, frame: &mut [u8]) {
    let pixels: &mut [[u8; 4]] = bytemuck::cast_slice_mut(frame);
    let shift = n as usize;
    for (y, row) in pixels.chunks_exact_mut(WIDTH).enumerate() {
        let g = (y + 2 * shift) as u8;
        for (x, pixel) in row.iter_mut().enumerate() {
            let checker = ((x + 8 * shift) / 120 + y / 120) % 2;
            *pixel = [(x + 4 * shift) as u8, g, (checker * 200) as u8 + 40, 255];
        }
        if y < STAMP {
            for bit in 0..STAMP_BITS {
                let on = (n >> bit) & 1 == 1;
                let square = &mut row[bit * STAMP..(bit + 1) * STAMP];
                square.fill(if on { [255; 4] } else { [0, 0, 0, 255] });
            }
        }
    }
    let (body, footer) = frame.split_at_mut(FRAME_BYTES - 16);
    footer[..8].copy_from_slice(&n.to_le_bytes());
    footer[8..].copy_from_slice(&checksum(body).to_le_bytes());
}

/// A position-dependent checksum of `bytes` (a multiple of 8 long), cheap
/// enough to run over every frame on both sides.
fn checksum(bytes: &[u8]) -> u64 {
    let words: &[u64] = bytemuck::cast_slice(bytes);
    let (mut sum, mut weighted) = (0u64, 0u64);
    for (i, &w) in words.iter().enumerate() {
        sum = sum.wrapping_add(w);
        weighted = weighted.wrapping_add(w.wrapping_mul(i as u64 | 1));
    }
    sum ^ weighted.rotate_left(29)
}

/// Checks a received frame; returns its number if it is intact.
fn verify(frame: &[u8]) -> Result<u64, String> {
    if frame.len() != FRAME_BYTES {
        return Err(format!("a frame of {} bytes", frame.len()));
    }
    let (body, footer) = frame.split_at(FRAME_BYTES - 16);
    let n = u64::from_le_bytes(footer[..8].try_into().unwrap());
    let sum = u64::from_le_bytes(footer[8..].try_into().unwrap());
    if checksum(body) != sum {
        return Err(format!("frame {n}: the checksum does not match (torn)"));
    }
    let pixels: &[[u8; 4]] = bytemuck::cast_slice(frame);
    let mut stamp = 0u64;
    for bit in 0..STAMP_BITS {
        // The centre of each square.
        let at = STAMP / 2 * WIDTH + bit * STAMP + STAMP / 2;
        if pixels[at] == [255; 4] {
            stamp |= 1 << bit;
        }
    }
    if stamp != n & 0xffff_ffff {
        return Err(format!("frame {n}: its drawn stamp says {stamp}"));
    }
    Ok(n)
}

// ---------------------------------------------------------------- parent

/// ffmpeg, encoding the raw frames written to its stdin.
struct Encoder {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Encoder {
    fn start(path: &str, fps: f64) -> AnyResult<Encoder> {
        let rate = if fps > 0.0 { fps } else { 60.0 };
        let spawned = Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-y"])
            .args(["-f", "rawvideo", "-pix_fmt", "rgba"])
            .args(["-s", &format!("{WIDTH}x{HEIGHT}"), "-r", &rate.to_string()])
            .args(["-i", "-", "-c:v", "libx264", "-preset", "ultrafast"])
            .args(["-pix_fmt", "yuv420p", path])
            .stdin(Stdio::piped())
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(
                    "--ffmpeg: ffmpeg is not installed (the example runs without \
                            the flag)"
                        .into(),
                )
            }
            Err(e) => return Err(format!("starting ffmpeg: {e}").into()),
        };
        let stdin = child.stdin.take();
        Ok(Encoder { child, stdin })
    }

    fn write(&mut self, frame: &[u8]) -> std::io::Result<()> {
        match &mut self.stdin {
            Some(stdin) => stdin.write_all(frame),
            None => Ok(()),
        }
    }

    fn finish(mut self) -> AnyResult<()> {
        drop(self.stdin.take());
        let status = self.child.wait()?;
        if !status.success() {
            return Err(format!("ffmpeg failed: {status}").into());
        }
        Ok(())
    }
}

fn parent(options: &Options) -> AnyResult<Summary> {
    let capacity = FrameSender::capacity_for(RING_FRAMES, FRAME_BYTES, ALIGN);
    let (tx, rx) = fdring::channel::<u8>(capacity)?;
    let mut rx = FrameReceiver::with_align(rx, ALIGN);
    let mut encoder = match &options.ffmpeg {
        Some(path) => Some(Encoder::start(path, options.fps)?),
        None => None,
    };

    let mut command = Command::new(std::env::current_exe()?);
    command
        .arg("--child")
        .args([
            options.frames.to_string(),
            options.fps.to_string(),
            u8::from(options.latest).to_string(),
        ])
        .stdout(Stdio::piped());
    handoff::inherit(&mut command, RING_VAR, tx.into_fds()?);
    let mut child = command.spawn()?;
    drop(command);
    let mut from_child = BufReader::new(child.stdout.take().ok_or("child stdout not piped")?);
    let mut line = String::new();
    from_child.read_line(&mut line)?;
    if line.trim_end() != "ready" {
        return Err(format!("the child did not start (it said {line:?})").into());
    }

    let mut latencies = Vec::with_capacity(options.frames as usize);
    let (mut numbers, mut damaged) = (Vec::with_capacity(options.frames as usize), Vec::new());
    let mut encode_error = None;
    let started = Instant::now();
    loop {
        let look = |frame: fdring::Frame<'_>| {
            let received = now_ns();
            let checked = verify(frame.bytes());
            if checked.is_ok() {
                if let Some(encoder) = encoder.as_mut().filter(|_| encode_error.is_none()) {
                    // Straight from the ring into ffmpeg's pipe.
                    if let Err(e) = encoder.write(frame.bytes()) {
                        encode_error = Some(e);
                    }
                }
            }
            // A slow display: holds the frame, as if showing it.
            std::thread::sleep(options.slow);
            (received.saturating_sub(frame.tag()), checked)
        };
        let got = if options.latest {
            rx.recv_latest_with(look)
        } else {
            rx.recv_frame_with(look)
        };
        match got {
            Ok((latency, Ok(n))) => {
                latencies.push(latency);
                numbers.push(n);
            }
            Ok((_, Err(why))) => damaged.push(why),
            Err(fdring::Error::Disconnected) => break,
            Err(e) => return Err(e.into()),
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    line.clear();
    from_child.read_line(&mut line)?;
    let status = child.wait()?;
    if let Some(e) = encode_error {
        return Err(format!("writing to ffmpeg: {e}").into());
    }
    if let Some(encoder) = encoder {
        encoder.finish()?;
    }
    let stats = rx.stats();
    Ok(Summary {
        seconds,
        latencies,
        numbers,
        damaged,
        skipped: stats.skipped,
        wakeups: stats.ring.wakeups,
        child: ChildReport::parse(&line),
        child_succeeded: status.success(),
        frames: options.frames,
    })
}

struct Summary {
    frames: u64,
    seconds: f64,
    latencies: Vec<u64>,
    /// The numbers of the intact frames received, in order.
    numbers: Vec<u64>,
    damaged: Vec<String>,
    skipped: u64,
    wakeups: u64,
    child: Option<ChildReport>,
    child_succeeded: bool,
}

impl Summary {
    fn in_order(&self) -> bool {
        self.numbers.windows(2).all(|w| w[0] < w[1])
    }

    /// Frames lost between the child's renderer and the parent's checks:
    /// the child's drops and the parent's skips, which together must
    /// account for every frame not received.
    fn accounted(&self) -> bool {
        self.child.as_ref().is_some_and(|c| {
            c.committed + c.dropped == self.frames
                && self.numbers.len() as u64 + self.skipped == c.committed
        })
    }

    fn verified(&self) -> bool {
        self.damaged.is_empty() && self.in_order() && self.accounted() && self.child_succeeded
    }

    fn percentiles(&self) -> [f64; 3] {
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        if sorted.is_empty() {
            return [0.0; 3];
        }
        let at = |q: f64| {
            let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
            sorted[i] as f64 / 1e3
        };
        [at(0.5), at(0.99), at(1.0)]
    }

    fn print(&self, options: &Options) {
        let received = self.numbers.len() as u64;
        let fps = received as f64 / self.seconds;
        let gbps = (received * FRAME_BYTES as u64) as f64 / self.seconds / 1e9;
        let [p50, p99, max] = self.percentiles();
        let dropped = self.child.as_ref().map_or(0, |c| c.dropped);
        let target = if options.fps > 0.0 {
            format!("{} fps", options.fps)
        } else {
            String::from("as fast as possible")
        };
        println!(
            "fdring video: {} frames of {WIDTH}x{HEIGHT} RGBA ({FRAME_BYTES} bytes) rendered in \
             place at {target}, ring of {RING_FRAMES} frames{}{}",
            self.frames,
            if options.latest {
                ", latest-frame-wins"
            } else {
                ""
            },
            if options.slow.is_zero() {
                String::new()
            } else {
                format!(", consumer holds each frame {:?}", options.slow)
            }
        );
        println!(
            "  received {received} frames in {:.2} s: {fps:.1} frames/s, {gbps:.2} GB/s",
            self.seconds
        );
        println!(
            "  dropped: {} ({dropped} by the sender, ring full; {} skipped by the receiver for a newer one)",
            dropped + self.skipped,
            self.skipped
        );
        println!("  latency, commit to receipt: p50 {p50:.0} µs, p99 {p99:.0} µs, max {max:.0} µs");
        println!(
            "  checked: {} intact, {} damaged, in order: {}, every frame accounted for: {}; verified: {}",
            received,
            self.damaged.len(),
            self.in_order(),
            self.accounted(),
            self.verified()
        );
        for why in self.damaged.iter().take(5) {
            println!("  damaged: {why}");
        }
        if let Some(path) = &options.ffmpeg {
            println!("  ffmpeg encoded the frames received into {path}");
        }
        if options.json {
            println!(
                "{{\"example\": \"video\", \"width\": {WIDTH}, \"height\": {HEIGHT}, \
                 \"frames\": {}, \"target_fps\": {}, \"latest\": {}, \"slow_ms\": {}, \
                 \"received\": {received}, \"seconds\": {:.3}, \"fps\": {fps:.1}, \
                 \"gb_per_s\": {gbps:.3}, \"dropped\": {}, \"sender_dropped\": {dropped}, \
                 \"receiver_skipped\": {}, \"latency_us\": {{\"p50\": {p50:.0}, \"p99\": {p99:.0}, \
                 \"max\": {max:.0}}}, \"damaged\": {}, \"wakeups\": {}, \"ffmpeg\": {}, \
                 \"verified\": {}}}",
                self.frames,
                options.fps,
                options.latest,
                options.slow.as_secs_f64() * 1e3,
                self.seconds,
                dropped + self.skipped,
                self.skipped,
                self.damaged.len(),
                self.wakeups,
                options
                    .ffmpeg
                    .as_ref()
                    .map_or(String::from("null"), |p| format!("{p:?}")),
                self.verified()
            );
        }
    }
}

/// The child's last line: `done committed=N dropped=N`.
struct ChildReport {
    committed: u64,
    dropped: u64,
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
            dropped: value("dropped")?,
        })
    }
}

// ----------------------------------------------------------------- child

/// Renders the frames in place at the target rate; in latest-frame-wins
/// mode it offers them and never waits.
fn child(args: &[String]) -> AnyResult<()> {
    let [frames, fps, latest] = args else {
        return Err("usage: --child FRAMES FPS LATEST".into());
    };
    let (frames, fps, latest): (u64, f64, bool) = (frames.parse()?, fps.parse()?, latest == "1");
    let tx = Sender::<u8>::from_fds(handoff::inherited(RING_VAR)?)?;
    let mut tx = FrameSender::with_align(tx, ALIGN);
    println!("ready");
    std::io::stdout().flush()?;
    let start = now_ns();
    for n in 0..frames {
        if fps > 0.0 {
            let due = start + (n as f64 * 1e9 / fps) as u64;
            let wake = Timespec {
                tv_sec: (due / 1_000_000_000) as i64,
                tv_nsec: (due % 1_000_000_000) as i64,
            };
            let _ = rustix::thread::clock_nanosleep_absolute(ClockId::Monotonic, &wake);
        }
        let draw = |frame: &mut fdring::FrameMut<'_>| {
            render(n, frame);
            // The commit time, taken last.
            frame.set_tag(now_ns());
            FRAME_BYTES
        };
        if latest {
            tx.offer_frame_with(FRAME_BYTES, draw)?;
        } else {
            tx.send_frame_with(FRAME_BYTES, draw)?;
        }
    }
    let stats = tx.stats();
    drop(tx);
    println!("done committed={} dropped={}", stats.frames, stats.dropped);
    Ok(())
}
