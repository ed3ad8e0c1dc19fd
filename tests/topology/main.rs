//! The topologies (issue 14) with real processes on real rings: a `Merge`
//! of eight producer processes (order, ends, fairness, an idle merge that
//! sleeps), sources that corrupt their ring or flood their wake-up socket,
//! a `Pool` of worker processes killed at random and replaced, draining
//! (`wait_drained`, `close`) and taking back what a dead consumer never
//! read (`take_unread`), a `Dispatch` by each policy, a merge that serves a
//! service's listener as producers come and go, and a merge of frames.
//!
//! The children are this test binary run again (`child_entry`), each with
//! its rings inherited (`handoff::inherit`) or, for `joining`, given only
//! the service's name. A child that the parent steers reads its orders
//! from its stdin, one line each (`ChildProc::order`).
//!
//! One file per concept: `peers` (the child roles and how they are
//! started), `merge`, `hostile`, `pool`, `drain`, `dispatch`, `joining`
//! and `frames`.
//!
//! `FDRING_TOPO_ITEMS` sets the items of each of the eight producers of
//! the merge (10^6 by default), `FDRING_TOPO_JOBS` the jobs of the pool
//! (10^6 by default).

#[path = "../common/mod.rs"]
mod common;

mod dispatch;
mod drain;
mod frames;
mod hostile;
mod joining;
mod merge;
mod peers;
mod pool;

use std::time::Duration;

use common::{env, start_watchdog, CHILD_ENV};

/// The entry point of every child process: runs the role named in
/// `FDRING_TEST_CHILD`, or nothing when run as a plain (ignored) test.
#[test]
#[ignore = "child process entry point, spawned by the tests"]
fn child_entry() {
    let Some(role) = env(CHILD_ENV) else {
        return;
    };
    // A child never outlives a failed or hung test for long.
    start_watchdog(Duration::from_secs(120));
    match role.as_str() {
        peers::PRODUCER => peers::role_producer(),
        peers::SILENT => peers::role_silent(),
        peers::CONSUMER => peers::role_consumer(),
        peers::WORKER => peers::role_worker(),
        hostile::CORRUPTER => hostile::role_corrupter(),
        hostile::FLOODER => hostile::role_flooder(),
        joining::SERVICE_PRODUCER => joining::role_service_producer(),
        joining::SILENT_CLIENT => joining::role_silent_client(),
        other => panic!("unknown child role {other}"),
    }
}
