//! `io::Write` / `io::Read` on byte rings, and the `Builder` options that
//! depend on what the system grants (huge pages, mlock).

use std::io::{ErrorKind, Read, Write};
use std::thread;

use fdring::{channel, Builder, Error, Exhaustion};

/// A deterministic byte pattern that never lines up with a page or a ring.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

#[test]
fn bytes_written_with_io_write_are_read_back_in_order_with_io_read_then_eof() {
    let (mut tx, mut rx) = channel::<u8>(4096).unwrap();
    let data = pattern(3 << 20);
    let sent = data.clone();
    let writer = thread::spawn(move || {
        // Uneven chunks, larger and smaller than the ring, across its wrap.
        let mut rest = &sent[..];
        let mut size = 1;
        while !rest.is_empty() {
            let n = size.min(rest.len());
            tx.write_all(&rest[..n]).unwrap();
            rest = &rest[n..];
            size = size * 3 % 10_007 + 1;
        }
        tx.flush().unwrap();
        // Dropping `tx` is the end of the file.
    });
    let mut received = Vec::new();
    rx.read_to_end(&mut received).unwrap();
    writer.join().unwrap();
    assert_eq!(received.len(), data.len());
    assert!(received == data, "the bytes differ");
    assert_eq!(rx.read(&mut [0; 16]).unwrap(), 0, "still end of file");
}

#[test]
fn io_read_waits_for_bytes_and_returns_what_is_ready() {
    let (mut tx, mut rx) = channel::<u8>(4096).unwrap();
    let reader = thread::spawn(move || {
        let mut buf = [0u8; 64];
        let n = rx.read(&mut buf).unwrap();
        buf[..n].to_vec()
    });
    thread::sleep(std::time::Duration::from_millis(50));
    tx.write_all(b"late").unwrap();
    assert_eq!(reader.join().unwrap(), b"late");
}

#[test]
fn io_write_to_a_dropped_receiver_is_a_broken_pipe() {
    let (mut tx, rx) = channel::<u8>(4096).unwrap();
    drop(rx);
    let err = tx.write(b"nobody reads this").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BrokenPipe);
    assert_eq!(tx.write(b"").unwrap(), 0, "an empty write does nothing");
}

#[test]
fn capacity_is_rounded_up_to_whole_pages_of_items() {
    let page = rustix::param::page_size();
    let (tx, rx) = channel::<u64>(1).unwrap();
    assert_eq!(tx.capacity(), page / 8);
    assert_eq!(rx.capacity(), tx.capacity());
    // 12-byte items: a whole number of pages needs a multiple of page / 4.
    let (tx, _rx) = channel::<[u32; 3]>(1).unwrap();
    assert_eq!(tx.capacity(), page / 4);
    assert_eq!(tx.capacity() * 12 % page, 0);
    // Items of exactly a page: no rounding.
    let (tx, _rx) = channel::<[[u8; 4096]; 1]>(3).unwrap();
    assert_eq!(tx.capacity() * 4096 % page, 0);
    assert!(tx.capacity() >= 3);
    let (tx, _rx) = channel::<u64>(page / 8 + 1).unwrap();
    assert_eq!(tx.capacity(), 2 * page / 8);
}

#[test]
fn huge_pages_work_or_fail_with_an_error_that_says_so() {
    match Builder::new()
        .capacity(1000)
        .huge_pages(true)
        .build::<u64>()
    {
        Ok((mut tx, mut rx)) => {
            // A huge-page ring holds a whole huge page of items.
            assert!(tx.capacity() >= 1000);
            assert_eq!(tx.capacity() * 8 % (2 << 20), 0);
            tx.send(5).unwrap();
            assert_eq!(rx.recv(), Ok(5));
        }
        Err(Error::Exhausted(Exhaustion::HugePages { requested, .. })) => {
            assert_eq!(requested, 2, "a header page and a data page");
        }
        Err(Error::Io { context, .. }) => {
            assert!(
                context.contains("huge"),
                "the error should name huge pages: {context}"
            );
        }
        Err(other) => panic!("unexpected error: {other}"),
    }
}

#[test]
fn mlock_works_or_fails_with_an_error_that_says_so() {
    match Builder::new().capacity(4096).mlock(true).build::<u64>() {
        Ok((mut tx, mut rx)) => {
            tx.send(5).unwrap();
            assert_eq!(rx.recv(), Ok(5));
        }
        Err(Error::Exhausted(Exhaustion::Memlock { requested, .. })) => {
            assert!(requested >= 8 * 4096, "the whole mapping: {requested}");
        }
        Err(other) => panic!("unexpected error: {other}"),
    }
}
