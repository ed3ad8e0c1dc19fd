//! The event-loop adapters with real runtimes and real child processes:
//! readiness after "would block" in edge-triggered cycles (mio and tokio),
//! a peer's close and a killed child delivered as events, the peer's
//! liveness fd registered too, 256 rings from 4 children served fairly by
//! one `mio::Poll`, cancellation of pending tokio futures without loss,
//! `AsyncRead`/`AsyncWrite`, loops that use no CPU while idle, all of
//! that for the frame ends too, and a service's listener served by the
//! same loops as the rings of the clients it accepted; and the
//! topologies (`Merge`, `Dispatch`, `Pool`), each one registration, in
//! both runtimes.
//!
//! The children are this test binary run again (`child_entry`), with the
//! rings inherited (`handoff::inherit`), or, for `service`, given only the
//! name to connect to.
//!
//! One file per idea: `peers` (the child roles several tests share),
//! `runtimes` (driving mio and tokio), `mio_readiness`, `fan_in`,
//! `tokio_futures`, `membarrier`, `idle`, `frames`, `service` and
//! `topology`.
//!
//! `FDRING_EDGE_CYCLES` sets the number of edge-triggered cycles (10^6 by
//! default, for mio and for tokio).

#[path = "../common/mod.rs"]
mod common;
#[path = "../support/raw.rs"]
mod raw;

mod fan_in;
mod frames;
mod idle;
mod membarrier;
mod mio_readiness;
mod peers;
mod runtimes;
mod service;
mod tokio_futures;
mod topology;

use std::time::Duration;

use common::{env, run_shared_role, start_watchdog, CHILD_ENV};

/// The entry point of every child process: runs the role named in
/// `FDRING_TEST_CHILD`, or nothing when run as a plain (ignored) test.
#[test]
#[ignore = "child process entry point, spawned by the tests"]
fn child_entry() {
    let Some(role) = env(CHILD_ENV) else {
        return;
    };
    // A child never outlives a failed or hung test for long.
    start_watchdog(Duration::from_secs(300));
    if run_shared_role(&role) {
        return;
    }
    match role.as_str() {
        "echo_go" => peers::role_echo_go(),
        "send_count_then_close" => peers::role_send_count_then_close(),
        "recv_count_then_close" => peers::role_recv_count_then_close(),
        "recv_count_slowly" => peers::role_recv_count_slowly(),
        "send_count_slowly" => peers::role_send_count_slowly(),
        "fan_in_producer" => fan_in::role_fan_in_producer(),
        "idle_then_send" => peers::role_idle_then_send(),
        "bytes_sink" => tokio_futures::role_bytes_sink(),
        "bytes_source" => tokio_futures::role_bytes_source(),
        "recv_without_membarrier" => membarrier::role_recv_without_membarrier(),
        "frames_mio_sink" => frames::role_frames_mio_sink(),
        "frames_tokio_sink" => frames::role_frames_tokio_sink(),
        "frames_send" => frames::role_frames_send(),
        "frames_recv" => frames::role_frames_recv(),
        "frames_idle" => frames::role_frames_idle(),
        "frames_idle_then_recv" => frames::role_frames_idle_then_recv(),
        "recv_frame_without_membarrier" => frames::role_recv_frame_without_membarrier(),
        "service_offer_receiver" => service::role_service_offer_receiver(),
        "topo_producer" => topology::role_topo_producer(),
        "topo_consumer" => topology::role_topo_consumer(),
        "topo_pool_worker" => topology::role_topo_pool_worker(),
        other => panic!("unknown child role {other}"),
    }
}
