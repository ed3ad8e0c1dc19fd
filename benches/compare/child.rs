//! The child process: this binary run again with `--role NAME CORE CFG...`
//! plays one side of a contender, with the fds its parent handed it.

use std::fs::File;
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::ExitCode;
use std::sync::atomic::Ordering;

use fdring::{handoff, Builder};
use shmem_ipc::sharedring;

use crate::connect::{serve_fdring, serve_unix};
use crate::create_open::{open_fdring, open_iox};
use crate::data::{pingpong_side, rx_side};
use crate::fan_in::producer_side;
use crate::floors::{Floor, FloorPair, Line, Shm};
use crate::frames::{frame_batches_rx, frames_rx, Packets, Prefixed};
use crate::iceoryx::{iox_pong, iox_stream_rx};
use crate::ipc_channel::{ipc_frames_rx, ipc_pong};
use crate::many_rings::{many_rx_side, MANY_RINGS, RINGS_VAR};
use crate::ours::{FdPair, One};
use crate::peers::{shmem_open, Io, IoPair, Patience, ShmPair, ShmRx};
use crate::process::{pin, Cfg, Gate, Run, FDS_VAR, PEER_CORE, RING_VAR};
use crate::worker_pool::{fdring_worker, unix_worker};
use crate::{Frame, Res};

pub fn child_main(args: &[String]) -> ExitCode {
    let result = (|| -> Res<Run> {
        let [role, core, cfg @ ..] = args else {
            return Err("usage: --role NAME CORE CFG...".into());
        };
        PEER_CORE.store(core.parse()?, Ordering::Relaxed);
        pin(core.parse()?);
        play(role, &Cfg::parse(cfg)?)
    })();
    match result {
        Ok(r) => println!(
            "done {} {} {} {} {}",
            r.ok, r.allocs, r.writes, r.sleeps, r.warm_at
        ),
        Err(e) => println!("error {e}"),
    }
    ExitCode::SUCCESS
}

/// The child's side of each contender.
pub fn play(role: &str, c: &Cfg) -> Res<Run> {
    let ring = |i: usize| handoff::inherited(&format!("{RING_VAR}{i}"));
    let builder = Builder::new().spin(c.spin).mlock(c.mlock);
    let mut fds: Vec<OwnedFd> = match std::env::var(FDS_VAR) {
        Ok(v) if !v.is_empty() => v
            .split(',')
            .map(|n| {
                // SAFETY: the parent passed these fds to this process alone,
                // and nothing else here owns them.
                Ok(unsafe { OwnedFd::from_raw_fd(n.parse()?) })
            })
            .collect::<Res<_>>()?,
        _ => Vec::new(),
    };
    let mut file = || -> Res<File> { Ok(File::from(fds.remove(0))) };
    let gate = Gate::Child;
    match role {
        "fdring" => rx_side(builder.open_receiver::<u64>(ring(0)?)?, c, gate),
        "connect-fdring" => serve_fdring(c, builder, gate),
        "connect-unix" => serve_unix(c, gate),
        "create-open-fdring" => open_fdring(c, fds.remove(0), builder, gate),
        "create-open-iox" => open_iox(c, fds.remove(0), gate),
        "fdring-many" => {
            let count = match std::env::var(RINGS_VAR) {
                Ok(count) => count.parse()?,
                Err(_) => MANY_RINGS,
            };
            let rings = (0..count)
                .map(|i| Ok(builder.open_receiver::<u64>(ring(i)?)?))
                .collect::<Res<Vec<_>>>()?;
            many_rx_side(rings, c, gate)
        }
        "fan-in-fdring" => {
            let ticket = fds.remove(0);
            producer_side(builder.open_sender::<u64>(ring(0)?)?, c, ticket, gate)
        }
        "fan-in-io" => {
            let (ticket, stream) = (file()?, file()?);
            producer_side(Io(stream, Vec::new()), c, ticket.into(), gate)
        }
        "pool-fdring" => {
            let jobs = builder.open_receiver::<u64>(ring(0)?)?;
            fdring_worker(jobs, builder.open_sender::<u64>(ring(1)?)?, gate)
        }
        "pool-io" => unix_worker(file()?, gate),
        "fdring-one" => rx_side(One(builder.open_receiver::<u64>(ring(0)?)?), c, gate),
        "fdring-frames" => rx_side(builder.open_receiver::<Frame>(ring(0)?)?, c, gate),
        "fdring-pong" => {
            let rx = builder.open_receiver(ring(0)?)?;
            let tx = builder.open_sender(ring(1)?)?;
            pingpong_side(
                FdPair {
                    tx,
                    rx,
                    busy: c.busy,
                },
                c,
                false,
                gate,
            )
        }
        "floor" => rx_side(Floor::new(Shm::map(&fds.remove(0))?), c, gate),
        "fdring-framebatches" => frame_batches_rx(builder.open_receiver(ring(0)?)?, c, gate),
        "fdring-framelayer" => frames_rx(builder.open_receiver(ring(0)?)?, c, gate),
        "packets" => rx_side(Packets(fds.remove(0), Vec::new()), c, gate),
        "prefixed" => rx_side(Prefixed::reader(file()?), c, gate),
        "floor-pong" => {
            let rx = Floor::new(Shm::map(&fds.remove(0))?);
            let tx = Floor::new(Shm::map(&fds.remove(0))?);
            pingpong_side(FloorPair { tx, rx }, c, false, gate)
        }
        "line-pong" => {
            let shm = Shm::map(&fds.remove(0))?;
            pingpong_side(
                Line {
                    shm,
                    mine: 1,
                    last: 0,
                },
                c,
                false,
                gate,
            )
        }
        "io" => rx_side(Io(file()?, Vec::new()), c, gate),
        "io-pong" => pingpong_side(IoPair(file()?, file()?), c, false, gate),
        "shmem" => {
            let (capacity, m, e, f) = shmem_open(&mut fds)?;
            let rx = sharedring::Receiver::open(capacity, m, e, f)?;
            rx_side(ShmRx(rx, Patience(c.spin, None)), c, gate)
        }
        "shmem-pong" => {
            let (capacity, m, e, f) = shmem_open(&mut fds)?;
            let rx = sharedring::Receiver::open(capacity, m, e, f)?;
            let (capacity, m, e, f) = shmem_open(&mut fds)?;
            let tx = sharedring::Sender::open(capacity, m, e, f)?;
            pingpong_side(ShmPair(tx, rx), c, false, gate)
        }
        "iox-stream" => iox_stream_rx(c, gate),
        "iox-pong-spin" => iox_pong(c, false, gate),
        "iox-pong-block" => iox_pong(c, true, gate),
        "ipc-pong" => ipc_pong(c, gate),
        "ipc-frames" => ipc_frames_rx(c, gate),
        _ => Err(format!("unknown role {role}").into()),
    }
}
