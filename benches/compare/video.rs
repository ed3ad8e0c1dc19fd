//! The video cases: 1080p RGBA frames (8,294,400 bytes), written once in
//! place by the sender and checked in place by the receiver, through
//! fdring's item ring (`frames_video`, each frame one item) and through its
//! frame layer (`frames_layer_video`), against the video peers of
//! BENCHMARKS.md and iceoryx2, each with room for 4 frames and, in the
//! `_2` cases, for 2 (issue 15, item 6).
//!
//! Every run starts with [`WARM`] frames off the clock (`Cfg::warm`): the
//! contenders that map their shared memory as they go (iceoryx2's data
//! segment, the receiver's view of fdring's ring) would otherwise spend
//! much of a short round in first-touch page faults, which a video
//! application that runs for minutes pays once. The cost of making and
//! opening the memory is `create_open`'s to measure.

use fdring::{FrameSender, Sender};

use crate::cases::{Case, Contender, GBPS};
use crate::floors::floor_memcpy;
use crate::frames::{fdring_frames, FRAME_ALIGN};
use crate::iceoryx::{iox_stream, FRAME_BUFFER};
use crate::ipc_channel::ipc_frames;
use crate::ours::fdring_stream;
use crate::peers::{io_stream, pipe, shmem_stream, unix};
use crate::process::Cfg;
use crate::{Frame, FRAME_RING, FRAME_WORDS};

/// Frames each run moves before its clock starts: twice the largest
/// buffer, enough for every contender to have touched all of its memory.
pub const WARM: u64 = 8;

/// The floor and the peers of BENCHMARKS.md's `frames_video`, raced by
/// both video cases with room for 4 frames.
const VIDEO_PEERS: [(&str, Contender); 4] = [
    ("floor memcpy", floor_memcpy),
    ("UnixStream", |c| io_stream(c, unix()?)),
    ("pipe", |c| io_stream(c, pipe()?)),
    ("shmem-ipc u8", shmem_stream),
];

/// BENCHMARKS.md's goals for `frames_video`, then issue 15's.
const VIDEO_GOALS: &[(&str, &str, f64)] = &[
    ("floor memcpy", "≥", 0.8),
    ("UnixStream", "≥", 2.0),
    ("pipe", "≥", 2.0),
    ("shmem-ipc u8", "≥", 1.0),
    ("iceoryx2", "≥", 1.0),
    ("ipc-channel", "≥", 3.0),
];

/// Issue 15's goal for the cases with room for 2 frames.
const VIDEO_2_GOALS: &[(&str, &str, f64)] = &[("iceoryx2", "≥", 1.0)];

/// fdring's item ring of `frames` frames.
fn items(c: &Cfg, frames: usize) -> crate::Res<crate::process::Run> {
    fdring_stream(c, frames, "fdring-frames", |t: Sender<Frame>| t)
}

/// fdring's frame layer, a ring of `frames` frame records.
fn layer(c: &Cfg, frames: usize) -> crate::Res<crate::process::Run> {
    let ring = FrameSender::capacity_for(frames, FRAME_WORDS * 8, FRAME_ALIGN);
    fdring_frames(c, ring, FRAME_ALIGN)
}

pub fn video_cases(quick: bool, base: Cfg) -> Vec<Case> {
    let timed = if quick { 30 } else { 120 };
    let cfg = Cfg {
        n: WARM + timed,
        wpm: FRAME_WORDS as u64,
        chunk: FRAME_WORDS,
        warm: WARM,
        ..base
    };
    let case = |name, contenders: Vec<(&'static str, Contender)>, goals| Case {
        name,
        cfg,
        metrics: &[GBPS],
        contenders,
        goals,
    };
    let with_peers = |mut own: Vec<(&'static str, Contender)>| {
        own.extend([
            ("iceoryx2", (|c| iox_stream(c, FRAME_BUFFER)) as Contender),
            ("ipc-channel", ipc_frames),
        ]);
        own.extend(VIDEO_PEERS);
        own
    };
    // Room for 2: fdring and iceoryx2 only, and the floor, which judges
    // the slow rounds.
    let two = |fdring: Contender| {
        vec![
            ("fdring", fdring),
            ("iceoryx2", |c| iox_stream(c, 2)),
            ("floor memcpy", floor_memcpy),
        ]
    };
    vec![
        case(
            "frames_video",
            with_peers(vec![
                ("fdring", |c| items(c, FRAME_RING)),
                ("fdring/mlock", |c| {
                    items(&Cfg { mlock: true, ..*c }, FRAME_RING)
                }),
            ]),
            VIDEO_GOALS,
        ),
        case("frames_video_2", two(|c| items(c, 2)), VIDEO_2_GOALS),
        case(
            "frames_layer_video",
            with_peers(vec![
                ("fdring", |c| layer(c, FRAME_RING)),
                ("fdring items", |c| items(c, FRAME_RING)),
            ]),
            VIDEO_GOALS,
        ),
        case("frames_layer_video_2", two(|c| layer(c, 2)), VIDEO_2_GOALS),
    ]
}
