//! A merge of frames: three frame producers (threads), every frame
//! delivered whole, under its source's key, in each source's order.

use std::collections::HashMap;

use crate::common::{spawn_bounded, HANG};
use fdring::topology::{Key, Merge, Next};
use fdring::{Error, FrameReceiver, FrameSender};

const PRODUCERS: u64 = 3;
const FRAMES: u64 = 3000;

/// Frame `seq` of producer `p`: its tag and its bytes, of a length that
/// varies from 0 to 2 999 bytes so that the records wrap anywhere.
fn frame(p: u64, seq: u64) -> (u64, Vec<u8>) {
    let len = ((seq * 7919 + p * 131) % 3000) as usize;
    let bytes = (0..len).map(|i| (i as u64 ^ seq ^ p << 5) as u8).collect();
    (p << 32 | seq, bytes)
}

#[test]
fn a_merge_of_three_frame_producers_delivers_every_frame_in_order_under_its_key() {
    let mut merge = Merge::<FrameReceiver>::new().expect("merge");
    let mut producer_of: HashMap<Key, u64> = HashMap::new();
    let mut producers = Vec::new();
    for p in 0..PRODUCERS {
        let (tx, rx) = fdring::channel::<u8>(16 * 1024).expect("channel");
        producer_of.insert(merge.add(FrameReceiver::new(rx)).expect("add"), p);
        let mut tx = FrameSender::new(tx);
        producers.push(spawn_bounded(&format!("frames {p}"), move || {
            for seq in 0..FRAMES {
                let (tag, bytes) = frame(p, seq);
                tx.send_frame(tag, &bytes).expect("send_frame");
            }
            tx.close();
            assert_eq!(
                tx.send_frame(0, b"late"),
                Err(Error::Disconnected),
                "a closed frame sender sends nothing"
            );
            tx.wait_drained(HANG)
        }));
    }
    let mut next = [0u64; PRODUCERS as usize];
    let mut ended = [0u32; PRODUCERS as usize];
    let end = loop {
        let got = merge.recv_frame_with(|key, got| {
            let p = producer_of[&key];
            let (tag, bytes) = frame(p, next[p as usize]);
            assert_eq!(
                got.tag(),
                tag,
                "source {key} (producer {p}): the next frame's tag"
            );
            assert!(*got == bytes[..], "frame {tag:#x}: its bytes");
            next[p as usize] += 1;
        });
        match got {
            Ok(Next::Ready(..)) => {}
            Ok(Next::Ended(key, why)) => {
                let p = producer_of[&key] as usize;
                assert_eq!((why, next[p]), (Error::Disconnected, FRAMES));
                ended[p] += 1;
            }
            Ok(other) => panic!("{other:?}"),
            Err(e) => break e,
        }
    };
    assert_eq!(end, Error::Disconnected);
    assert_eq!((next, ended), ([FRAMES; 3], [1; 3]));
    for producer in producers {
        assert_eq!(
            producer.join_within(HANG),
            Ok(()),
            "wait_drained after close"
        );
    }
}
