//! Helpers shared by the integration tests: sequence-numbered items, stream
//! drivers over every send/recv variant, threads joined with a deadline, and
//! child processes that re-execute the test binary.
#![allow(dead_code)]

use std::collections::HashMap;
use std::fmt::Debug;
use std::io::{BufRead, BufReader, Read};
use std::mem::MaybeUninit;
use std::panic::{self, AssertUnwindSafe};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytemuck::Pod;
use fdring::{Error, Receiver, Sender};

/// A generous bound for anything that must not hang: no test asserts on
/// speed, only that a blocking call comes back at all.
pub const HANG: Duration = Duration::from_secs(60);

/// The bound within which a dead or departed peer must be noticed.
pub const NOTICE: Duration = Duration::from_secs(10);

/// The timeout given to the `_timeout` calls of a stream: never reached.
pub const LONG: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// Items

/// An item type whose value encodes its position in the stream, so that a
/// receiver can tell a gap, a duplicate or a torn item.
pub trait Seq: Pod + PartialEq + Debug + Send + 'static {
    /// A name for the type, to tell a child process which to use.
    const NAME: &'static str;
    /// The item at position `i`.
    fn seq(i: u64) -> Self;
}

impl Seq for u64 {
    const NAME: &'static str = "u64";
    fn seq(i: u64) -> u64 {
        i
    }
}

/// 12 bytes, align 4: not a power of two, so the ring's capacity and its
/// wrap are not aligned with the item count.
impl Seq for [u32; 3] {
    const NAME: &'static str = "u32x3";
    fn seq(i: u64) -> [u32; 3] {
        [i as u32, (i >> 32) as u32, !(i as u32).rotate_left(7)]
    }
}

/// 12 bytes, align 1.
impl Seq for [u8; 12] {
    const NAME: &'static str = "u8x12";
    fn seq(i: u64) -> [u8; 12] {
        let b = i.to_le_bytes();
        [
            b[0],
            b[1],
            b[2],
            b[3],
            b[4],
            b[5],
            b[6],
            b[7],
            b[0] ^ 0x5a,
            b[1] ^ 0xa5,
            b[2] ^ 0x3c,
            b[3] ^ 0xc3,
        ]
    }
}

/// A tiny xorshift generator: batch sizes and kill points vary from run to
/// run, and the seed is printed on failure so a run can be replayed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A value in `1..=max` (`max >= 1`).
    pub fn upto(&mut self, max: usize) -> usize {
        1 + (self.next_u64() % max as u64) as usize
    }

    /// A value in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo)
    }

    /// How many of `available` slots or items a step takes: half of the
    /// time all of them, otherwise a random part, so that runs end at odd
    /// places and cross the wrap anywhere.
    pub fn take(&mut self, available: usize) -> usize {
        if self.next_u64() & 1 == 0 {
            available
        } else {
            self.upto(available)
        }
    }
}

/// A seed that differs from run to run (or the one in `FDRING_TEST_SEED`).
pub fn seed() -> u64 {
    if let Some(seed) = std::env::var("FDRING_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return seed;
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    now.as_nanos() as u64 ^ u64::from(std::process::id()).rotate_left(32)
}

// ---------------------------------------------------------------------------
// Streams

/// Which calls a side of a stream uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `send_with` / `recv_with`, in batches of random size.
    With,
    /// `send_with_timeout` / `recv_with_timeout` with a timeout never hit.
    WithTimeout,
    /// `send` / `recv`, one item at a time.
    Single,
    /// `send_slice` / `recv_slice`.
    Slice,
    /// `try_send_with` / `try_recv_with`, spinning while full or empty.
    TryWith,
    /// `try_send` / `try_recv`.
    TrySingle,
    /// `try_send_slice` / `try_recv_slice`.
    TrySlice,
}

impl Api {
    pub fn blocking(self) -> bool {
        matches!(
            self,
            Api::With | Api::WithTimeout | Api::Single | Api::Slice
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            Api::With => "with",
            Api::WithTimeout => "with_timeout",
            Api::Single => "single",
            Api::Slice => "slice",
            Api::TryWith => "try_with",
            Api::TrySingle => "try_single",
            Api::TrySlice => "try_slice",
        }
    }

    pub fn parse(name: &str) -> Api {
        [
            Api::With,
            Api::WithTimeout,
            Api::Single,
            Api::Slice,
            Api::TryWith,
            Api::TrySingle,
            Api::TrySlice,
        ]
        .into_iter()
        .find(|api| api.name() == name)
        .unwrap_or_else(|| panic!("unknown api {name:?}"))
    }
}

/// The largest batch a slice step builds.
const MAX_SLICE: usize = 3000;

/// What a busy-polling side does between two attempts that found the ring
/// full or empty: `spin_loop`, and now and then a yield, so that two
/// spinning sides on a two-core machine shared with other tests do not
/// starve the peer they are waiting for.
#[derive(Debug, Default)]
pub struct Backoff(u32);

impl Backoff {
    pub fn snooze(&mut self) {
        self.0 += 1;
        if self.0 % 256 == 0 {
            thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }

    pub fn reset(&mut self) {
        self.0 = 0;
    }
}

/// Writes the items `next..` into `slots`, as many as `rng` picks (at most
/// `left`), and returns how many.
fn fill_seq<T: Seq>(slots: &mut [MaybeUninit<T>], next: u64, left: u64, rng: &mut Rng) -> usize {
    let n = rng
        .take(slots.len())
        .min(usize::try_from(left).unwrap_or(usize::MAX));
    for (k, slot) in slots[..n].iter_mut().enumerate() {
        slot.write(T::seq(next + k as u64));
    }
    n
}

/// Checks that `items` are the items `next..`.
#[track_caller]
pub fn check_seq<T: Seq>(items: &[T], next: u64) {
    for (k, item) in items.iter().enumerate() {
        let at = next + k as u64;
        if *item != T::seq(at) {
            panic!(
                "item {at} is {item:?}, expected {:?} (the stream lost, repeated or tore an item)",
                T::seq(at)
            );
        }
    }
}

/// Sends the items `0..count` (or forever if `None`) with `api` and
/// returns how many were sent, or how many were sent and the error that
/// stopped the stream.
pub fn produce<T: Seq>(
    tx: &mut Sender<T>,
    api: Api,
    count: Option<u64>,
    seed: u64,
) -> Result<u64, (u64, Error)> {
    let mut rng = Rng::new(seed);
    let mut backoff = Backoff::default();
    let mut buf: Vec<T> = Vec::new();
    let mut next = 0u64;
    let end = count.unwrap_or(u64::MAX);
    while next < end {
        let left = end - next;
        let slice = |rng: &mut Rng, buf: &mut Vec<T>| {
            let n = rng
                .upto(MAX_SLICE)
                .min(left.try_into().unwrap_or(usize::MAX));
            buf.clear();
            buf.extend((next..next + n as u64).map(T::seq));
        };
        let sent = match api {
            Api::With => tx.send_with(|s| fill_seq(s, next, left, &mut rng)),
            Api::WithTimeout => tx.send_with_timeout(LONG, |s| fill_seq(s, next, left, &mut rng)),
            Api::TryWith => tx.try_send_with(|s| fill_seq(s, next, left, &mut rng)),
            Api::Single => tx.send(T::seq(next)).map(|()| 1),
            Api::TrySingle => tx.try_send(T::seq(next)).map(|()| 1),
            Api::Slice => {
                slice(&mut rng, &mut buf);
                tx.send_slice(&buf).map(|()| buf.len())
            }
            Api::TrySlice => {
                slice(&mut rng, &mut buf);
                tx.try_send_slice(&buf)
            }
        };
        match sent {
            Ok(0) => panic!("a send call at item {next} returned 0 items"),
            Ok(n) => {
                next += n as u64;
                backoff.reset();
            }
            Err(Error::Full) if !api.blocking() => backoff.snooze(),
            Err(e) => return Err((next, e)),
        }
    }
    Ok(next)
}

/// Receives with `api` until an error other than `Empty` (for the `try_`
/// calls), checking that the items are `0, 1, 2, ...`; calls `progress`
/// with the count after every step. Returns the count and the error that
/// ended the stream.
pub fn consume<T: Seq>(
    rx: &mut Receiver<T>,
    api: Api,
    seed: u64,
    mut progress: impl FnMut(u64),
) -> (u64, Error) {
    let mut rng = Rng::new(seed ^ 0x5555);
    let mut backoff = Backoff::default();
    let mut buf: Vec<T> = vec![T::zeroed(); MAX_SLICE];
    let mut next = 0u64;
    loop {
        let take = |items: &[T], rng: &mut Rng| {
            let n = rng.take(items.len());
            check_seq(&items[..n], next);
            n
        };
        let got = match api {
            Api::With => rx.recv_with(|items| take(items, &mut rng)),
            Api::WithTimeout => rx.recv_with_timeout(LONG, |items| take(items, &mut rng)),
            Api::TryWith => rx.try_recv_with(|items| take(items, &mut rng)),
            Api::Single => rx.recv().map(|item| {
                check_seq(&[item], next);
                1
            }),
            Api::TrySingle => rx.try_recv().map(|item| {
                check_seq(&[item], next);
                1
            }),
            Api::Slice => {
                let n = rng.upto(MAX_SLICE);
                let got = rx.recv_slice(&mut buf[..n]);
                if let Ok(got) = got {
                    check_seq(&buf[..got], next);
                }
                got
            }
            Api::TrySlice => {
                let n = rng.upto(MAX_SLICE);
                let got = rx.try_recv_slice(&mut buf[..n]);
                if let Ok(got) = got {
                    check_seq(&buf[..got], next);
                }
                got
            }
        };
        match got {
            Ok(0) => panic!("a recv call at item {next} returned 0 items"),
            Ok(n) => {
                next += n as u64;
                backoff.reset();
                progress(next);
            }
            Err(Error::Empty) if !api.blocking() => backoff.snooze(),
            Err(e) => return (next, e),
        }
    }
}

// ---------------------------------------------------------------------------
// Threads with a deadline

/// A thread whose result is awaited with a deadline, so that a hang fails
/// the test instead of stalling the suite.
pub struct Bounded<R> {
    name: String,
    done: mpsc::Receiver<thread::Result<R>>,
}

pub fn spawn_bounded<R, F>(name: &str, f: F) -> Bounded<R>
where
    R: Send + 'static,
    F: FnOnce() -> R + Send + 'static,
{
    let (tx, done) = mpsc::channel();
    thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let _ = tx.send(panic::catch_unwind(AssertUnwindSafe(f)));
        })
        .expect("spawning a thread");
    Bounded {
        name: name.to_owned(),
        done,
    }
}

impl<R> Bounded<R> {
    /// The thread's result; re-raises its panic; panics if it is not done
    /// within `limit`.
    #[track_caller]
    pub fn join_within(self, limit: Duration) -> R {
        match self.done.recv_timeout(limit) {
            Ok(Ok(r)) => r,
            Ok(Err(payload)) => panic::resume_unwind(payload),
            Err(_) => panic!("{} did not finish within {limit:?}: it hangs", self.name),
        }
    }
}

// ---------------------------------------------------------------------------
// Child processes

/// The environment variable naming a child's role.
pub const CHILD_ENV: &str = "FDRING_TEST_CHILD";
/// The environment variable a ring is inherited under.
pub const RING_ENV: &str = "FDRING_TEST_RING";
/// The prefix of the stdout lines a child reports with.
pub const MARK: &str = "@fdring ";

/// Prints a report line for the parent.
pub fn report(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{MARK}{line}");
    let _ = out.flush();
}

/// Reads a child's configuration variable.
pub fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Kills this process if it is still running after `limit`: a child never
/// outlives a failed test for long.
pub fn start_watchdog(limit: Duration) {
    thread::spawn(move || {
        thread::sleep(limit);
        eprintln!("fdring test child: watchdog fired after {limit:?}, exiting");
        std::process::exit(86);
    });
}

/// Parses `key=value` words of a report line.
pub fn fields(line: &str) -> HashMap<String, String> {
    line.split_whitespace()
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// A child process running this test binary in a role, with its stdout
/// report lines and stderr collected by threads. Dropping it kills the
/// child if it still runs.
pub struct ChildProc {
    pub child: Child,
    role: String,
    lines: mpsc::Receiver<String>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

/// A command that runs this test binary's `child_entry` in `role`.
pub fn child_command(role: &str) -> Command {
    let mut command = Command::new(std::env::current_exe().expect("current_exe"));
    command
        .args([
            "--ignored",
            "--exact",
            "child_entry",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, role);
    command
}

impl ChildProc {
    /// Spawns the test binary's `child_entry` in `role`; `configure` adds
    /// the hand-off, variables and stdin. The `Command` is dropped right
    /// after the spawn, closing the parent's copies of the child's fds.
    pub fn spawn(role: &str, configure: impl FnOnce(&mut Command)) -> ChildProc {
        let mut command = child_command(role);
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        configure(&mut command);
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawning child {role}: {e}"));
        drop(command);
        let (line_tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        let out_reader = thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // libtest may have printed "test child_entry ... " first.
                if let Some(at) = line.find(MARK) {
                    if line_tx.send(line[at + MARK.len()..].to_owned()).is_err() {
                        break;
                    }
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut child_stderr = child.stderr.take().expect("piped stderr");
        let sink = Arc::clone(&stderr);
        let err_reader = thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = child_stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        ChildProc {
            child,
            role: role.to_owned(),
            lines,
            stderr,
            readers: vec![out_reader, err_reader],
        }
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// What the child wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The next report line starting with `word`, waiting at most
    /// `within`; panics (with the child's stderr) if none comes.
    #[track_caller]
    pub fn expect_line(&mut self, word: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.split_whitespace().next() == Some(word) => return line,
                Ok(_) => continue,
                Err(e) => {
                    // Give stderr a moment to arrive if the child died.
                    thread::sleep(Duration::from_millis(100));
                    panic!(
                        "child {} sent no {word:?} line within {within:?} ({e}); stderr:\n{}",
                        self.role,
                        self.stderr()
                    )
                }
            }
        }
    }

    /// Waits for the child to exit, at most `within`; panics (killing it)
    /// if it does not.
    #[track_caller]
    pub fn wait_within(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "child {} did not exit within {within:?}; stderr:\n{}",
                    self.role,
                    self.stderr()
                );
            }
            thread::sleep(Duration::from_millis(2));
        }
    }

    /// Waits for a successful exit and for the output readers to finish.
    #[track_caller]
    pub fn finish(mut self) {
        let status = self.wait_within(HANG);
        for reader in self.readers.drain(..) {
            reader.join().expect("output reader");
        }
        assert!(
            status.success(),
            "child {} failed with {status}; stderr:\n{}",
            self.role,
            self.stderr()
        );
    }

    /// Waits for the output readers to see the end of the child's output
    /// (after it was killed and waited for).
    pub fn join_readers(&mut self) {
        for reader in self.readers.drain(..) {
            reader.join().expect("output reader");
        }
    }

    /// Sends SIGKILL.
    pub fn kill(&mut self) {
        self.child.kill().expect("kill");
    }
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The fds open in this process, with what they point to.
pub fn open_fds() -> Vec<(String, String)> {
    let mut fds: Vec<(String, String)> = std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let target = std::fs::read_link(entry.path()).ok()?;
            Some((
                entry.file_name().to_string_lossy().into_owned(),
                target.to_string_lossy().into_owned(),
            ))
        })
        .collect();
    fds.sort();
    fds
}
