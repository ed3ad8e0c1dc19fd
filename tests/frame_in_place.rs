//! Frames reserved and received in place in two steps
//! (`FrameSender::try_reserve_frame` / `commit_frame`,
//! `FrameReceiver::try_recv_frame_in_place` / `release_frame`): the same
//! records as the closure calls, interleaved with them either way; a
//! reservation or a lent frame dropped by another call moves nothing; a
//! commit or release without one is an error; a hostile record is
//! `Corrupted` before a byte of it is lent.

use std::time::Duration;

use fdring::{channel, Error, FrameReceiver, FrameSender};

fn pair(capacity: usize) -> (FrameSender, FrameReceiver) {
    let (tx, rx) = channel::<u8>(capacity).unwrap();
    (FrameSender::new(tx), FrameReceiver::new(rx))
}

fn write(ptr: *mut u8, bytes: &[u8]) {
    // SAFETY: the callers pass a reservation of at least `bytes.len()`.
    unsafe { ptr.copy_from_nonoverlapping(bytes.as_ptr(), bytes.len()) };
}

fn lent_bytes(frame: &fdring::LentFrame) -> Vec<u8> {
    // SAFETY: a frame lent and not yet released.
    unsafe { std::slice::from_raw_parts(frame.ptr, frame.len) }.to_vec()
}

#[test]
fn reserved_and_closure_frames_interleave_in_order_both_ways() {
    let (mut tx, mut rx) = pair(1 << 16);
    for i in 0..1000u64 {
        let payload = vec![i as u8; (i % 300) as usize];
        if i % 2 == 0 {
            let lent = tx
                .reserve_frame_timeout(payload.len() + 8, Duration::from_secs(10))
                .unwrap();
            assert_eq!(lent.ptr as usize % 8, 0, "payloads are aligned");
            write(lent.ptr, &payload);
            tx.commit_frame(payload.len(), i).unwrap();
        } else {
            tx.send_frame(i, &payload).unwrap();
        }
        if i % 3 == 0 {
            let frame = rx
                .recv_frame_in_place_timeout(Duration::from_secs(10))
                .unwrap();
            assert_eq!((frame.tag, lent_bytes(&frame)), (i, payload));
            rx.release_frame().unwrap();
        } else {
            let got = rx
                .recv_frame_with(|frame| (frame.tag(), frame.to_vec()))
                .unwrap();
            assert_eq!(got, (i, payload));
        }
    }
    assert_eq!(tx.stats().frames, 1000);
    assert_eq!(rx.stats().frames, 1000);
    drop(tx);
    assert_eq!(rx.try_recv_frame_in_place(), Err(Error::Disconnected));
}

#[test]
fn another_send_drops_a_reservation_and_publishes_only_its_own_frame() {
    let (mut tx, mut rx) = pair(4096);
    let lent = tx.try_reserve_frame(4).unwrap();
    write(lent.ptr, b"lost");
    tx.try_send_frame(1, b"kept").unwrap();
    assert_eq!(
        tx.commit_frame(4, 2),
        Err(Error::OverCommit { count: 4, lent: 0 })
    );
    let frame = rx.try_recv_frame_in_place().unwrap();
    assert_eq!((frame.tag, lent_bytes(&frame)), (1, b"kept".to_vec()));
    rx.release_frame().unwrap();
    assert_eq!(rx.try_recv_frame_in_place(), Err(Error::Empty));
    // A close drops it too.
    tx.try_reserve_frame(4).unwrap();
    tx.close();
    assert!(matches!(
        tx.commit_frame(4, 0),
        Err(Error::OverCommit { .. })
    ));
}

#[test]
fn another_receive_drops_a_lent_frame_which_is_lent_again() {
    let (mut tx, mut rx) = pair(4096);
    tx.try_send_frame(5, b"five").unwrap();
    let first = rx.try_recv_frame_in_place().unwrap();
    assert_eq!(first.tag, 5);
    // Not released: the closure call is lent the same frame.
    assert_eq!(rx.try_recv_frame_with(|frame| frame.tag()), Ok(5));
    assert_eq!(
        rx.release_frame(),
        Err(Error::OverCommit { count: 1, lent: 0 })
    );
    assert_eq!(rx.try_recv_frame_in_place(), Err(Error::Empty));
}

#[test]
fn a_reserve_that_does_not_fit_is_full_or_too_large_and_reserves_nothing() {
    let (mut tx, _rx) = pair(4096);
    let max = tx.max_frame_len();
    assert_eq!(
        tx.try_reserve_frame(max + 1),
        Err(Error::FrameTooLarge {
            len: max as u64 + 1,
            max: max as u64
        })
    );
    tx.try_send_frame(0, &vec![0; max]).unwrap();
    assert_eq!(tx.try_reserve_frame(1), Err(Error::Full));
    assert!(matches!(
        tx.commit_frame(0, 0),
        Err(Error::OverCommit { .. })
    ));
}

#[test]
fn raw_bytes_in_a_frame_stream_are_corruption_for_an_in_place_receive() {
    let (mut tx, rx) = channel::<u8>(4096).unwrap();
    let mut rx = FrameReceiver::new(rx);
    // A hostile sender writes a header whose length runs past what it
    // published.
    let mut header = [0u8; 24];
    header[0..8].copy_from_slice(&1_000_000u64.to_ne_bytes());
    header[20..24].copy_from_slice(b"FRM1");
    tx.send_slice(&header).unwrap();
    let corrupted = rx.try_recv_frame_in_place();
    assert!(
        matches!(corrupted, Err(Error::Corrupted(_))),
        "{corrupted:?}"
    );
    assert!(matches!(
        rx.try_recv_frame_in_place(),
        Err(Error::Corrupted(_))
    ));
    assert!(matches!(rx.release_frame(), Err(Error::OverCommit { .. })));
}
