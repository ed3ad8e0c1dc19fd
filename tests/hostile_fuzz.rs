//! The hostile-peer fuzz harness (`tests/support/hostile/`) on stable:
//! random and structured scripts through proptest, every file of the
//! cargo-fuzz seed corpus (`fuzz/corpus/hostile_peer/`), a check that runs
//! leak no fd and no mapping, and the behaviours the fuzzer found that
//! broke fdring's promise (fixed in 1aeb351 and a5c78cd).
//!
//! `cargo test --test hostile_fuzz -- --ignored write_seed_corpus` writes
//! the seed corpus again from [`seeds`]; with `HOSTILE_REPLAY=path` the
//! test `replay` runs one script (a fuzzer artifact, say), and
//! `FDRING_HOSTILE_TRACE=1` prints what it does.

use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use proptest::prelude::*;

#[path = "support/hostile/mod.rs"]
mod hostile;

use hostile::Options;

/// The tests here count this process's fds and mappings: one at a time.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/hostile_peer")
}

/// A script that mostly opens a ring (a valid kind, the crate's own wake-up
/// socket, no header writes), then random operations.
fn structured() -> impl Strategy<Value = Vec<u8>> {
    let mostly_zero = || prop_oneof![4 => Just(0u8), 1 => any::<u8>()];
    (
        prop_oneof![4 => 0u8..7, 1 => any::<u8>()],
        any::<u8>(),
        any::<u8>(),
        mostly_zero(),
        mostly_zero(),
        any::<u8>(),
        any::<u8>(),
        mostly_zero(),
        proptest::collection::vec(any::<u8>(), 0..400),
    )
        .prop_map(
            |(kind, role, geometry, tag, wake, hold, live, writes, ops)| {
                let mut script = vec![kind, role, geometry, tag, wake, hold, live, writes];
                script.extend(ops);
                script
            },
        )
}

proptest! {
    // No regression file: this crate keeps its test inputs in the source
    // (a failing script goes into `seeds` or a regression test below).
    #![proptest_config(ProptestConfig {
        cases: 4000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_scripts_get_values_or_typed_errors(
        script in proptest::collection::vec(any::<u8>(), 0..600),
    ) {
        let _serial = serial();
        hostile::run(&script);
    }

    #[test]
    fn scripts_on_valid_rings_get_values_or_typed_errors(script in structured()) {
        let _serial = serial();
        hostile::run(&script);
    }
}

#[test]
fn every_seed_of_the_fuzz_corpus_runs_clean() {
    let _serial = serial();
    let dir = corpus_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(
        files.len() >= 20,
        "only {} seeds in {}",
        files.len(),
        dir.display()
    );
    for path in files {
        let script = std::fs::read(&path).unwrap();
        let result = std::panic::catch_unwind(|| hostile::run(&script));
        assert!(result.is_ok(), "seed {} failed", path.display());
    }
}

#[test]
fn the_seed_corpus_is_what_seeds_writes() {
    let _serial = serial();
    let seeds = seeds();
    for (name, script) in &seeds {
        let path = corpus_dir().join(name);
        let on_disk = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e}; run write_seed_corpus", path.display()));
        assert_eq!(&on_disk, script, "{name} is stale: run write_seed_corpus");
    }
    for entry in std::fs::read_dir(corpus_dir()).unwrap() {
        let name = entry.unwrap().file_name();
        assert!(
            seeds.iter().any(|(seed, _)| name == *seed),
            "{name:?} is not a seed: run write_seed_corpus"
        );
    }
}

/// The number of entries in a `/proc/self` directory or lines in a file.
fn count(path: &str) -> usize {
    if path.ends_with("/fd") {
        std::fs::read_dir(path).unwrap().count()
    } else {
        std::fs::read_to_string(path).unwrap().lines().count()
    }
}

#[test]
fn runs_leak_no_fd_and_no_mapping() {
    let _serial = serial();
    let scripts: Vec<Vec<u8>> = seeds().into_iter().map(|(_, s)| s).collect();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut random = Vec::new();
    for i in 0..1500 {
        let len = (next() % 500) as usize;
        let mut script: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if i % 2 == 0 && len > 8 {
            // A valid kind and the crate's wake-up socket, so that most
            // rings open.
            script[0] = (next() % 7) as u8;
            script[4] = 0;
        }
        random.push(script);
    }
    // Warm up: the harness makes one pipe per process, std its buffers.
    for script in &scripts {
        hostile::run(script);
    }
    let fds = count("/proc/self/fd");
    let maps = count("/proc/self/maps");
    for _ in 0..3 {
        for script in scripts.iter().chain(&random) {
            hostile::run(script);
        }
    }
    assert_eq!(count("/proc/self/fd"), fds, "fds leaked");
    let now = count("/proc/self/maps");
    // The allocator may keep an arena or two; a leaked ring would be
    // thousands of mappings.
    assert!(
        now <= maps + 8,
        "mappings leaked: {maps} before, {now} after"
    );
}

#[test]
fn replay() {
    if let Some(path) = std::env::var_os("HOSTILE_REPLAY") {
        let _serial = serial();
        hostile::run(&std::fs::read(path).unwrap());
    }
}

// ---- the seed corpus -------------------------------------------------------

/// The words of the seed scripts, with their bytes, in the order
/// `hostile.rs` reads them (see its module documentation).
const WORDS: &[(&str, u8)] = &[
    // What is handed over as the memfd.
    ("RING", 0),
    ("HANDMADE", 4),
    ("UNSEALED", 7),
    ("SOME_SEALS", 8), // then the seals: SEAL 1, SHRINK 2, GROW 4, WRITE 8, FUTURE_WRITE 16
    ("TOO_SMALL", 9),  // then 0: 0 bytes, 1: 1, 2: 767, 3: 768, 4: a page less one
    ("ODD_SIZE", 10),  // then a u16: bit 15 smaller, else larger
    ("REGULAR_FILE", 11),
    ("REOPENED", 12), // then 0 read-only, 1 write-only, 2 O_PATH, 3 read-write
    ("PIPE", 13),
    ("EVENTFD", 14),
    ("SOCKET", 15),
    // The role: bit 0 receiver, bits 1-2 the item type.
    ("SENDER_U64", 0),
    ("RECEIVER_U64", 1),
    ("SENDER_BYTES12", 2),
    ("RECEIVER_BYTES12", 3),
    ("SENDER_U8", 4),
    ("RECEIVER_U8", 5),
    ("OTHER_RING_ITEM", 3 << 3),
    // The tag byte: bits 0-1 the header's tag, bits 2-3 the expected one.
    ("TAG_5EED", 1),
    ("TAG_MAX", 2),
    ("EXPECT_SAME_TAG", 2 << 2),
    ("EXPECT_OTHER_TAG", 3 << 2),
    // What is handed over as the wake-up socket.
    ("WAKE_REAL", 0),
    ("WAKE_FRESH", 7),
    ("WAKE_HUNG_UP", 8),
    ("WAKE_DGRAM", 9),
    ("WAKE_SEQPACKET", 10),
    ("WAKE_UNCONNECTED", 11),
    ("WAKE_INET", 12),
    ("WAKE_EVENTFD", 13),
    ("WAKE_PIPE", 14),
    ("WAKE_MEMFD", 15),
    // How the peer holds the pair: copies of its end, and the honest end's
    // socket handed over with O_NONBLOCK.
    ("HOLD_ONE", 0),
    ("HOLD_TWO", 1),
    ("NONBLOCKING", 2),
    // The liveness byte: liveness, spin, hand-off (then its shape byte).
    ("LIVE_NONE", 0),
    ("LIVE_SOCKET", 5),
    ("LIVE_GONE", 6),
    ("LIVE_PIDFD", 7),
    ("SPIN_1US", 1 << 3),
    ("SPIN_DEFAULT", 3 << 3),
    ("HANDOFF", 7 << 5),
    // The writes byte: bit 7 fills the configuration, bits 0-2 count.
    ("FILL_CONFIG", 0x80),
    // Calls: the same numbers for both sides where they exist.
    ("TRY", 0),          // try_send / try_recv
    ("WITH", 1),         // try_send_with / try_recv_with, then k
    ("SLICE", 2),        // try_send_slice / try_recv_slice, then a size kind
    ("TIMEOUT", 3),      // send_timeout / recv_timeout, then a duration
    ("WITH_TIMEOUT", 4), // then k, then a duration
    ("LEN", 5),
    ("IS_FULL", 6),
    ("IS_EMPTY", 7),
    ("PREPARE_WAIT", 8),
    ("REOPEN", 9),
    ("WITH_PEER", 11), // a `_with` call, then k, then a peer action inside
    // Peer actions: 12 + the action number in `World::act`.
    ("FORGE", 12),     // then a u16, a forge kind
    ("OWN_INDEX", 13), // then a value spec
    ("HONEST", 14),    // then a u16 (and a seed byte, if this end receives)
    ("ARMED", 15),     // then which, a value kind
    ("CLOSED", 16),    // then which, a value kind
    ("CONFIG", 17),    // then a field, a value spec
    ("POKE", 18),      // then a u16 offset, a width, a value spec
    ("DATA", 19),      // then a u32 offset, a count, the bytes
    ("WAKE", 20),      // then a wake-up socket action (W_...), its argument
    ("PUNCH", 21),     // then a u32 offset, a u32 length
    ("LIVENESS", 22),  // then odd: drop the liveness end; even: fill config
    // Wake-up socket actions (`World::wake_action`), each then an argument.
    ("W_PING", 0),         // a spurious wake-up from the peer's end
    ("W_FLOOD", 1),        // a flood in 0: 1-byte, 1: 64-byte, 2: 4096-byte sends
    ("W_FILL", 2),         // the honest end's send buffer filled, from its dup
    ("W_FLAGS", 3),        // 0: clear O_NONBLOCK on both descriptions, 1: set it
    ("W_STEAL", 4),        // read through the dup 0: one byte, 1: 64, 2: all
    ("W_READ", 5),         // the peer reads its own end
    ("W_SHUTDOWN", 6),     // the peer's end shut down for 0: writing, 1: reading, 2: both
    ("W_CLOSE_ONE", 7),    // one copy of the peer's end closed
    ("W_SHUT_HONEST", 8),  // the honest end shut down (dup) for 0: reading, 1: writing
    ("W_CLOSE_ALL", 9),    // every copy of the peer's end closed
    ("W_FROM_HONEST", 10), // a byte sent from the honest end's socket (dup)
];

/// The bytes of a seed script: words of [`WORDS`] and numbers, `a+b` for
/// a sum, `|` only for the eye.
fn bytes(text: &str) -> Vec<u8> {
    let byte = |token: &str| -> u8 {
        token
            .split('+')
            .map(|part| match WORDS.iter().find(|(name, _)| *name == part) {
                Some(&(_, value)) => value,
                None => part.parse().unwrap_or_else(|_| panic!("bad word {part:?}")),
            })
            .sum()
    };
    text.split_whitespace()
        .filter(|token| *token != "|")
        .map(byte)
        .collect()
}

/// Setups that open a valid ring made by the crate.
const TX_U64: &str = "RING SENDER_U64 0 0 WAKE_REAL HOLD_ONE LIVE_NONE 0 |";
const RX_U64: &str = "RING RECEIVER_U64 0 0 WAKE_REAL HOLD_ONE LIVE_NONE 0 |";
const TX_BYTES12: &str = "RING SENDER_BYTES12 0 0 WAKE_REAL HOLD_ONE LIVE_NONE 0 |";
const RX_BYTES12: &str = "RING RECEIVER_BYTES12 0 0 WAKE_REAL HOLD_ONE LIVE_NONE 0 |";
const TX_U8: &str = "RING SENDER_U8 0 0 WAKE_REAL HOLD_ONE LIVE_NONE 0 |";
const RX_U8: &str = "RING RECEIVER_U8 0 0 WAKE_REAL HOLD_ONE LIVE_NONE 0 |";

/// The seed corpus: every kind of fd, every call, every peer action.
fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    // The peer consumes 30 items, or publishes 60 (seed 0x5a).
    let stream = "TRY TRY WITH 0 SLICE 1 40 HONEST 30 0 ".repeat(8);
    let receive = "HONEST 60 0 90 TRY WITH 3 SLICE 1 20 LEN IS_EMPTY ".repeat(8);
    let fill = (1..=48).map(|b| format!("{b} ")).collect::<String>();
    let seeds: Vec<(&str, String)> = vec![
        ("empty", String::new()),
        ("sender_u64_stream", format!("{TX_U64} {stream}")),
        ("receiver_u64_stream", format!("{RX_U64} {receive}")),
        (
            "sender_bytes12_fill_and_wrap",
            format!("{TX_BYTES12} WITH 0 HONEST 0 2 WITH 0 LEN IS_FULL TRY"),
        ),
        (
            "receiver_u8_slices",
            format!("{RX_U8} HONEST 255 15 7 SLICE 2 SLICE 3 HONEST 9 0 1 TRY IS_FULL"),
        ),
        (
            // The peer fills the sender's send buffer from its dup: the
            // wake-up of the publish that follows finds no room.
            "sender_full_then_timeouts",
            format!(
                "{TX_U64} SLICE 2 TRY WAKE W_FILL 2 TIMEOUT 6 WITH_TIMEOUT 0 7 PREPARE_WAIT \
                 ARMED 0 1 FORGE 0 0 0 TRY HONEST 1 0 TRY"
            ),
        ),
        (
            // A flood (spurious wake-ups, partly drained: prepare_wait says
            // retry), then stolen (prepare_wait says wait).
            "receiver_empty_then_timeouts",
            format!(
                "{RX_U64} TRY WAKE W_FLOOD 1 TIMEOUT 6 PREPARE_WAIT WAKE W_STEAL 2 PREPARE_WAIT \
                 WITH_TIMEOUT 0 7 HONEST 5 0 1 TIMEOUT 3"
            ),
        ),
        (
            "sender_read_index_past_write",
            format!("{TX_U64} TRY FORGE 0 0 5 TRY LEN WITH 0 PREPARE_WAIT TRY"),
        ),
        (
            "receiver_write_index_too_far",
            format!("{RX_U64} FORGE 0 0 4 TRY LEN SLICE 2 TIMEOUT 6"),
        ),
        (
            "receiver_write_index_goes_back",
            format!("{RX_U8} HONEST 100 0 3 TRY FORGE 0 0 8 WITH 0 IS_EMPTY"),
        ),
        (
            "indices_near_u64_max",
            format!("{TX_BYTES12} FORGE 1 0 6 OWN_INDEX 4 0 TRY IS_FULL"),
        ),
        (
            "indices_near_the_limit",
            format!("{RX_U64} FORGE 0 0 7 OWN_INDEX 5 1 TRY LEN"),
        ),
        (
            // Reopened 2 items below 2^62: lent only those, then exhausted.
            "sender_at_the_index_limit",
            format!("{TX_U64} FORGE 0 0 7 OWN_INDEX 5 0 REOPEN WITH 0 SLICE 2 TRY WITH 0 LEN"),
        ),
        (
            "sender_forge_inside_closures",
            format!("{TX_U64} WITH_PEER 0 0 0 0 5 WITH_PEER 1 0 1 0 9 1 2 3 4 5 6 7 8 TRY"),
        ),
        (
            "receiver_forge_inside_closures",
            format!("{RX_U64} HONEST 50 0 1 WITH_PEER 3 0 7 0 8 TRY WITH 0"),
        ),
        (
            // With the peer's end shut down for reading and the sender's for
            // writing (both harmless: its wake-ups fail with EPIPE).
            "armed_and_closed_words",
            format!(
                "{TX_U64} ARMED 0 1 TRY WAKE W_SHUTDOWN 1 ARMED 0 2 WITH 0 WAKE W_SHUT_HONEST 1 \
                 ARMED 0 1 TRY CLOSED 0 1 TRY TIMEOUT 3 PREPARE_WAIT"
            ),
        ),
        (
            // The receiver's send buffer full when it releases to an armed
            // producer.
            "producer_closed_after_items",
            format!(
                "{RX_U8} HONEST 3 0 9 WAKE W_FILL 2 ARMED 1 1 CLOSED 1 1 TRY TRY TRY TRY \
                 PREPARE_WAIT"
            ),
        ),
        (
            // The sender's socket shut down for reading through the dup: it
            // reads end-of-file, as if the peer hung up.
            "config_scribbled_then_reopen",
            format!(
                "{TX_U64} TRY CONFIG 7 6 1 TRY WAKE W_SHUT_HONEST 0 REOPEN SLICE 2 TIMEOUT 3 \
                 CONFIG 0 0 0 REOPEN"
            ),
        ),
        (
            "reopen_with_scribbled_own_index",
            format!("{RX_BYTES12} OWN_INDEX 9 0 1 2 3 4 5 6 7 8 REOPEN TRY LEN"),
        ),
        (
            "header_pokes_and_config_fill",
            format!("{TX_U8} POKE 128 0 2 6 3 LIVENESS 0 {fill} TRY LEN"),
        ),
        (
            "data_scribbled_under_the_receiver",
            format!("{RX_U64} HONEST 9 0 1 DATA 8 0 0 0 7 1 2 3 4 5 6 7 8 WITH 0 TRY"),
        ),
        (
            "punched_holes",
            format!("{TX_U64} TRY TRY PUNCH 0 0 0 0 0 16 0 0 TRY LEN WITH 0"),
        ),
        (
            "liveness_socket_dropped",
            "RING SENDER_U64 0 0 WAKE_REAL HOLD_ONE LIVE_SOCKET 0 | SLICE 2 TIMEOUT 3 \
             LIVENESS 1 PREPARE_WAIT TRY TIMEOUT 3"
                .into(),
        ),
        (
            "liveness_gone_receiver",
            "HANDMADE RECEIVER_U64 0 0 WAKE_REAL HOLD_ONE LIVE_GONE+SPIN_1US 0 | \
             TRY TIMEOUT 3 PREPARE_WAIT TRY"
                .into(),
        ),
        (
            "liveness_pidfd_default_spin",
            "HANDMADE RECEIVER_U8 0 0 WAKE_REAL HOLD_ONE LIVE_PIDFD+SPIN_DEFAULT 0 | \
             TIMEOUT 4 PREPARE_WAIT TRY"
                .into(),
        ),
        (
            // The peer keeps two copies of its end of a fresh pair: closing
            // one is no hang-up, closing both is.
            "handmade_two_page_offset",
            format!(
                "HANDMADE SENDER_U64 5 0 WAKE_FRESH HOLD_TWO LIVE_NONE 0 | {stream} SLICE 2 \
                 WAKE W_CLOSE_ONE 0 TIMEOUT 4 PREPARE_WAIT WAKE W_CLOSE_ONE 0 TIMEOUT 4 TRY"
            ),
        ),
        (
            "type_tags_match",
            "RING RECEIVER_U64 0 TAG_5EED+EXPECT_SAME_TAG WAKE_REAL HOLD_ONE LIVE_NONE 0 | TRY"
                .into(),
        ),
        (
            // The type tag is checked before the wake-up fd.
            "type_tags_differ",
            "RING SENDER_U64 0 TAG_MAX+EXPECT_OTHER_TAG WAKE_UNCONNECTED HOLD_ONE LIVE_NONE 0"
                .into(),
        ),
        (
            "another_item_type",
            "RING SENDER_U64+OTHER_RING_ITEM 0 0 WAKE_MEMFD HOLD_ONE LIVE_NONE 0".into(),
        ),
        (
            // read index 1, write index 200, the consumer armed.
            "indices_written_before_open",
            "RING SENDER_U64 0 0 WAKE_REAL HOLD_ONE LIVE_NONE 3 9 1 1 8 1 200 11 6 1 | TRY LEN"
                .into(),
        ),
        (
            "capacity_written_before_open",
            "RING SENDER_U64 0 0 WAKE_REAL HOLD_ONE LIVE_NONE 1 5 1 1".into(),
        ),
        (
            "config_filled_before_open",
            format!("HANDMADE RECEIVER_U64 0 0 WAKE_REAL HOLD_ONE LIVE_NONE FILL_CONFIG {fill}"),
        ),
        // The memfd is checked before the wake-up fd: these bad memfds come
        // with bad wake-up fds too.
        ("unsealed", "UNSEALED SENDER_U64 0 0 WAKE_EVENTFD".into()),
        ("missing_a_seal", "SOME_SEALS 5 RECEIVER_U64".into()),
        (
            "write_sealed",
            "SOME_SEALS 15 SENDER_U64 0 0 WAKE_INET".into(),
        ),
        ("future_write_sealed", "SOME_SEALS 23 RECEIVER_U8".into()),
        (
            // Handed over hung up: the peer is gone from the start.
            "sealed_exactly",
            "SOME_SEALS 7 SENDER_U64 0 0 WAKE_HUNG_UP HOLD_ONE LIVE_NONE 0 | \
             TRY TRY SLICE 2 TIMEOUT 3 PREPARE_WAIT TRY"
                .into(),
        ),
        ("too_small_empty", "TOO_SMALL 0 SENDER_U64".into()),
        (
            "too_small_767",
            "TOO_SMALL 2 RECEIVER_U64 0 0 WAKE_DGRAM".into(),
        ),
        ("too_small_page_less_one", "TOO_SMALL 4 SENDER_U8".into()),
        (
            "odd_size_larger",
            "ODD_SIZE 1 0 SENDER_U64 0 0 WAKE_PIPE".into(),
        ),
        ("odd_size_smaller", "ODD_SIZE 1 128 RECEIVER_U64".into()),
        (
            "regular_file",
            "REGULAR_FILE SENDER_U64 0 0 WAKE_SEQPACKET".into(),
        ),
        ("reopened_read_only", "REOPENED 0 SENDER_U64".into()),
        ("reopened_o_path", "REOPENED 2 RECEIVER_U64".into()),
        (
            // The peer hangs up mid-stream: the items come first, then
            // `Disconnected`, also after a reopen.
            "reopened_read_write",
            "REOPENED 3 RECEIVER_U64 0 0 WAKE_REAL HOLD_TWO LIVE_NONE 0 | \
             HONEST 3 0 1 WAKE W_CLOSE_ALL 0 TRY LEN REOPEN TRY TRY TIMEOUT 3 PREPARE_WAIT"
                .into(),
        ),
        ("pipe_as_memfd", "PIPE SENDER_U64".into()),
        ("eventfd_as_memfd", "EVENTFD RECEIVER_U64".into()),
        ("socket_as_memfd", "SOCKET SENDER_U64".into()),
        (
            "pipe_as_wake",
            "RING SENDER_U64 0 0 WAKE_PIPE HOLD_ONE LIVE_NONE 0".into(),
        ),
        (
            "memfd_as_wake",
            "RING RECEIVER_U64 0 0 WAKE_MEMFD HOLD_ONE LIVE_NONE 0".into(),
        ),
        (
            "eventfd_as_wake",
            "RING SENDER_U64 0 0 WAKE_EVENTFD HOLD_ONE LIVE_NONE 0".into(),
        ),
        (
            "datagram_socket_as_wake",
            "HANDMADE SENDER_U64 0 0 WAKE_DGRAM HOLD_ONE LIVE_NONE 0".into(),
        ),
        (
            "seqpacket_socket_as_wake",
            "RING RECEIVER_U8 0 0 WAKE_SEQPACKET HOLD_ONE LIVE_NONE 0".into(),
        ),
        (
            "unconnected_socket_as_wake",
            "HANDMADE RECEIVER_U64 0 0 WAKE_UNCONNECTED HOLD_ONE LIVE_NONE 0".into(),
        ),
        (
            "inet_socket_as_wake",
            "RING SENDER_BYTES12 0 0 WAKE_INET HOLD_ONE LIVE_NONE 0".into(),
        ),
        (
            // The hand-off socket is the liveness; the peer shuts its end of
            // the wake-up pair for writing, which the receiver reads as a
            // hang-up once it has the items.
            "handoff_well_formed",
            "RING RECEIVER_U64 0 0 WAKE_REAL HOLD_ONE HANDOFF 0 0 | \
             HONEST 2 0 1 TRY WAKE W_SHUTDOWN 0 TRY TIMEOUT 3 LIVENESS 1 TIMEOUT 3"
                .into(),
        ),
        (
            "handoff_bad_bytes",
            "RING SENDER_U64 0 0 WAKE_REAL HOLD_ONE HANDOFF 2 0".into(),
        ),
        (
            "handoff_short",
            "RING SENDER_U64 0 0 WAKE_REAL HOLD_ONE HANDOFF 3 0".into(),
        ),
        (
            "handoff_no_fds",
            "RING RECEIVER_U64 0 0 WAKE_REAL HOLD_ONE HANDOFF 16 0".into(),
        ),
        (
            "handoff_nine_fds",
            "RING SENDER_U64 0 0 WAKE_REAL HOLD_ONE HANDOFF 28 0".into(),
        ),
        ("known_try_send_blocks", SCRIPT_TRY_SEND_BLOCKS.into()),
        (
            "known_prepare_wait_blocks",
            SCRIPT_PREPARE_WAIT_BLOCKS.into(),
        ),
        (
            "known_prepare_wait_on_corrupted",
            SCRIPT_PREPARE_WAIT_ON_CORRUPTED.into(),
        ),
        (
            "known_gone_hides_corruption",
            SCRIPT_GONE_HIDES_CORRUPTION.into(),
        ),
    ];
    seeds
        .into_iter()
        .map(|(name, text)| (name, bytes(&text)))
        .collect()
}

#[test]
#[ignore = "writes fuzz/corpus/hostile_peer/ (and removes what is not a seed); run it after changing `seeds`"]
fn write_seed_corpus() {
    let _serial = serial();
    let dir = corpus_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let seeds = seeds();
    // Seeds no longer in the list go (the fuzzer's finds are kept elsewhere).
    for entry in std::fs::read_dir(&dir).unwrap() {
        let entry = entry.unwrap();
        if !seeds.iter().any(|(seed, _)| entry.file_name() == *seed) {
            std::fs::remove_file(entry.path()).unwrap();
        }
    }
    for (name, script) in seeds {
        std::fs::write(dir.join(name), script).unwrap();
    }
}

// ---- what the fuzzer found -------------------------------------------------

/// Runs `f` on a thread and fails if it has not returned after 5 s (the
/// thread is left blocked: the test binary exits anyway).
fn within_5s(what: &str, f: impl FnOnce() + Send + 'static) {
    let (done, wait) = mpsc::channel();
    std::thread::spawn(move || {
        f();
        let _ = done.send(());
    });
    match wait.recv_timeout(Duration::from_secs(5)) {
        Ok(()) => {}
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what} hung"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{what} panicked"),
    }
}

/// Every check on: what fdring promises, including what it does not do yet.
const STRICT: Options = Options {
    clear_nonblock: true,
    prepare_wait_sticky: true,
    corrupted_before_gone: true,
};

/// The peer fills the sender's send buffer from its dup of the sender's
/// socket (it shares the open file description), clears `O_NONBLOCK` on it
/// and arms the consumer: the sender's next publish sends a wake-up, which
/// a plain `write` would make wait until someone reads. (Found with
/// eventfds, which a peer could saturate: fdring then blocked in `write`.)
const SCRIPT_TRY_SEND_BLOCKS: &str = "RING SENDER_U64 0 0 WAKE_REAL NONBLOCKING LIVE_NONE 0 | \
     WAKE W_FILL 2 ARMED 0 1 WAKE W_FLAGS 0 TRY";

/// The same on the receiver's side: `prepare_wait` drains its socket, now
/// blocking and empty, where a plain `read` would wait for ever.
const SCRIPT_PREPARE_WAIT_BLOCKS: &str =
    "RING RECEIVER_U64 0 0 WAKE_REAL NONBLOCKING LIVE_NONE 0 | WAKE W_FLAGS 0 PREPARE_WAIT";

/// The producer's index jumps past the capacity (reported), then comes
/// back to the receiver's own: `prepare_wait` says "wait" on the corrupted
/// ring.
const SCRIPT_PREPARE_WAIT_ON_CORRUPTED: &str =
    "RING RECEIVER_U64 0 0 WAKE_REAL HOLD_ONE LIVE_NONE 0 | FORGE 0 0 4 TRY FORGE 0 0 0 PREPARE_WAIT TRY";

/// The consumer's index goes past the sender's (reported), then the peer's
/// process goes: the sender answers `Disconnected`, no longer `Corrupted`.
const SCRIPT_GONE_HIDES_CORRUPTION: &str =
    "RING SENDER_U64 0 0 WAKE_REAL HOLD_ONE LIVE_SOCKET 0 | FORGE 0 0 5 WITH 0 LIVENESS 1 PREPARE_WAIT TRY";

/// The same with the main sign of a peer's death: every copy of its end of
/// the wake-up pair closed.
const SCRIPT_HANG_UP_HIDES_CORRUPTION: &str =
    "RING SENDER_U64 0 0 WAKE_REAL HOLD_TWO LIVE_NONE 0 | FORGE 0 0 5 WITH 0 WAKE W_CLOSE_ONE 0 \
     WAKE W_CLOSE_ONE 0 PREPARE_WAIT TIMEOUT 3 TRY";

#[test]
fn the_finding_scripts_pass_with_every_check_off() {
    let _serial = serial();
    for script in [
        SCRIPT_TRY_SEND_BLOCKS,
        SCRIPT_PREPARE_WAIT_BLOCKS,
        SCRIPT_PREPARE_WAIT_ON_CORRUPTED,
        SCRIPT_GONE_HIDES_CORRUPTION,
        SCRIPT_HANG_UP_HIDES_CORRUPTION,
    ] {
        hostile::run_with(&bytes(script), Options::default());
    }
}

#[test]
fn try_send_returns_though_the_peer_cleared_o_nonblock() {
    let _serial = serial();
    within_5s("try_send", || {
        hostile::run_with(&bytes(SCRIPT_TRY_SEND_BLOCKS), STRICT)
    });
}

#[test]
fn prepare_wait_returns_though_the_peer_cleared_o_nonblock() {
    let _serial = serial();
    within_5s("prepare_wait", || {
        hostile::run_with(&bytes(SCRIPT_PREPARE_WAIT_BLOCKS), STRICT)
    });
}

#[test]
fn prepare_wait_on_a_corrupted_ring_says_retry() {
    let _serial = serial();
    hostile::run_with(&bytes(SCRIPT_PREPARE_WAIT_ON_CORRUPTED), STRICT);
}

#[test]
fn a_gone_peer_does_not_hide_a_corruption_from_the_sender() {
    let _serial = serial();
    hostile::run_with(&bytes(SCRIPT_GONE_HIDES_CORRUPTION), STRICT);
    hostile::run_with(&bytes(SCRIPT_HANG_UP_HIDES_CORRUPTION), STRICT);
}

/// The same four, at the level of the API, for whoever fixes them (the
/// first two in their wake-up socket form).
mod found_by_the_fuzzer {
    use std::os::fd::OwnedFd;
    use std::os::unix::net::UnixStream;
    use std::sync::atomic::Ordering;

    use fdring::{channel, Corruption, Error, Liveness, Receiver, Sender};
    use rustix::fs::OFlags;
    use rustix::net::SendFlags;

    use super::hostile::{Raw, CONSUMER_ARMED};
    use super::{serial, within_5s};

    /// Sends on `fd` until its send buffer is full.
    fn fill(fd: &OwnedFd) {
        let chunk = [0u8; 4096];
        let flags = SendFlags::DONTWAIT | SendFlags::NOSIGNAL;
        while rustix::net::send(fd, &chunk, flags).is_ok() {}
    }

    fn make_blocking(fd: &OwnedFd) {
        let flags = rustix::fs::fcntl_getfl(fd).unwrap();
        rustix::fs::fcntl_setfl(fd, flags - OFlags::NONBLOCK).unwrap();
    }

    #[test]
    fn try_send_returns_though_the_peer_made_its_socket_blocking_and_full() {
        let _serial = serial();
        within_5s("try_send", || {
            let (tx, _rx) = channel::<u64>(1).unwrap();
            let fds = tx.into_fds().unwrap();
            // A dup of the sender's own socket, as the ring's creator could
            // keep: the same open file description.
            let peer = fds.wake.try_clone().unwrap();
            let raw = Raw::map(&fds.memfd);
            let mut tx = Sender::<u64>::from_fds(fds).unwrap();
            fill(&peer);
            raw.u32_at(CONSUMER_ARMED).store(1, Ordering::SeqCst);
            make_blocking(&peer);
            assert_eq!(tx.try_send(1), Ok(()));
            assert_eq!(tx.stats().wakeups, 1);
        });
    }

    #[test]
    fn prepare_wait_returns_though_the_peer_made_its_socket_blocking() {
        let _serial = serial();
        within_5s("prepare_wait", || {
            let (tx, rx) = channel::<u64>(1).unwrap();
            let fds = rx.into_fds().unwrap();
            let peer = fds.wake.try_clone().unwrap();
            let mut rx = Receiver::<u64>::from_fds(fds).unwrap();
            make_blocking(&peer);
            assert_eq!(rx.prepare_wait(), Ok(true));
            drop(tx);
        });
    }

    #[test]
    fn prepare_wait_on_a_corrupted_receiver_says_retry_and_keeps_the_corruption() {
        let _serial = serial();
        let (tx, mut rx) = channel::<u64>(1).unwrap();
        let fds = tx.into_fds().unwrap();
        let raw = Raw::map(&fds.memfd);
        let cap = raw.capacity;
        raw.write_index().store(cap + 1, Ordering::Release);
        let first = Error::Corrupted(Corruption::IndexOutOfRange {
            write: cap + 1,
            read: 0,
            capacity: cap,
        });
        assert_eq!(rx.try_recv(), Err(first));
        // Back to a legal value: the ring is still corrupted, so there is
        // nothing to wait for.
        raw.write_index().store(0, Ordering::Release);
        assert_eq!(rx.prepare_wait(), Ok(false), "told to wait on a dead ring");
        raw.write_index().store(u64::MAX, Ordering::Release);
        let _ = rx.prepare_wait();
        let first = Error::Corrupted(Corruption::IndexOutOfRange {
            write: cap + 1,
            read: 0,
            capacity: cap,
        });
        assert_eq!(rx.try_recv(), Err(first), "the corruption changed");
    }

    #[test]
    fn a_corrupted_sender_stays_corrupted_when_its_peer_dies() {
        let _serial = serial();
        let (mut tx, rx) = channel::<u64>(1).unwrap();
        let fds = rx.into_fds().unwrap();
        let raw = Raw::map(&fds.memfd);
        let (ours, theirs) = UnixStream::pair().unwrap();
        tx.watch_peer(Liveness::socket(ours));
        raw.read_index().store(5, Ordering::Release);
        let corrupted = Error::Corrupted(Corruption::IndexOutOfRange {
            write: 0,
            read: 5,
            capacity: raw.capacity,
        });
        assert_eq!(tx.try_send_with(|slots| slots.len()), Err(corrupted));
        drop(theirs);
        assert_eq!(tx.prepare_wait(), Ok(false));
        let corrupted = Error::Corrupted(Corruption::IndexOutOfRange {
            write: 0,
            read: 5,
            capacity: raw.capacity,
        });
        assert_eq!(tx.try_send(1), Err(corrupted));
    }

    #[test]
    fn a_corrupted_sender_stays_corrupted_when_its_peer_hangs_up() {
        let _serial = serial();
        let (mut tx, rx) = channel::<u64>(1).unwrap();
        let fds = rx.into_fds().unwrap();
        let raw = Raw::map(&fds.memfd);
        raw.read_index().store(5, Ordering::Release);
        let corrupted = || {
            Error::Corrupted(Corruption::IndexOutOfRange {
                write: 0,
                read: 5,
                capacity: raw.capacity,
            })
        };
        assert_eq!(tx.try_send_with(|slots| slots.len()), Err(corrupted()));
        // The receiver's socket end, its last copy: a hang-up.
        drop(fds);
        assert_eq!(tx.prepare_wait(), Ok(false));
        assert_eq!(tx.try_send(1), Err(corrupted()));
        assert_eq!(
            tx.send_timeout(1, std::time::Duration::from_secs(5)),
            Err(corrupted())
        );
    }
}
