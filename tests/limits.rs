//! Resource limits and exhaustion: what this end refuses, and how, when the
//! machine, this process's limits or the format cannot give what was asked
//! for. A capacity larger than the memory available, a peer's ring larger
//! than this end accepts, a frame too large to copy out, huge pages or
//! `mlock` refused, an index at the format's 2^62 limit, a spin of
//! `Duration::MAX`: each is an error naming what was asked for and what
//! there was, never a crash, a hang, or blame on the peer.
//!
//! What could crash (an abort on a failed allocation, the OOM killer) or
//! needs its own limits (`RLIMIT_AS`, `RLIMIT_MEMLOCK`) runs in a child
//! process (this test binary, in a role), so that a regression kills the
//! child, not the test runner: the parent asserts that the child exited
//! normally and reported the error. No test here depends on timing; each
//! finishes well within a second.

mod common;
#[path = "support/raw.rs"]
mod raw;

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{env, spawn_bounded, start_watchdog, ChildProc, CHILD_ENV, HANG};
use fdring::{Builder, Error, Exhaustion, FrameReceiver, FrameSender, Receiver, Rejection, Sender};
use raw::{Raw, INDEX_LIMIT};

/// The entry point of every child process: runs the role named in
/// `FDRING_TEST_CHILD`, or nothing when run as a plain (ignored) test.
#[test]
#[ignore = "child process entry point, spawned by the tests"]
fn child_entry() {
    let Some(role) = env(CHILD_ENV) else {
        return;
    };
    start_watchdog(Duration::from_secs(60));
    match role.as_str() {
        "capacity-beyond-memory" => capacity_beyond_memory(),
        "mlock-without-limit" => mlock_without_limit(),
        "frame-beyond-allocation" => frame_beyond_allocation(),
        other => panic!("unknown child role {other}"),
    }
}

/// Bytes of a `/proc/meminfo` line (`key:   N kB`).
fn meminfo(key: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap();
    let line = text
        .lines()
        .find(|line| line.starts_with(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no {key} in /proc/meminfo"));
    let kib: u64 = line[key.len() + 1..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kib * 1024
}

fn page() -> u64 {
    rustix::param::page_size() as u64
}

// ---- memory the machine cannot back ----------------------------------------

/// Child: asks for rings the machine cannot back and reports each refusal.
///
/// Its address space is capped at 4 GiB first: if a regression maps and
/// pre-faults such a ring anyway, the mapping fails here, in this child,
/// instead of calling the OOM killer onto the machine (which may pick
/// another process). The fix refuses before it maps anything, so the cap
/// changes nothing for it.
fn capacity_beyond_memory() {
    let cap = rustix::process::Rlimit {
        current: Some(4 << 30),
        maximum: Some(4 << 30),
    };
    rustix::process::setrlimit(rustix::process::Resource::As, cap).unwrap();
    let twice_the_machine = 2 * (meminfo("MemTotal") + meminfo("SwapTotal"));
    let attempts = [
        ("items", fdring::channel::<u64>(1 << 40).map(drop)),
        (
            "bytes",
            fdring::channel::<u8>(twice_the_machine as usize).map(drop),
        ),
    ];
    for (what, attempt) in attempts {
        match attempt {
            Err(Error::Exhausted(Exhaustion::Memory {
                requested,
                available,
            })) => common::report(&format!(
                "attempt what={what} requested={requested} available={available} \
                 message={}",
                Error::Exhausted(Exhaustion::Memory {
                    requested,
                    available
                })
                .to_string()
                .replace(' ', "_")
            )),
            other => common::report(&format!("attempt what={what} unexpected={other:?}")),
        }
    }
}

#[test]
fn a_capacity_the_machine_cannot_back_is_refused_at_build_naming_the_sizes() {
    let twice_the_machine = 2 * (meminfo("MemTotal") + meminfo("SwapTotal"));
    let mut child = ChildProc::spawn("capacity-beyond-memory", |_| {});
    for (what, requested) in [
        // 2^40 u64s: 8 TiB of data after the header page.
        ("items", page() + (8 << 40)),
        // Rounded up to whole pages.
        ("bytes", page() + twice_the_machine.next_multiple_of(page())),
    ] {
        let line = child.expect_line("attempt", HANG);
        let fields = common::fields(&line);
        assert_eq!(fields["what"], what, "{line}");
        assert_eq!(
            fields.get("requested"),
            Some(&requested.to_string()),
            "{line}"
        );
        let available: u64 = fields["available"].parse().unwrap();
        assert!(available < requested, "{line}");
        let message = &fields["message"];
        assert!(
            message.contains(&requested.to_string()) && message.contains(&available.to_string()),
            "the message names both sizes: {message}"
        );
    }
    child.finish();
}

// ---- a spin of Duration::MAX -----------------------------------------------

#[test]
fn a_spin_of_duration_max_receives_without_overflowing_the_clock() {
    let (mut tx, mut rx) = Builder::new()
        .capacity(512)
        .spin(Duration::MAX)
        .build::<u64>()
        .unwrap();
    let sender = spawn_bounded("sender", move || {
        for i in 0..1000 {
            tx.send(i).unwrap();
        }
        tx
    });
    let receiver = spawn_bounded("receiver", move || {
        for i in 0..1000 {
            assert_eq!(rx.recv(), Ok(i));
        }
        rx
    });
    let tx = sender.join_within(HANG);
    let mut rx = receiver.join_within(HANG);
    // The `_timeout` calls spin until their timeout, then report it.
    assert_eq!(
        rx.recv_timeout(Duration::from_millis(20)),
        Err(Error::Timeout)
    );
    drop(tx);
    assert_eq!(rx.recv(), Err(Error::Disconnected));
}

#[test]
fn a_spin_of_duration_max_sends_into_a_full_ring_until_there_is_room() {
    let (mut tx, mut rx) = Builder::new()
        .capacity(512)
        .spin(Duration::MAX)
        .build::<u64>()
        .unwrap();
    let count = 4 * tx.capacity() as u64;
    let sender = spawn_bounded("sender", move || {
        for i in 0..count {
            tx.send(i).unwrap();
        }
    });
    for i in 0..count {
        assert_eq!(rx.recv(), Ok(i));
    }
    sender.join_within(HANG);
}

#[test]
fn a_spin_of_duration_max_notices_a_peer_that_died_without_closing() {
    let (tx, mut rx) = Builder::new()
        .capacity(512)
        .spin(Duration::MAX)
        .build::<u64>()
        .unwrap();
    // The sender's fds closed without its closed word set, as when its
    // process is killed: only the socket's hang-up tells.
    drop(tx.into_fds().unwrap());
    let receiver = spawn_bounded("receiver", move || rx.recv());
    assert_eq!(receiver.join_within(HANG), Err(Error::Disconnected));

    let (mut tx, rx) = Builder::new()
        .capacity(512)
        .spin(Duration::MAX)
        .build::<u64>()
        .unwrap();
    for _ in 0..tx.capacity() {
        tx.try_send(0).unwrap();
    }
    drop(rx.into_fds().unwrap());
    let sender = spawn_bounded("sender", move || tx.send(1));
    assert_eq!(sender.join_within(HANG), Err(Error::Disconnected));
}

// ---- the 2^62 index limit --------------------------------------------------

/// Opens both ends of a fresh ring of `T` whose two indices were set to
/// `2^62 - left` before the ends were opened (as after a very long stream
/// handed from process to process), with the sender's mapping of the memfd.
fn near_the_limit<T: bytemuck::Pod>(capacity: usize, left: u64) -> (Sender<T>, Receiver<T>, Raw) {
    let (tx, rx) = fdring::channel::<T>(capacity).unwrap();
    let (tx_fds, rx_fds) = (tx.into_fds().unwrap(), rx.into_fds().unwrap());
    let raw = Raw::map(&tx_fds.memfd);
    raw.write_index()
        .store(INDEX_LIMIT - left, Ordering::Release);
    raw.read_index()
        .store(INDEX_LIMIT - left, Ordering::Release);
    (
        Sender::from_fds(tx_fds).unwrap(),
        Receiver::from_fds(rx_fds).unwrap(),
        raw,
    )
}

/// The error of a sender whose index is `index`, too near the limit.
fn exhausted_at(index: u64) -> Error {
    Error::Exhausted(Exhaustion::Indices { index })
}

/// Receives everything published; asserts it is `expected`, and that the
/// receiver then finds the ring empty (not corrupted).
fn assert_received<T: bytemuck::Pod + PartialEq + std::fmt::Debug>(
    rx: &mut Receiver<T>,
    expected: &[T],
) {
    let mut got = Vec::new();
    while let Ok(n) = rx.try_recv_with(|items| {
        got.extend_from_slice(items);
        items.len()
    }) {
        assert!(n > 0);
    }
    assert_eq!(got, expected);
    assert_eq!(rx.try_recv(), Err(Error::Empty));
}

#[test]
fn send_stops_at_the_index_limit_with_its_own_exhaustion() {
    let (mut tx, mut rx, raw) = near_the_limit::<u64>(512, 10);
    for i in 0..10 {
        tx.send(i).unwrap();
    }
    assert_eq!(raw.write_index().load(Ordering::Acquire), INDEX_LIMIT);
    // Blocking, non-blocking and timed sends all refuse at once, with room
    // in the ring: the limit is this end's, not the receiver's doing.
    assert_eq!(tx.send(10), Err(exhausted_at(INDEX_LIMIT)));
    assert_eq!(tx.try_send(10), Err(exhausted_at(INDEX_LIMIT)));
    assert_eq!(
        tx.send_timeout(10, Duration::from_secs(60)),
        Err(exhausted_at(INDEX_LIMIT))
    );
    assert_eq!(raw.write_index().load(Ordering::Acquire), INDEX_LIMIT);
    assert_received(&mut rx, &(0..10).collect::<Vec<u64>>());
    let message = tx.send(10).unwrap_err().to_string();
    assert!(
        message.contains("2^62") && !message.contains("peer"),
        "{message}"
    );
    // The receiver, at the limit too, still learns that the sender left.
    drop(tx);
    assert_eq!(rx.recv(), Err(Error::Disconnected));
}

#[test]
fn send_with_is_lent_only_the_slots_left_before_the_index_limit() {
    let (mut tx, mut rx, raw) = near_the_limit::<u64>(512, 10);
    // The ring has 512 free slots, but only 10 may be published, and they
    // cross the wrap (2^62 - 10 is slot 502).
    let lent = tx
        .send_with(|slots| {
            for (i, slot) in slots.iter_mut().enumerate() {
                slot.write(i as u64);
            }
            slots.len()
        })
        .unwrap();
    assert_eq!(lent, 10);
    assert_eq!(raw.write_index().load(Ordering::Acquire), INDEX_LIMIT);
    let never_called = |_: &mut [std::mem::MaybeUninit<u64>]| -> usize {
        panic!("lent a slot past the index limit")
    };
    assert_eq!(tx.send_with(never_called), Err(exhausted_at(INDEX_LIMIT)));
    assert_eq!(
        tx.try_send_with(never_called),
        Err(exhausted_at(INDEX_LIMIT))
    );
    assert_received(&mut rx, &(0..10).collect::<Vec<u64>>());
}

#[test]
fn try_send_slice_sends_only_up_to_the_index_limit() {
    let (mut tx, mut rx, raw) = near_the_limit::<u64>(512, 10);
    let items: Vec<u64> = (100..120).collect();
    assert_eq!(tx.try_send_slice(&items[..4]), Ok(4));
    assert_eq!(tx.try_send_slice(&items[4..]), Ok(6));
    assert_eq!(
        tx.try_send_slice(&items[10..]),
        Err(exhausted_at(INDEX_LIMIT))
    );
    // The blocking slice call sends nothing more and does not wait.
    assert_eq!(tx.send_slice(&items[10..]), Err(exhausted_at(INDEX_LIMIT)));
    assert_eq!(raw.write_index().load(Ordering::Acquire), INDEX_LIMIT);
    assert_received(&mut rx, &items[..10]);
}

#[test]
fn io_write_writes_only_up_to_the_index_limit_then_fails() {
    use std::io::Write;
    let (mut tx, mut rx, raw) = near_the_limit::<u8>(4096, 10);
    assert_eq!(tx.write(b"0123456789abcdef").unwrap(), 10);
    let refused = tx.write(b"abcdef").unwrap_err();
    assert_eq!(Error::from(refused), exhausted_at(INDEX_LIMIT));
    let refused = tx.write_all(b"abcdef").unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::Other);
    assert_eq!(raw.write_index().load(Ordering::Acquire), INDEX_LIMIT);
    assert_received(&mut rx, b"0123456789");
}

#[test]
fn frames_are_sent_only_while_they_fit_before_the_index_limit() {
    // 104 bytes left: a multiple of 8, so records start aligned.
    let (tx, rx, raw) = near_the_limit::<u8>(4096, 104);
    let (mut tx, mut rx) = (FrameSender::new(tx), FrameReceiver::new(rx));
    let fill = |byte: u8| {
        move |frame: &mut fdring::FrameMut<'_>| {
            frame.fill(byte);
            frame.set_tag(u64::from(byte));
            frame.len()
        }
    };
    // A 40-byte frame is a 64-byte record: it fits, and a second one does
    // not (40 bytes left), however much room the ring has.
    assert_eq!(tx.send_frame_with(40, fill(1)), Ok(40));
    // The blocking call does not wait for room that can never come.
    let mut tx = spawn_bounded("sender", move || {
        assert_eq!(
            tx.send_frame_with(40, fill(2)),
            Err(exhausted_at(INDEX_LIMIT - 40))
        );
        tx
    })
    .join_within(HANG);
    assert_eq!(
        tx.try_send_frame_with(40, fill(2)),
        Err(exhausted_at(INDEX_LIMIT - 40))
    );
    assert_eq!(
        tx.offer_frame_with(40, fill(2)),
        Err(exhausted_at(INDEX_LIMIT - 40))
    );
    // A 16-byte frame (a 40-byte record) still fits, exactly.
    assert_eq!(tx.send_frame_with(16, fill(3)), Ok(16));
    assert_eq!(raw.write_index().load(Ordering::Acquire), INDEX_LIMIT);
    assert_eq!(
        tx.send_frame_with(0, fill(4)),
        Err(exhausted_at(INDEX_LIMIT))
    );
    assert_eq!(tx.stats().dropped, 0, "an exhausted ring drops nothing");
    let mut buf = Vec::new();
    assert_eq!(rx.try_recv_frame(&mut buf), Ok(1));
    assert_eq!(buf, [1; 40]);
    assert_eq!(rx.try_recv_frame(&mut buf), Ok(3));
    assert_eq!(buf, [3; 16]);
    assert_eq!(rx.try_recv_frame(&mut buf), Err(Error::Empty));
}

// ---- huge pages and mlock ----------------------------------------------------

#[test]
fn huge_pages_refused_by_an_empty_pool_name_the_pages_needed_and_free() {
    let free = meminfo("HugePages_Free") / 1024;
    if free != 0 {
        eprintln!(
            "skipped: this machine has {free} free huge pages, so a huge-page ring may be built"
        );
        return;
    }
    let huge = meminfo("Hugepagesize");
    let refused = Builder::new()
        .capacity(1000)
        .huge_pages(true)
        .build::<u64>()
        .err();
    // One huge page of header, one of data.
    let expected = Error::Exhausted(Exhaustion::HugePages {
        requested: 2,
        free: 0,
    });
    assert_eq!(refused, Some(expected), "huge page size {huge}");
    let message = refused.unwrap().to_string();
    assert!(
        message.contains("needs 2 huge pages but 0 are free") && message.contains("nr_hugepages"),
        "{message}"
    );
}

/// Child: forbids locking any memory (`RLIMIT_MEMLOCK` 0, and without
/// `CAP_IPC_LOCK`, which lets root ignore the limit), then asks for `mlock`
/// at build and at open, and reports each refusal.
fn mlock_without_limit() {
    let none = rustix::process::Rlimit {
        current: Some(0),
        maximum: Some(0),
    };
    rustix::process::setrlimit(rustix::process::Resource::Memlock, none).unwrap();
    // Capabilities are per thread: this is the thread that builds.
    let mut caps = rustix::thread::capabilities(None).unwrap();
    caps.effective
        .remove(rustix::thread::CapabilitySet::IPC_LOCK);
    caps.permitted
        .remove(rustix::thread::CapabilitySet::IPC_LOCK);
    rustix::thread::set_capabilities(None, caps).unwrap();

    let report = |what: &str, result: Result<(), Error>| match result {
        Err(Error::Exhausted(Exhaustion::Memlock { requested, limit })) => common::report(
            &format!("attempt what={what} requested={requested} limit={limit}"),
        ),
        other => common::report(&format!("attempt what={what} unexpected={other:?}")),
    };
    let locked = Builder::new().capacity(512).mlock(true);
    report("build", locked.build::<u64>().map(drop));
    let (tx, rx) = fdring::channel::<u64>(512).unwrap();
    report(
        "open",
        locked
            .open_receiver::<u64>(rx.into_fds().unwrap())
            .map(drop),
    );
    drop(tx);
}

#[test]
fn mlock_beyond_the_memlock_limit_names_the_bytes_and_the_limit() {
    let mut child = ChildProc::spawn("mlock-without-limit", |_| {});
    // 512 u64s are one page, mapped twice after the header page.
    let requested = 3 * page();
    for what in ["build", "open"] {
        let line = child.expect_line("attempt", HANG);
        assert_eq!(
            line,
            format!("attempt what={what} requested={requested} limit=0")
        );
    }
    child.finish();
}

// ---- rings and frames larger than this end accepts -------------------------

/// A sealed memfd holding a valid, sparse ring made by hand, as a peer would
/// make it: a header page, then `data_len` bytes of `item_size`-byte items,
/// of which only the pages written here take memory. `frame`, if any, is
/// one valid frame record at stream offset 0 (a frame ring of bytes), of
/// `len` payload bytes and `tag`, published whole.
fn sparse_ring(item_size: u32, data_len: u64, frame: Option<(u64, u64)>) -> OwnedFd {
    use rustix::fs::{MemfdFlags, SealFlags};
    let memfd = rustix::fs::memfd_create(
        "fdring-test",
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
    )
    .unwrap();
    rustix::fs::ftruncate(&memfd, page() + data_len).unwrap();
    let put = |at: usize, bytes: &[u8]| {
        assert_eq!(
            rustix::io::pwrite(&memfd, bytes, at as u64).unwrap(),
            bytes.len()
        );
    };
    put(raw::VERSION, &fdring::VERSION.to_ne_bytes());
    put(raw::ITEM_SIZE, &item_size.to_ne_bytes());
    put(raw::ITEM_ALIGN, &item_size.to_ne_bytes());
    put(
        raw::CAPACITY,
        &(data_len / u64::from(item_size)).to_ne_bytes(),
    );
    put(raw::DATA_OFFSET, &page().to_ne_bytes());
    if let Some((len, tag)) = frame {
        let record = (24 + len).next_multiple_of(8);
        assert!(item_size == 1 && record <= data_len);
        let mut header = Vec::new();
        header.extend_from_slice(&len.to_ne_bytes());
        header.extend_from_slice(&tag.to_ne_bytes());
        header.extend_from_slice(&0u32.to_ne_bytes());
        header.extend_from_slice(b"FRM1");
        put(page() as usize, &header);
        put(raw::WRITE_INDEX, &record.to_ne_bytes());
    }
    put(raw::MAGIC, &fdring::MAGIC.to_ne_bytes());
    let seals = SealFlags::SEAL | SealFlags::SHRINK | SealFlags::GROW;
    rustix::fs::fcntl_add_seals(&memfd, seals).unwrap();
    memfd
}

/// A bundle of `memfd` and one end of a fresh socket pair, and the other
/// end (the peer's, kept open so that this end does not see it hang up).
fn bundle(memfd: OwnedFd) -> (fdring::Fds, UnixStream) {
    let (ours, theirs) = UnixStream::pair().unwrap();
    // The header names this socket as either end's (format version 2), so
    // that the bundle opens as whichever end a test asks for.
    let inode = rustix::fs::fstat(&ours).unwrap().st_ino.to_ne_bytes();
    for at in [raw::WAKE_INODES, raw::WAKE_INODES + 8] {
        assert_eq!(rustix::io::pwrite(&memfd, &inode, at as u64).unwrap(), 8);
    }
    let fds = fdring::Fds {
        memfd,
        wake: ours.into(),
    };
    (fds, theirs)
}

#[test]
fn a_ring_larger_than_the_default_bound_is_refused_at_open_until_raised() {
    let two_gib: u64 = 2 << 30;
    let too_large = |bytes, max| Error::Rejected(Rejection::TooLarge { bytes, max });
    // The default: 1 GiB of data, whatever the item type.
    let (fds, _peer) = bundle(sparse_ring(1, two_gib, None));
    assert_eq!(
        Receiver::<u8>::from_fds(fds).unwrap_err(),
        too_large(two_gib, fdring::DEFAULT_MAX_DATA_BYTES)
    );
    let (fds, _peer) = bundle(sparse_ring(8, two_gib, None));
    assert_eq!(
        Sender::<u64>::from_fds(fds).unwrap_err(),
        too_large(two_gib, 1 << 30)
    );
    // Raised to one item less than the ring: still refused, in bytes.
    let (fds, _peer) = bundle(sparse_ring(8, two_gib, None));
    let items = (two_gib / 8) as usize;
    assert_eq!(
        Builder::new()
            .max_capacity(items - 1)
            .open_receiver::<u64>(fds)
            .unwrap_err(),
        too_large(two_gib, two_gib - 8)
    );
    // Raised to the ring's capacity: accepted, and working.
    let (fds, _peer) = bundle(sparse_ring(8, two_gib, None));
    let mut rx = Builder::new()
        .max_capacity(items)
        .open_receiver::<u64>(fds)
        .unwrap();
    assert_eq!(rx.capacity(), items);
    assert_eq!(rx.try_recv(), Err(Error::Empty));
    let (fds, _peer) = bundle(sparse_ring(1, two_gib, None));
    let mut tx = Builder::new()
        .max_capacity(usize::MAX)
        .open_sender::<u8>(fds)
        .unwrap();
    assert_eq!(tx.try_send(7), Ok(()));
    // The message says what to raise.
    let (fds, _peer) = bundle(sparse_ring(1, two_gib, None));
    let message = Receiver::<u8>::from_fds(fds).unwrap_err().to_string();
    assert!(message.contains("max_capacity"), "{message}");
}

#[test]
fn the_bound_on_opened_rings_does_not_limit_the_rings_this_end_builds() {
    let (mut tx, mut rx) = Builder::new()
        .capacity(4096)
        .max_capacity(1)
        .build::<u64>()
        .unwrap();
    tx.send(3).unwrap();
    assert_eq!(rx.recv(), Ok(3));
}

/// Child: opens the receiving end of a sparse 64 GiB frame ring holding one
/// frame of 64 GiB - 24 bytes, as a hostile creator could hand over, then
/// asks for a copy of it, which no allocator here can give: the copy must
/// fail with an error (the process must not abort), and the frame must
/// stay, to be received in place.
///
/// The address space is capped just above what is mapped, so that the
/// allocation fails whatever the machine's memory and overcommit policy
/// (and a regression that tried to copy would fail here, not swap the
/// machine to death).
fn frame_beyond_allocation() {
    let data_len: u64 = 64 << 30;
    let len = data_len - 24;
    let (fds, _peer) = bundle(sparse_ring(1, data_len, Some((len, 0xf4a3e))));
    let mut rx = FrameReceiver::new(
        Builder::new()
            .max_capacity(data_len as usize)
            .open_receiver::<u8>(fds)
            .unwrap(),
    );
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let vm_kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmSize:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    let cap = vm_kib * 1024 + (256 << 20);
    let limit = rustix::process::Rlimit {
        current: Some(cap),
        maximum: Some(cap),
    };
    rustix::process::setrlimit(rustix::process::Resource::As, limit).unwrap();

    let mut buf = Vec::new();
    match rx.try_recv_frame(&mut buf) {
        Err(e @ Error::Exhausted(Exhaustion::Allocation { requested })) => {
            common::report(&format!(
                "copy requested={requested} message={}",
                e.to_string().replace(' ', "_")
            ))
        }
        other => common::report(&format!("copy unexpected={other:?}")),
    }
    // Kept: the same frame, in place.
    match rx.recv_frame_with(|frame| (frame.len(), frame.tag())) {
        Ok((len, tag)) => common::report(&format!("in-place len={len} tag={tag:#x}")),
        other => common::report(&format!("in-place unexpected={other:?}")),
    }
    common::report(&format!("then {:?}", rx.try_recv_frame(&mut buf)));
}

#[test]
fn a_frame_too_large_to_copy_is_an_error_and_stays_in_the_ring() {
    let mut child = ChildProc::spawn("frame-beyond-allocation", |_| {});
    let len = (64u64 << 30) - 24;
    let line = child.expect_line("copy", HANG);
    assert!(
        line.starts_with(&format!(
            "copy requested={len} message=could_not_allocate_{len}_bytes"
        )),
        "{line}"
    );
    let line = child.expect_line("in-place", HANG);
    assert_eq!(line, format!("in-place len={len} tag=0xf4a3e"));
    let line = child.expect_line("then", HANG);
    assert_eq!(line, "then Err(Empty)");
    child.finish();
}
