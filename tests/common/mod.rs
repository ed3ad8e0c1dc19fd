//! Helpers shared by the integration tests: sequence-numbered items, stream
//! drivers over every send/recv variant, threads joined with a deadline,
//! child processes that re-execute the test binary, the header words read
//! from outside the crate, snapshots of the fds and mappings a process
//! holds (leak checks), and children killed with SIGKILL at a random moment
//! (the crash tests, and the leak checks that kill children).
#![allow(dead_code)]

use std::collections::HashMap;
use std::fmt::Debug;
use std::io::{BufRead, BufReader, Read};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::panic::{self, AssertUnwindSafe};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytemuck::Pod;
use fdring::{channel, handoff, Error, Fds, Liveness, Receiver, Sender};

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
///
/// Returns once the watchdog thread is running and has allocated: what a
/// thread sets up as it starts (its alternate signal stack, a malloc arena
/// on its first allocation) is then mapped already, so that a leak check
/// right after does not see those mappings appear.
pub fn start_watchdog(limit: Duration) {
    let (started, running) = mpsc::sync_channel(0);
    thread::spawn(move || {
        let message = format!("fdring test child: watchdog fired after {limit:?}, exiting");
        let _ = started.send(());
        thread::sleep(limit);
        eprintln!("{message}");
        std::process::exit(86);
    });
    let _ = running.recv();
}

/// Parses `key=value` words of a report line.
pub fn fields(line: &str) -> HashMap<String, String> {
    line.split_whitespace()
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// The number after `key=` in a report line.
#[track_caller]
pub fn number(line: &str, key: &str) -> u64 {
    fields(line)
        .get(key)
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
        .parse()
        .unwrap_or_else(|_| panic!("{key}= is not a number in {line:?}"))
}

/// The word after `key=` in a report line.
#[track_caller]
pub fn word_of<'a>(line: &'a str, key: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key).and_then(|w| w.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}

/// The `Debug` of an error a report line ends with, after ` err=`.
#[track_caller]
pub fn err_of(line: &str) -> &str {
    line.split_once(" err=")
        .unwrap_or_else(|| panic!("no error in {line:?}"))
        .1
}

/// A service name no other test (or run) uses at the same time:
/// `prefix`, this process, a counter and `what`.
pub fn unique_name(prefix: &str, what: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}-{what}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
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

    /// Writes the line `order` to the child's stdin, which `configure`
    /// made a pipe (`Stdio::piped()`); the child reads it from
    /// [`orders`].
    #[track_caller]
    pub fn order(&mut self, order: &str) {
        use std::io::Write;
        let stdin = self
            .child
            .stdin
            .as_mut()
            .unwrap_or_else(|| panic!("child {} has no piped stdin", self.role));
        writeln!(stdin, "{order}")
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("ordering child {} to {order:?}: {e}", self.role));
    }
}

/// The lines the parent writes to this child's stdin ([`ChildProc::order`]),
/// until it closes it.
pub fn orders() -> impl Iterator<Item = String> {
    std::io::stdin().lines().map_while(Result::ok)
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

// ---------------------------------------------------------------------------
// Settings from the environment

/// The number in the environment variable `name` (underscores allowed, as
/// in `1_000_000`), or `default` if it is not set.
pub fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(value) => value
            .replace('_', "")
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?} is not a number")),
        Err(_) => default,
    }
}

/// Sleeps for 0..`max_us` microseconds once in `one_in` calls on average,
/// so that the peer of this side finds the ring empty or full and blocks.
pub fn pause_now_and_then(rng: &mut Rng, one_in: u64, max_us: u64) -> bool {
    if one_in == 0 || rng.next_u64() % one_in != 0 {
        return false;
    }
    thread::sleep(Duration::from_micros(rng.range(0, max_us.max(1))));
    true
}

/// This thread's CPU time, user and system: what a wait that sleeps
/// does not spend.
pub fn thread_cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Sleeps until the watchdog ends this process (or the parent kills it).
pub fn park() -> ! {
    loop {
        thread::sleep(Duration::from_secs(3600));
    }
}

// ---------------------------------------------------------------------------
// The header, read and written from outside the crate (docs/format.md,
// section 2): what a peer really published, consumed or closed.

/// Byte offset of the producer's `write_index` (u64).
pub const WRITE_INDEX_AT: u64 = 128;
/// Byte offset of the consumer's `read_index` (u64).
pub const READ_INDEX_AT: u64 = 256;
/// Byte offset of the producer's closed word (u32); the consumer's follows.
pub const CLOSED_AT: u64 = 640;

/// The header words that change while a ring is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Words {
    pub write_index: u64,
    pub read_index: u64,
    pub producer_closed: u32,
    pub consumer_closed: u32,
}

fn pread_exact(memfd: BorrowedFd<'_>, buf: &mut [u8], at: u64) {
    let len = buf.len();
    let n = rustix::io::pread(memfd, &mut *buf, at).expect("pread of the memfd");
    assert_eq!(n, len, "short pread of the memfd at {at}");
}

/// Reads the changing header words of a ring's memfd with `pread`, without
/// mapping it.
pub fn read_words(memfd: impl AsFd) -> Words {
    let fd = memfd.as_fd();
    let mut u64s = [[0u8; 8]; 2];
    pread_exact(fd, &mut u64s[0], WRITE_INDEX_AT);
    pread_exact(fd, &mut u64s[1], READ_INDEX_AT);
    let mut closed = [0u8; 8];
    pread_exact(fd, &mut closed, CLOSED_AT);
    Words {
        write_index: u64::from_ne_bytes(u64s[0]),
        read_index: u64::from_ne_bytes(u64s[1]),
        producer_closed: u32::from_ne_bytes(closed[..4].try_into().unwrap()),
        consumer_closed: u32::from_ne_bytes(closed[4..].try_into().unwrap()),
    }
}

/// Overwrites the u64 header word at `at` with `pwrite`, as a misbehaving
/// peer would.
pub fn write_word(memfd: impl AsFd, at: u64, value: u64) {
    let bytes = value.to_ne_bytes();
    let n = rustix::io::pwrite(memfd.as_fd(), &bytes, at).expect("pwrite of the memfd");
    assert_eq!(n, bytes.len(), "short pwrite of the memfd at {at}");
}

// ---------------------------------------------------------------------------
// What a process holds: fds and mappings (leak checks)

/// The mappings of this process: the lines of `/proc/self/maps`.
pub fn mappings() -> Vec<String> {
    std::fs::read_to_string("/proc/self/maps")
        .expect("/proc/self/maps")
        .lines()
        .map(str::to_owned)
        .collect()
}

/// What a mapping is, without its address (which moves between looks for
/// the heap and is of no interest): permissions and path, e.g.
/// `rw-s /memfd:fdring (deleted)`, or `---p` for an anonymous reservation.
fn mapping_kind(line: &str) -> String {
    let mut words = line.split_whitespace();
    let perms = words.nth(1).unwrap_or("");
    let path: Vec<&str> = words.skip(3).collect();
    format!("{perms} {}", path.join(" ")).trim_end().to_owned()
}

/// This process's resident set size in bytes (`VmRSS`).
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("a VmRSS line");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("VmRSS in kB");
    kib * 1024
}

/// The fds and mappings a process holds at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// Open fds: (number, target).
    pub fds: Vec<(String, String)>,
    /// Lines of `/proc/self/maps`.
    pub maps: Vec<String>,
}

/// What this process holds now.
pub fn held() -> Held {
    Held {
        fds: open_fds(),
        maps: mappings(),
    }
}

/// The items of `a` not in `b`, counting repeats.
fn multiset_minus(a: &[String], b: &[String]) -> Vec<String> {
    let mut left: HashMap<&str, usize> = HashMap::new();
    for x in b {
        *left.entry(x.as_str()).or_default() += 1;
    }
    let mut extra = Vec::new();
    for x in a {
        match left.get_mut(x.as_str()) {
            Some(n) if *n > 0 => *n -= 1,
            _ => extra.push(x.clone()),
        }
    }
    extra
}

impl Held {
    /// What differs from `before`: fds opened or closed, mappings added or
    /// removed (by kind, then the full lines); `None` if nothing does.
    pub fn difference_from(&self, before: &Held) -> Option<String> {
        let mut out = Vec::new();
        if self.fds != before.fds {
            let show = |fds: &[(String, String)]| {
                fds.iter()
                    .map(|(n, t)| format!("{n}->{t}"))
                    .collect::<Vec<_>>()
            };
            let (now, then) = (show(&self.fds), show(&before.fds));
            out.push(format!(
                "fds {} -> {}: opened {:?}, closed {:?}",
                then.len(),
                now.len(),
                multiset_minus(&now, &then),
                multiset_minus(&then, &now)
            ));
        }
        let kinds = |maps: &[String]| maps.iter().map(|l| mapping_kind(l)).collect::<Vec<_>>();
        let (now, then) = (kinds(&self.maps), kinds(&before.maps));
        if now.len() != then.len() || !multiset_minus(&now, &then).is_empty() {
            out.push(format!(
                "mappings {} -> {}: added {:?}, removed {:?}\nnew lines: {:#?}",
                then.len(),
                now.len(),
                multiset_minus(&now, &then),
                multiset_minus(&then, &now),
                multiset_minus(&self.maps, &before.maps)
            ));
        }
        (!out.is_empty()).then(|| out.join("\n"))
    }
}

/// Runs `scenario` `warmups` times (so that whatever the process sets up
/// once, lazily, is there), then once more between two looks at the fds
/// and mappings this process holds, which must be the same. Reports a
/// `leaks` line for the parent and panics with the difference.
///
/// Meant for a child process of its own (see
/// [`assert_child_leaks_nothing`]): in the test process, other tests open
/// and close fds in parallel threads.
pub fn check_leaks(what: &str, warmups: usize, mut scenario: impl FnMut()) {
    for _ in 0..warmups {
        scenario();
    }
    let before = held();
    scenario();
    let after = held();
    report(&format!(
        "leaks fds={}->{} maps={}->{}",
        before.fds.len(),
        after.fds.len(),
        before.maps.len(),
        after.maps.len()
    ));
    if let Some(difference) = after.difference_from(&before) {
        panic!("{what} leaked (or released) resources:\n{difference}");
    }
}

/// Runs the child role `role`, which calls [`check_leaks`], and fails if it
/// reports a difference or fails otherwise. Returns its report line.
#[track_caller]
pub fn assert_child_leaks_nothing(role: &str) -> String {
    let mut child = ChildProc::spawn(role, |_| {});
    let line = child.expect_line("leaks", HANG);
    child.finish();
    eprintln!("{role}: {line}");
    line
}

// ---------------------------------------------------------------------------
// Children killed with SIGKILL at a random moment

/// The child roles defined here; a test binary's `child_entry` runs them
/// with [`run_shared_role`].
pub const STREAM_SEND: &str = "stream_send";
pub const STREAM_RECV: &str = "stream_recv";

/// Runs `role` if it is one of the roles defined here; false otherwise.
pub fn run_shared_role(role: &str) -> bool {
    match role {
        STREAM_SEND => role_stream_send(),
        STREAM_RECV => role_stream_recv(),
        _ => return false,
    }
    true
}

/// The signal number of SIGKILL.
pub const SIGKILL: i32 = 9;

/// How a ring's end reaches the child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handoff {
    /// Inherited (`handoff::inherit`).
    Inherit,
    /// Sent over a socket that is the child's stdin (`handoff::send_fds`).
    Socket,
}

/// When and how a child is killed.
#[derive(Debug, Clone, Copy)]
pub struct KillPlan {
    pub handoff: Handoff,
    /// Whether the parent also watches an extra liveness (a pidfd of the
    /// child, or the hand-off socket's hang-up); without it the parent
    /// learns of the death from the ring's wake-up socket alone.
    pub extra_watch: bool,
    /// Whether `delay` counts from the spawn (so the child may die before it
    /// even opened the ring) or from the first sign that the stream flows
    /// (an item received, or a slot freed by the child).
    pub from_spawn: bool,
    /// How long after that the child is killed.
    pub delay: Duration,
    /// The child streams (or consumes) this many items, then stops with its
    /// end open and waits to be killed; `None`: it goes on until killed.
    pub stop_after: Option<u64>,
    /// One in how many of the child's batches it first sleeps 0..200 µs,
    /// so that the parent's end falls asleep now and then.
    pub child_pause_one_in: u64,
}

impl KillPlan {
    /// A random plan: delays of 0..20 ms; streams that stop early or not.
    pub fn random(seed: u64) -> KillPlan {
        let mut rng = Rng::new(seed ^ 0x6b69_6c6c);
        KillPlan {
            handoff: if rng.next_u64() % 4 == 0 {
                Handoff::Socket
            } else {
                Handoff::Inherit
            },
            extra_watch: rng.next_u64() % 2 == 0,
            from_spawn: rng.next_u64() % 4 == 0,
            delay: Duration::from_micros(rng.range(0, 20_000)),
            stop_after: match rng.next_u64() % 4 {
                0 => None,
                1 => Some(rng.range(1, 1_000)),
                2 => Some(rng.range(1, 50_000)),
                _ => Some(rng.range(1, 500_000)),
            },
            child_pause_one_in: [0, 8, 64][rng.upto(3) - 1],
        }
    }
}

/// What one killed child left behind, as the parent saw it.
#[derive(Debug, Clone, Copy)]
pub struct KillOutcome {
    /// Items the parent had received (or sent) when it killed the child.
    pub at_kill: u64,
    /// Items the parent received (or sent) in all.
    pub items: u64,
    /// From the kill to `Disconnected`.
    pub noticed: Duration,
    /// Whether the parent's end slept at least once.
    pub slept: bool,
    /// A sending parent: whether the ring was full when it got
    /// `Disconnected` (it filled what the dead child left).
    pub filled: bool,
}

const PLAN_HANDOFF: &str = "FDRING_CRASH_HANDOFF";
const PLAN_STOP: &str = "FDRING_CRASH_STOP";
const PLAN_PAUSE: &str = "FDRING_CRASH_PAUSE";

/// The fds the parent gave this child for its plan.
fn plan_fds() -> Fds {
    if env(PLAN_HANDOFF).as_deref() == Some("socket") {
        let stdin = std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .expect("dup stdin");
        handoff::recv_fds(&UnixStream::from(stdin)).expect("recv_fds")
    } else {
        handoff::inherited(RING_ENV).expect("inherited")
    }
}

fn plan_stop() -> u64 {
    env_u64(PLAN_STOP, u64::MAX)
}

/// Streams `0..` into the ring in random batches with random pauses until
/// the plan says stop, then waits with its end open to be killed.
fn role_stream_send() {
    let mut tx = Sender::<u64>::from_fds(plan_fds()).expect("open the sender");
    let stop = plan_stop();
    let pause = env_u64(PLAN_PAUSE, 0);
    let mut rng = Rng::new(seed());
    let mut next = 0u64;
    while next < stop {
        pause_now_and_then(&mut rng, pause, 200);
        match tx.send_with(|slots| fill_seq(slots, next, stop - next, &mut rng)) {
            Ok(n) => next += n as u64,
            // The parent is gone: nobody is left to check anything.
            Err(Error::Disconnected) => return,
            Err(e) => panic!("sending item {next}: {e}"),
        }
    }
    report(&format!("stopped count={next}"));
    park();
}

/// Receives `0..` in random batches with random pauses, checking the
/// sequence, until the plan says stop, then waits with its end open to be
/// killed.
fn role_stream_recv() {
    let mut rx = Receiver::<u64>::from_fds(plan_fds()).expect("open the receiver");
    let stop = plan_stop();
    let pause = env_u64(PLAN_PAUSE, 0);
    let mut rng = Rng::new(seed() ^ 0x5555);
    let mut next = 0u64;
    while next < stop {
        pause_now_and_then(&mut rng, pause, 200);
        let got = rx.recv_with(|items| {
            let n = rng.take(items.len()).min((stop - next) as usize);
            check_seq(&items[..n], next);
            n
        });
        match got {
            Ok(n) => next += n as u64,
            Err(Error::Disconnected) => return,
            Err(e) => panic!("receiving item {next}: {e}"),
        }
    }
    report(&format!("stopped count={next}"));
    park();
}

/// Spawns `role` with `fds` handed over as `plan` says; returns the child
/// and, if the plan says so, an extra liveness that watches it.
fn spawn_planned(
    role: &str,
    fds: Fds,
    plan: &KillPlan,
    seed: u64,
) -> (ChildProc, Option<Liveness>) {
    let settings = |command: &mut Command| {
        command
            .env("FDRING_TEST_SEED", seed.to_string())
            .env(PLAN_PAUSE, plan.child_pause_one_in.to_string());
        if let Some(stop) = plan.stop_after {
            command.env(PLAN_STOP, stop.to_string());
        }
    };
    match plan.handoff {
        Handoff::Inherit => {
            let child = ChildProc::spawn(role, |command| {
                handoff::inherit(command, RING_ENV, fds);
                settings(command);
            });
            let liveness = plan
                .extra_watch
                .then(|| Liveness::child(&child.child).expect("pidfd of the child"));
            (child, liveness)
        }
        Handoff::Socket => {
            let (ours, theirs) = UnixStream::pair().expect("socketpair");
            let child = ChildProc::spawn(role, |command| {
                command
                    .stdin(Stdio::from(OwnedFd::from(theirs)))
                    .env(PLAN_HANDOFF, "socket");
                settings(command);
            });
            handoff::send_fds(&ours, fds).expect("send_fds");
            (child, plan.extra_watch.then(|| Liveness::socket(ours)))
        }
    }
}

/// The kill schedule of one iteration: starts the clock, kills when due.
struct Killer {
    delay: Duration,
    started: Option<Instant>,
    killed: Option<Instant>,
    at_kill: u64,
}

impl Killer {
    fn new(plan: &KillPlan) -> Killer {
        Killer {
            delay: plan.delay,
            started: plan.from_spawn.then(Instant::now),
            killed: None,
            at_kill: 0,
        }
    }

    /// How long the next blocking call may wait: until the kill is due,
    /// then `NOTICE` for the death to be noticed; `HANG` while the stream
    /// has not started.
    fn timeout(&self) -> Duration {
        match (self.killed, self.started) {
            (Some(_), _) => NOTICE,
            (None, Some(started)) => {
                (started + self.delay).saturating_duration_since(Instant::now())
            }
            (None, None) => HANG,
        }
    }

    /// Whether a `Timeout` just returned means only "not yet".
    fn waiting_to_kill(&self) -> bool {
        self.killed.is_none() && self.started.is_some()
    }

    /// Kills `child` if it is time; `count` is the parent's progress.
    fn tick(&mut self, child: &mut ChildProc, count: u64) {
        if self.killed.is_none() && self.started.is_some_and(|s| s.elapsed() >= self.delay) {
            self.at_kill = count;
            // Taken before the kill: the parent must not see the death
            // before it was caused.
            self.killed = Some(Instant::now());
            child.kill();
        }
    }
}

/// Checks how a killed child ended: by SIGKILL, not by a failure of its own.
#[track_caller]
pub fn assert_killed(child: &mut ChildProc, context: &str) {
    use std::os::unix::process::ExitStatusExt;
    let status = child.wait_within(HANG);
    child.join_readers();
    assert_eq!(
        status.signal(),
        Some(SIGKILL),
        "{context}: the child must have died by SIGKILL, but {status}; its stderr:\n{}",
        child.stderr()
    );
}

/// One crash of a producer: a child streams `0..` into a ring of 512
/// `u64`s and is killed at a random moment (`KillPlan::random(seed)`). The
/// parent, receiving with random batch sizes, must get exactly the items
/// the child had published, `0..write_index`, in order, then
/// `Disconnected` within `NOTICE` of the kill, and nothing after.
pub fn killed_producer_once(seed: u64) -> KillOutcome {
    killed_producer(seed, KillPlan::random(seed))
}

/// [`killed_producer_once`] with a given plan.
pub fn killed_producer(seed: u64, plan: KillPlan) -> KillOutcome {
    let context = format!("killed producer, seed {seed}, {plan:?}");
    let (tx, mut rx) = channel::<u64>(1).expect("channel");
    let fds = tx.into_fds().expect("into_fds");
    let memfd = fds.memfd.try_clone().expect("dup the memfd");
    let (mut child, liveness) = spawn_planned(STREAM_SEND, fds, &plan, seed);
    if let Some(liveness) = liveness {
        rx.watch_peer(liveness);
    }
    let mut killer = Killer::new(&plan);
    let mut rng = Rng::new(seed ^ 0x7265_6376);
    let mut next = 0u64;
    let end = loop {
        let got = rx.recv_with_timeout(killer.timeout(), |items| {
            let n = rng.take(items.len());
            check_seq(&items[..n], next);
            n
        });
        match got {
            Ok(n) => {
                next += n as u64;
                killer.started.get_or_insert_with(Instant::now);
            }
            Err(Error::Timeout) if killer.waiting_to_kill() => {}
            Err(e) => break e,
        }
        killer.tick(&mut child, next);
    };
    let ended = Instant::now();
    let Some(killed) = killer.killed else {
        panic!(
            "{context}: the stream ended with {end:?} after {next} items, before the child \
             was killed; its stderr:\n{}",
            child.stderr()
        );
    };
    assert_eq!(
        end,
        Error::Disconnected,
        "{context}: after the kill, the receiver must return Disconnected within {NOTICE:?} \
         (after {next} items)"
    );
    let noticed = ended.duration_since(killed);
    assert!(
        noticed < NOTICE,
        "{context}: the death was noticed after {noticed:?}"
    );
    assert_eq!(
        (
            rx.try_recv(),
            rx.recv_timeout(Duration::from_millis(1)),
            rx.len()
        ),
        (Err(Error::Disconnected), Err(Error::Disconnected), 0),
        "{context}: nothing after the last published item"
    );
    let words = read_words(&memfd);
    assert_eq!(
        words.write_index, next,
        "{context}: the receiver got {next} items, the killed sender had published {}",
        words.write_index
    );
    assert_eq!(
        words.producer_closed, 0,
        "{context}: a killed sender never closes; the liveness, not a close, disconnected"
    );
    assert_killed(&mut child, &context);
    KillOutcome {
        at_kill: killer.at_kill,
        items: next,
        noticed,
        slept: rx.stats().sleeps > 0,
        filled: false,
    }
}

/// One crash of a consumer: the parent streams `0..` into a ring of 512
/// `u64`s for a child that receives (checking the sequence), maybe stops
/// consuming so that the parent blocks on a full ring, and is killed at a
/// random moment. The parent's `send_with_timeout` must return
/// `Disconnected` within `NOTICE` of the kill, never `Timeout`: it fills
/// the ring the dead child left and then reports the death instead of
/// blocking.
pub fn killed_consumer_once(seed: u64) -> KillOutcome {
    killed_consumer(seed, KillPlan::random(seed))
}

/// [`killed_consumer_once`] with a given plan.
pub fn killed_consumer(seed: u64, plan: KillPlan) -> KillOutcome {
    let context = format!("killed consumer, seed {seed}, {plan:?}");
    let (mut tx, rx) = channel::<u64>(1).expect("channel");
    let capacity = tx.capacity() as u64;
    let fds = rx.into_fds().expect("into_fds");
    let memfd = fds.memfd.try_clone().expect("dup the memfd");
    let (mut child, liveness) = spawn_planned(STREAM_RECV, fds, &plan, seed);
    if let Some(liveness) = liveness {
        tx.watch_peer(liveness);
    }
    let mut killer = Killer::new(&plan);
    let mut rng = Rng::new(seed ^ 0x7365_6e64);
    let mut next = 0u64;
    let end = loop {
        let got = tx.send_with_timeout(killer.timeout(), |slots| {
            fill_seq(slots, next, u64::MAX, &mut rng)
        });
        match got {
            Ok(n) => next += n as u64,
            Err(Error::Timeout) if killer.waiting_to_kill() => {}
            Err(e) => break e,
        }
        if killer.started.is_none() && (tx.len() as u64) < next {
            // The child has taken an item: the stream flows.
            killer.started = Some(Instant::now());
        }
        killer.tick(&mut child, next);
    };
    let ended = Instant::now();
    let Some(killed) = killer.killed else {
        panic!(
            "{context}: the stream ended with {end:?} after {next} items, before the child \
             was killed; its stderr:\n{}",
            child.stderr()
        );
    };
    assert_eq!(
        end,
        Error::Disconnected,
        "{context}: after the kill, the sender must return Disconnected within {NOTICE:?}, \
         not block (after {next} items)"
    );
    let noticed = ended.duration_since(killed);
    assert!(
        noticed < NOTICE,
        "{context}: the death was noticed after {noticed:?}"
    );
    assert_eq!(
        (tx.try_send(0), tx.send_timeout(0, Duration::from_millis(1))),
        (Err(Error::Disconnected), Err(Error::Disconnected)),
        "{context}: the sender stays disconnected"
    );
    let words = read_words(&memfd);
    assert!(
        words.write_index == next
            && words.read_index <= next
            && next - words.read_index <= capacity,
        "{context}: the sender published {} of its {next} items; the dead receiver had \
         consumed {}",
        words.write_index,
        words.read_index
    );
    // Not asserted: a sender learns of the death in a sleep, or in the
    // spin before it (where it looks for a hang-up now and then), both of
    // which it begins on a full ring; the ring is still full when it
    // returns, unless the kill fell between the child's release and its
    // wake-up.
    let filled = next - words.read_index == capacity;
    assert_eq!(
        words.consumer_closed, 0,
        "{context}: a killed receiver never closes; the liveness, not a close, disconnected"
    );
    assert_killed(&mut child, &context);
    KillOutcome {
        at_kill: killer.at_kill,
        items: next,
        noticed,
        slept: tx.stats().sleeps > 0,
        filled,
    }
}
