//! `stream_u64_batch`'s "C producer" row (issue 16): the producer is a C
//! program (`c_producer.c`) linked against `libfdring_c.a` and writing
//! through `fdring.h`'s reserve/commit calls; the consumer is this
//! process, as in the "fdring" row. The program is built once per bench
//! run, with the system `cc` and the library from `cargo build --release
//! -p fdring-c`; without a C compiler the row fails and says so.
//!
//! The roles are the other way round from the "fdring" row's processes
//! (the child produces, on the peer core; this process consumes, on its
//! own), and the clock runs from the child's "ready" to the last item
//! checked here.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::OnceLock;
use std::time::Instant;

use fdring::{handoff, Builder};

use crate::data::rx_side;
use crate::process::{Cfg, Gate, Run, PEER_CORE, RING_VAR};
use crate::{Res, CAP};

/// The C producer, built once: `Ok(path)` or why it could not be.
fn program() -> Result<PathBuf, String> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT.get_or_init(build).clone()
}

fn build() -> Result<PathBuf, String> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    // This binary is target/release/deps/compare-*: its profile's directory
    // holds libfdring_c.a once the library is built there.
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .ok_or("no target directory")?
        .to_path_buf();
    let target_dir = profile_dir.parent().ok_or("no target directory")?;
    let run = |command: &mut Command, what: &str| -> Result<(), String> {
        let out = command
            .output()
            .map_err(|e| format!("{what}: cannot run: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{what}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    };
    run(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args([
                "build",
                "--release",
                "--quiet",
                "-p",
                "fdring-c",
                "--target-dir",
            ])
            .arg(target_dir)
            .current_dir(&root),
        "cargo build -p fdring-c",
    )?;
    let out = profile_dir.join("fdring-bench-c-producer");
    run(
        Command::new("cc")
            .args(["-O3", "-std=c11", "-Wall", "-Wextra", "-Werror", "-I"])
            .arg(root.join("fdring-c/include"))
            .arg(root.join("benches/compare/c_producer.c"))
            .arg(profile_dir.join("libfdring_c.a"))
            .args(["-lpthread", "-ldl", "-lm", "-o"])
            .arg(&out),
        "cc c_producer.c",
    )?;
    Ok(out)
}

/// The C producer child against a Rust consumer here.
pub fn c_producer(c: &Cfg) -> Res<Run> {
    let program = program()?;
    let (tx, rx) = Builder::new().capacity(CAP).spin(c.spin).build::<u64>()?;
    let mut command = Command::new(program);
    command
        .arg(c.words().to_string())
        .arg(c.chunk.to_string())
        .arg(PEER_CORE.load(Ordering::Relaxed).to_string())
        .stdout(Stdio::piped());
    handoff::inherit(&mut command, &format!("{RING_VAR}0"), tx.into_fds()?);
    let mut child = command.spawn()?;
    drop(command);
    let mut out = BufReader::new(child.stdout.take().ok_or("no stdout")?);
    let mut line = String::new();
    out.read_line(&mut line)?;
    if line.trim_end() != "ready" {
        let _ = child.kill();
        let _ = child.wait();
        return Err(format!("c_producer: {}", line.trim_end()).into());
    }
    let start = Instant::now();
    let received = rx_side(rx, c, Gate::Parent);
    let secs = start.elapsed().as_secs_f64();
    line.clear();
    out.read_line(&mut line)?;
    let status = child.wait()?;
    let me = received?;
    if !status.success() || line.trim_end() != "done" {
        return Err(format!("c_producer: {status}: {}", line.trim_end()).into());
    }
    if !me.ok {
        return Err("wrong data received".into());
    }
    Ok(Run { secs, ..me })
}
