//! The untyped ends (`UntypedSender`, `UntypedReceiver`): the same ring
//! and the same checks as the typed ends, for item layouts known only at
//! run time (the C library's). A layout that is not the ring's is refused
//! at open; a commit or release of more than was lent is an error and
//! moves nothing; a hostile peer's indices are `Corrupted`, sticky, never a
//! lent pointer out of the ring; a peer that closes or dies is
//! `Disconnected`.

use std::sync::atomic::Ordering;
use std::time::Duration;

use fdring::{Builder, Corruption, Error, ItemLayout, Rejection};

#[path = "support/raw.rs"]
mod raw;

use raw::Raw;

const U64: ItemLayout = ItemLayout::new(8, 8);

#[test]
fn untyped_and_typed_ends_of_one_layout_share_a_ring_both_ways() {
    let (mut tx, rx) = Builder::new().capacity(512).build_untyped(U64).unwrap();
    let mut typed_rx = fdring::Receiver::<u64>::from_fds(rx.into_fds().unwrap()).unwrap();
    let lent = tx.reserve(3).unwrap();
    assert!(lent.len >= 3);
    for i in 0..3 {
        // SAFETY: three free slots of 8 bytes, aligned to 8, are lent.
        unsafe { lent.ptr.cast::<u64>().add(i).write(10 + i as u64) };
    }
    tx.commit(3).unwrap();
    assert_eq!(typed_rx.try_recv(), Ok(10));

    let (mut typed_tx, rx) = fdring::channel::<u64>(512).unwrap();
    let mut rx = Builder::new()
        .open_untyped_receiver(rx.into_fds().unwrap(), U64)
        .unwrap();
    typed_tx.send_slice(&[7, 8]).unwrap();
    let lent = rx.try_reserve(usize::MAX).unwrap();
    assert_eq!(lent.len, 2);
    // SAFETY: two published items of 8 bytes, aligned.
    assert_eq!(unsafe { lent.ptr.cast::<u64>().add(1).read() }, 8);
    rx.release(2).unwrap();
    assert!(typed_tx.is_empty());
}

#[test]
fn a_layout_that_is_not_the_rings_is_refused_at_open() {
    for (size, align) in [(4, 4), (8, 4), (16, 8), (8, 16)] {
        let (tx, _rx) = fdring::channel::<u64>(512).unwrap();
        let refused = Builder::new()
            .open_untyped_sender(tx.into_fds().unwrap(), ItemLayout::new(size, align))
            .unwrap_err();
        assert!(
            matches!(
                refused,
                Error::Rejected(Rejection::ItemSize { .. } | Rejection::ItemAlign { .. })
            ),
            "{size}/{align}: {refused:?}"
        );
    }
}

#[test]
fn a_bad_layout_is_refused_at_build() {
    let build = |size, align| {
        Builder::new()
            .capacity(64)
            .build_untyped(ItemLayout::new(size, align))
            .map(drop)
    };
    assert_eq!(build(0, 1), Err(Error::Rejected(Rejection::ZeroSizedItem)));
    for (size, align) in [(12, 8), (12, 3), (8, 0), (1 << 20, 1 << 20)] {
        assert!(
            matches!(
                build(size, align),
                Err(Error::Rejected(Rejection::BadAlign { .. }))
            ),
            "{size}/{align}"
        );
    }
    assert!(matches!(
        build(usize::MAX, 1),
        Err(Error::Rejected(Rejection::BadCapacity { .. }))
    ));
}

#[test]
fn committing_more_than_was_lent_moves_nothing() {
    let (mut tx, mut rx) = Builder::new().capacity(512).build_untyped(U64).unwrap();
    // Nothing reserved yet.
    assert_eq!(tx.commit(1), Err(Error::OverCommit { count: 1, lent: 0 }));
    let lent = tx.try_reserve(1).unwrap().len;
    assert_eq!(
        tx.commit(lent + 1),
        Err(Error::OverCommit {
            count: lent as u64 + 1,
            lent: lent as u64
        })
    );
    assert_eq!(tx.len(), 0);
    // Two commits out of one reservation.
    tx.commit(2).unwrap();
    tx.commit(3).unwrap();
    assert_eq!(
        tx.commit(lent - 4),
        Err(Error::OverCommit {
            count: lent as u64 - 4,
            lent: lent as u64 - 5
        })
    );
    assert_eq!(rx.len(), 5);
    assert_eq!(rx.try_reserve(1).unwrap().len, 5);
    assert!(matches!(rx.release(6), Err(Error::OverCommit { .. })));
    assert_eq!(rx.len(), 5);
    rx.release(5).unwrap();
    // A failed reserve takes back what the last one lent.
    assert_eq!(rx.try_reserve(1), Err(Error::Empty));
    assert_eq!(rx.release(1), Err(Error::OverCommit { count: 1, lent: 0 }));
}

#[test]
fn a_hostile_producer_index_is_sticky_corruption_for_an_untyped_receiver() {
    let (tx, rx) = Builder::new().capacity(512).build_untyped(U64).unwrap();
    let mut rx = rx;
    let fds = tx.into_fds().unwrap();
    let raw = Raw::map(&fds.memfd);
    let cap = raw.capacity;
    raw.write_index().store(cap + 1, Ordering::Release);
    let expected = Error::Corrupted(Corruption::IndexOutOfRange {
        write: cap + 1,
        read: 0,
        capacity: cap,
    });
    assert_eq!(rx.try_reserve(1), Err(expected));
    raw.write_index().store(1, Ordering::Release);
    assert!(matches!(rx.try_reserve(1), Err(Error::Corrupted(_))));
    assert!(matches!(
        rx.reserve_timeout(1, Duration::from_millis(1)),
        Err(Error::Corrupted(_))
    ));
    drop(fds);
}

#[test]
fn a_hostile_consumer_index_is_sticky_corruption_for_an_untyped_sender() {
    let (mut tx, rx) = Builder::new().capacity(512).build_untyped(U64).unwrap();
    let fds = rx.into_fds().unwrap();
    let raw = Raw::map(&fds.memfd);
    let cap = raw.capacity;
    let lent = tx.try_reserve(usize::MAX).unwrap();
    assert_eq!(lent.len as u64, cap);
    tx.commit(lent.len).unwrap();
    raw.read_index().store(cap + 5, Ordering::Release);
    let corrupted = tx.try_reserve(1);
    assert_eq!(
        corrupted,
        Err(Error::Corrupted(Corruption::IndexOutOfRange {
            write: cap,
            read: cap + 5,
            capacity: cap,
        }))
    );
    raw.read_index().store(cap, Ordering::Release);
    assert!(matches!(tx.try_reserve(1), Err(Error::Corrupted(_))));
    drop(fds);
}

#[test]
fn a_receiver_that_leaves_disconnects_an_untyped_sender() {
    let (mut tx, rx) = Builder::new().capacity(512).build_untyped(U64).unwrap();
    drop(rx);
    assert!(tx.is_abandoned());
    assert_eq!(tx.try_reserve(1), Err(Error::Disconnected));
    assert_eq!(
        tx.reserve_timeout(1, Duration::from_secs(10)),
        Err(Error::Disconnected)
    );
}

#[test]
fn a_closed_sender_leaves_its_items_then_disconnects_an_untyped_receiver() {
    let (mut tx, mut rx) = Builder::new().capacity(512).build_untyped(U64).unwrap();
    tx.try_reserve(2).unwrap();
    tx.commit(2).unwrap();
    tx.close();
    assert_eq!(tx.try_reserve(1), Err(Error::Disconnected));
    assert_eq!(rx.reserve(1).unwrap().len, 2);
    rx.release(2).unwrap();
    assert_eq!(rx.reserve(1), Err(Error::Disconnected));
}
