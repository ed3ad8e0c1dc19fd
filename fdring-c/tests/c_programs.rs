//! The C library from real C (and C++) programs, across processes: each
//! test compiles its program from `tests/c/` with the system `cc`
//! (`-Wall -Wextra -Werror -std=c11`), links the static library this
//! build made (`libfdring_c.a`, next to the test binary's profile
//! directory), hands it a ring's fds by inheritance, and checks what
//! arrives on the Rust side (or what the C side reports).
//!
//! With `FDRING_C_SANITIZE=1` the programs are built with
//! `-fsanitize=address,undefined` (CI runs the tests both ways).
//!
//! A test that cannot compile or find its program fails: it never passes
//! silently.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use fdring::service::Listener;
use fdring::{Builder, Error, Field, FrameReceiver, Rejection};

/// The items the two stream tests move.
const STREAM_ITEMS: u64 = 10_000_000;

/// `target/<profile>`, where cargo put `libfdring_c.a` when it built this
/// crate for the test.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/<test binary>
    exe.parent()
        .and_then(|deps| deps.parent())
        .expect("the test binary lies in target/<profile>/deps")
        .to_path_buf()
}

/// `libfdring_c.a` of this profile. `cargo test` builds only the rlib
/// for its tests, so the library must have been built first with the same
/// profile (`cargo build [--release] -p fdring-c`, as `.ci/run` does); a
/// missing one, or one older than a source of either crate, fails the
/// test rather than testing something else.
fn static_lib() -> PathBuf {
    let lib = profile_dir().join("libfdring_c.a");
    let built = std::fs::metadata(&lib)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| {
            panic!(
                "{} is missing: build it first with the same profile as this test \
                 (`cargo build --release -p fdring-c` before `cargo test --release -p fdring-c`)",
                lib.display()
            )
        });
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for dir in [manifest.join("src"), manifest.join("../src")] {
        if let Some(newer) = newest(&dir).filter(|&t| t > built) {
            panic!(
                "{} is older than a source in {} ({newer:?}): rebuild it with \
                 `cargo build -p fdring-c` (same profile) first",
                lib.display(),
                dir.display()
            );
        }
    }
    lib
}

/// The latest modification time of a file under `dir`.
fn newest(dir: &std::path::Path) -> Option<std::time::SystemTime> {
    let mut latest = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let time = if path.is_dir() {
            newest(&path)
        } else {
            entry.metadata().and_then(|m| m.modified()).ok()
        };
        latest = latest.max(time);
    }
    latest
}

fn sanitize() -> bool {
    std::env::var_os("FDRING_C_SANITIZE").is_some_and(|v| v == "1")
}

/// Compiles `<source>` (under `tests/c/`, or a path from this crate's
/// directory; C, or C++ for `.cpp`) into a program of its own name for
/// this test, and returns its path.
fn build(source: &str, name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out_dir =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(if sanitize() { "c-asan" } else { "c" });
    std::fs::create_dir_all(&out_dir).expect("creating the programs' directory");
    let out = out_dir.join(name);
    let cpp = source.ends_with(".cpp");
    let source_path = if source.contains('/') {
        dir.join(source)
    } else {
        dir.join("tests/c").join(source)
    };
    let mut command = Command::new(if cpp { "g++" } else { "cc" });
    command
        .arg(if cpp { "-std=c++17" } else { "-std=c11" })
        .args(["-Wall", "-Wextra", "-Werror", "-O2", "-g"])
        .arg("-I")
        .arg(dir.join("include"))
        .arg("-I")
        .arg(dir.join("tests/c"));
    if sanitize() {
        command.args(["-fsanitize=address,undefined", "-fno-omit-frame-pointer"]);
    }
    command
        .arg(source_path)
        .arg(static_lib())
        .args(["-lpthread", "-ldl", "-lm"])
        .arg("-o")
        .arg(&out);
    let output = command.output().expect("running the system C compiler");
    assert!(
        output.status.success(),
        "compiling {source} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    out
}

/// A command for a built program: under the sanitizers, any report fails
/// it (LeakSanitizer included: the library leaks nothing a C program must
/// free).
fn program(path: &PathBuf) -> Command {
    let mut command = Command::new(path);
    command.env("UBSAN_OPTIONS", "halt_on_error=1:print_stacktrace=1");
    command
}

fn assert_success(name: &str, output: &Output) {
    assert!(
        output.status.success(),
        "{name} failed ({}):\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn spawn(mut command: Command) -> Child {
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    // The command holds the parent's copies of the inherited fds: it is
    // dropped here, so that the child's death hangs up its socket.
    command.spawn().expect("spawning the C program")
}

fn finish(name: &str, child: Child) -> String {
    let output = child.wait_with_output().expect("waiting for the C program");
    assert_success(name, &output);
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn the_c_api_works_in_one_process() {
    let api = build("api.c", "api");
    let output = program(&api).output().expect("running api");
    assert_success("api", &output);
    assert!(String::from_utf8_lossy(&output.stdout).contains("api: 9 passed, 0 failed"));
}

#[test]
fn the_header_compiles_and_links_as_cpp17() {
    let check = build("header_check.cpp", "header_check");
    let output = program(&check).output().expect("running header_check");
    assert_success("header_check", &output);
    assert_eq!(String::from_utf8_lossy(&output.stdout), "c++: success\n");
}

#[test]
fn a_c_producer_streams_ten_million_items_to_a_rust_consumer_in_order() {
    let producer = build("stream_producer.c", "stream_producer");
    let (tx, mut rx) = Builder::new().capacity(1 << 16).build::<u64>().unwrap();
    let mut command = program(&producer);
    command.arg(STREAM_ITEMS.to_string());
    fdring::handoff::inherit(&mut command, "FDRING_RING", tx.into_fds().unwrap());
    let child = spawn(command);

    let mut expected = 0u64;
    let mut out_of_order = None;
    loop {
        match rx.recv_with(|items: &[u64]| {
            for &item in items {
                if item != expected && out_of_order.is_none() {
                    out_of_order = Some((expected, item));
                }
                expected += 1;
            }
            items.len()
        }) {
            Ok(_) => {}
            Err(Error::Disconnected) => break,
            Err(e) => panic!("receiving: {e}"),
        }
    }
    finish("stream_producer", child);
    assert_eq!(out_of_order, None, "(position, item) out of order");
    assert_eq!(expected, STREAM_ITEMS);
}

#[test]
fn a_rust_producer_streams_ten_million_items_to_a_c_consumer_in_order() {
    let consumer = build("stream_consumer.c", "stream_consumer");
    let (mut tx, rx) = Builder::new().capacity(1 << 16).build::<u64>().unwrap();
    let mut command = program(&consumer);
    command.arg(STREAM_ITEMS.to_string());
    fdring::handoff::inherit(&mut command, "FDRING_RING", rx.into_fds().unwrap());
    let child = spawn(command);

    let mut next = 0u64;
    while next < STREAM_ITEMS {
        let sent = tx
            .send_with(|slots| {
                let n = slots.len().min((STREAM_ITEMS - next) as usize).min(4096);
                for (i, slot) in slots[..n].iter_mut().enumerate() {
                    slot.write(next + i as u64);
                }
                n
            })
            .expect("sending to the C consumer");
        next += sent as u64;
    }
    drop(tx);
    let stdout = finish("stream_consumer", child);
    assert_eq!(stdout, format!("received {STREAM_ITEMS} items in order\n"));
}

#[test]
fn a_c_frame_producer_sends_frames_a_rust_frame_receiver_checks() {
    const FRAMES: u64 = 20_000;
    let producer = build("frame_producer.c", "frame_producer");
    let (tx, rx) = Builder::new().capacity(1 << 16).build::<u8>().unwrap();
    let mut rx = FrameReceiver::new(rx);
    let mut command = program(&producer);
    command.arg(FRAMES.to_string());
    fdring::handoff::inherit(&mut command, "FDRING_FRAMES", tx.into_fds().unwrap());
    let child = spawn(command);

    let mut index = 0u64;
    loop {
        let checked = rx.recv_frame_with_timeout(Duration::from_secs(60), |frame| {
            let len = (index % 1000) as usize;
            frame.tag() == index
                && frame.len() == len
                && frame
                    .iter()
                    .enumerate()
                    .all(|(j, &b)| u64::from(b) == (index + j as u64) % 251)
        });
        match checked {
            Ok(true) => index += 1,
            Ok(false) => panic!("frame {index} is not what the C producer should have sent"),
            Err(Error::Disconnected) => break,
            Err(e) => panic!("receiving frame {index}: {e}"),
        }
    }
    finish("frame_producer", child);
    assert_eq!(index, FRAMES);
}

#[test]
fn killing_the_c_producer_disconnects_the_rust_consumer() {
    const BEFORE: u64 = 1000;
    let producer = build("stream_producer.c", "stream_producer_stall");
    let (tx, mut rx) = Builder::new().capacity(1 << 12).build::<u64>().unwrap();
    let mut command = program(&producer);
    command.args([BEFORE.to_string(), "stall".to_owned()]);
    fdring::handoff::inherit(&mut command, "FDRING_RING", tx.into_fds().unwrap());
    let mut child = spawn(command);

    for i in 0..BEFORE {
        assert_eq!(rx.recv_timeout(Duration::from_secs(60)), Ok(i));
    }
    // The producer now waits forever without closing its end.
    assert_eq!(
        rx.recv_timeout(Duration::from_millis(50)),
        Err(Error::Timeout)
    );
    child.kill().expect("SIGKILL to the C producer");
    let status = child.wait().expect("reaping the C producer");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(60)),
        Err(Error::Disconnected)
    );
    let mut stderr = String::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut stderr);
    }
    assert!(stderr.is_empty(), "the C producer said: {stderr}");
}

#[test]
fn a_c_client_offers_a_ring_by_name_and_a_rust_listener_takes_it() {
    let by_name = build("../examples/c/by_name.c", "by_name");
    let name = format!("fdring-c-test-{}", std::process::id());
    let listener = Listener::bind(&name).unwrap();
    let mut command = program(&by_name);
    command.args(["send", &name, "100000"]);
    let child = spawn(command);

    let mut connection = listener.accept().unwrap();
    // The example names its item type with the tag 0x5e9.
    let mut rx = connection
        .take_receiver::<u64>(&Builder::new().type_tag(0x5e9))
        .unwrap();
    for i in 0..100_000u64 {
        assert_eq!(rx.recv_timeout(Duration::from_secs(60)), Ok(i));
    }
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(60)),
        Err(Error::Disconnected)
    );
    let stdout = finish("by_name send", child);
    assert_eq!(stdout, "by_name: sent 100000 items\n");
}

#[test]
fn a_c_client_and_a_rust_listener_that_disagree_on_the_item_size_both_refuse() {
    let by_name = build("../examples/c/by_name.c", "by_name_mismatch");
    let name = format!("fdring-c-test-mismatch-{}", std::process::id());
    let listener = Listener::bind(&name).unwrap();
    let mut command = program(&by_name);
    command.args(["send", &name, "10"]);
    let child = spawn(command);

    let mut connection = listener.accept().unwrap();
    let refused = connection
        .take_receiver::<u32>(&Builder::new())
        .unwrap_err();
    assert_eq!(
        refused,
        Error::Rejected(Rejection::Mismatch {
            field: Field::ItemSize,
            offered: 8,
            expected: 4
        })
    );
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("by_name: offering the ring: rejected:"),
        "{stderr}"
    );
}

#[test]
fn killing_the_c_consumer_disconnects_the_rust_producer() {
    const TAKEN: u64 = 100;
    let consumer = build("stream_consumer.c", "stream_consumer_stall");
    let (mut tx, rx) = Builder::new().capacity(1 << 12).build::<u64>().unwrap();
    let mut command = program(&consumer);
    command.args([TAKEN.to_string(), "stall".to_owned()]);
    fdring::handoff::inherit(&mut command, "FDRING_RING", rx.into_fds().unwrap());
    let mut child = spawn(command);

    // The consumer takes TAKEN items, says so, and stops reading: then
    // the ring fills up to its capacity, and no further.
    let items: Vec<u64> = (0..TAKEN).collect();
    tx.send_slice(&items).unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line, format!("took {TAKEN} items\n"));
    let mut sent = TAKEN;
    while tx.try_send(sent).is_ok() {
        sent += 1;
    }
    assert_eq!(tx.try_send(sent), Err(Error::Full));
    assert_eq!(sent, TAKEN + tx.capacity() as u64);
    assert!(!tx.is_abandoned());
    child.kill().expect("SIGKILL to the C consumer");
    let status = child.wait().expect("reaping the C consumer");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    assert_eq!(
        tx.send_timeout(0, Duration::from_secs(60)),
        Err(Error::Disconnected)
    );
    assert!(tx.is_abandoned());
    // What it never took comes back, in order.
    let unread = tx.take_unread().unwrap();
    assert_eq!(unread.len(), tx.capacity());
    assert_eq!(unread.first(), Some(&TAKEN));
}
