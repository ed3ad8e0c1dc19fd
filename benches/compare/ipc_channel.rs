//! Servo's ipc-channel as a peer (issue 15): typed channels over Unix
//! sockets, handed to the child through a one-shot server.
//!
//! The child makes the channels it needs, connects to the parent's
//! `IpcOneShotServer` (its name in `SERVER_VAR`) and sends it the ends the
//! parent keeps; the parent accepts before the clock starts. The blocking
//! ping-pong moves a `u64` through `IpcSender<u64>` / `IpcReceiver<u64>`;
//! frames go through `IpcBytesSender` / `IpcBytesReceiver`, ipc-channel's
//! way for bytes with no serialization (a `Vec<u8>` through `IpcSender`
//! would be serialized byte by byte).

use ipc_channel::ipc::{self, IpcBytesReceiver, IpcBytesSender, IpcOneShotServer};
use ipc_channel::ipc::{IpcReceiver, IpcSender};

use crate::data::{check, fill_init, pingpong_side, rx_side, tx_side, Duplex, Rx, Tx};
use crate::process::{child_with_env, pair, Cfg, Gate, Run};
use crate::Res;

/// How the child finds its parent's one-shot server.
pub const SERVER_VAR: &str = "FDRING_BENCH_IPC_SERVER";

/// The parent's end of a ping-pong: pings out, pongs in.
type PingEnd = (IpcSender<u64>, IpcReceiver<u64>);

/// Sends to the first, receives from the second.
pub struct IpcPair(IpcSender<u64>, IpcReceiver<u64>);

impl Duplex for IpcPair {
    fn send(&mut self, v: u64) -> Res<()> {
        Ok(self.0.send(v)?)
    }
    fn recv(&mut self) -> Res<u64> {
        Ok(self.1.recv()?)
    }
}

/// Runs `role` as a child that connects to `server` (by `name`) and
/// sends what it hands over before it reports ready; accepts it.
macro_rules! handed {
    ($role:expr, $c:expr, $server:expr, $name:expr) => {{
        let peer = child_with_env($role, $c, vec![], vec![], &[(SERVER_VAR, &$name)])?;
        // The child's message is already in the socket: accepting does
        // not wait for it.
        match $server.accept() {
            Ok((_, theirs)) => (peer, theirs),
            Err(e) => {
                peer.abandon();
                return Err(e.into());
            }
        }
    }};
}

/// The child's half of `handed!`: connects to the parent's server and
/// sends `mine`.
macro_rules! hand {
    ($mine:expr) => {{
        let server = std::env::var(SERVER_VAR)?;
        IpcSender::connect(server)?.send($mine)?;
    }};
}

pub fn ipc_pingpong(c: &Cfg) -> Res<Run> {
    let (server, name) = IpcOneShotServer::<PingEnd>::new()?;
    let (peer, (ping, pong)) = handed!("ipc-pong", c, server, name);
    pair(peer, |gate| {
        pingpong_side(IpcPair(ping, pong), c, true, gate)
    })
}

/// The child's side of [`ipc_pingpong`].
pub fn ipc_pong(c: &Cfg, gate: Gate) -> Res<Run> {
    let (ping_tx, ping_rx) = ipc::channel::<u64>()?;
    let (pong_tx, pong_rx) = ipc::channel::<u64>()?;
    hand!((ping_tx, pong_rx));
    pingpong_side(IpcPair(pong_tx, ping_rx), c, false, gate)
}

/// Frames as byte messages: a buffer filled, then sent whole; received
/// into a fresh `Vec<u8>` (ipc-channel's `recv` returns one), then
/// checked.
pub struct IpcFrames<T>(T, Vec<u64>);

impl Tx for IpcFrames<IpcBytesSender> {
    fn put(&mut self, first: u64, max: usize) -> Res<usize> {
        self.1.resize(max, 0);
        fill_init(&mut self.1, first);
        self.0.send(bytemuck::cast_slice(&self.1))?;
        Ok(max)
    }
}

impl Rx for IpcFrames<IpcBytesReceiver> {
    fn take(&mut self, first: u64, max: usize) -> Res<(usize, u64)> {
        let bytes = self.0.recv()?;
        let wrong_length = u64::from(bytes.len() != max * 8);
        // A `Vec<u8>` need not be 8-aligned; a large one is, in practice.
        let diff = match bytemuck::try_cast_slice::<u8, u64>(&bytes) {
            Ok(words) => check(words, first),
            Err(_) => {
                let words = bytes.len() / 8;
                self.1.resize(words, 0);
                bytemuck::cast_slice_mut(&mut self.1).copy_from_slice(&bytes[..words * 8]);
                check(&self.1, first)
            }
        };
        Ok((max, diff | wrong_length))
    }
}

pub fn ipc_frames(c: &Cfg) -> Res<Run> {
    let (server, name) = IpcOneShotServer::<IpcBytesSender>::new()?;
    let (peer, frames) = handed!("ipc-frames", c, server, name);
    pair(peer, |gate| tx_side(IpcFrames(frames, Vec::new()), c, gate))
}

/// The child's side of [`ipc_frames`].
pub fn ipc_frames_rx(c: &Cfg, gate: Gate) -> Res<Run> {
    let (frames_tx, frames_rx) = ipc::bytes_channel()?;
    hand!(frames_tx);
    rx_side(IpcFrames(frames_rx, Vec::new()), c, gate)
}
