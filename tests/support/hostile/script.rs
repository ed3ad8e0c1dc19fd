//! Reading a script: its bytes front to back, and what they stand for
//! before anything is made from them (the item types, the values the peer
//! writes, the header fields it aims at). Knows nothing of fds, of the
//! honest end, or of what the peer has done so far.

use bytemuck::Pod;

use super::{
    CAPACITY, CLOSED_CONSUMER, CLOSED_PRODUCER, CONSUMER_ARMED, DATA_OFFSET, FLAGS, INDEX_LIMIT,
    ITEM_ALIGN, ITEM_SIZE, MAGIC, PRODUCER_ARMED, READ_INDEX, TYPE_TAG, VERSION, WAKE_INODES,
    WRITE_INDEX,
};

// ---- reading the script ----------------------------------------------------

/// The bytes of a script, read front to back; zeros once they run out.
pub(super) struct Script<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Script<'a> {
    pub(super) fn new(data: &'a [u8]) -> Script<'a> {
        Script { data, pos: 0 }
    }

    pub(super) fn done(&self) -> bool {
        self.pos >= self.data.len()
    }

    pub(super) fn byte(&mut self) -> u8 {
        match self.data.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                b
            }
            None => 0,
        }
    }

    /// A number in `0..n`, for `n <= 256`.
    pub(super) fn below(&mut self, n: usize) -> usize {
        usize::from(self.byte()) % n
    }

    pub(super) fn bit(&mut self) -> bool {
        self.byte() & 1 == 1
    }

    pub(super) fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    pub(super) fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }

    pub(super) fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | u64::from(self.u32()) << 32
    }
}

// ---- items -----------------------------------------------------------------

/// The item types the honest end is opened with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ItemKind {
    U64,
    Bytes12,
    U8,
}

impl ItemKind {
    pub(super) fn from_index(n: usize) -> ItemKind {
        match n % 3 {
            0 => ItemKind::U64,
            1 => ItemKind::Bytes12,
            _ => ItemKind::U8,
        }
    }

    pub(super) fn index(self) -> usize {
        self as usize
    }

    pub(super) fn size(self) -> u64 {
        match self {
            ItemKind::U64 => 8,
            ItemKind::Bytes12 => 12,
            ItemKind::U8 => 1,
        }
    }

    pub(super) fn align(self) -> u64 {
        match self {
            ItemKind::U64 => 8,
            ItemKind::Bytes12 | ItemKind::U8 => 1,
        }
    }

    /// The least capacity whose data region is a whole number of pages.
    pub(super) fn step(self, page: u64) -> u64 {
        page / gcd(page, self.size())
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// An item type, with a value for every position in the stream.
pub(super) trait Item: Pod + PartialEq + std::fmt::Debug {
    fn seq(i: u64) -> Self;
}

impl Item for u64 {
    fn seq(i: u64) -> u64 {
        i.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }
}

impl Item for [u8; 12] {
    fn seq(i: u64) -> [u8; 12] {
        let mut b = [0; 12];
        b[..8].copy_from_slice(&i.to_le_bytes());
        b[8..].copy_from_slice(&(!(i as u32)).to_le_bytes());
        b
    }
}

impl Item for u8 {
    fn seq(i: u64) -> u8 {
        i as u8 ^ 0xa5
    }
}

// ---- values the peer writes ------------------------------------------------

/// Values worth trying in any field.
const INTERESTING: [u64; 16] = [
    0,
    1,
    2,
    3,
    7,
    8,
    12,
    128,
    768,
    4096,
    8192,
    u32::MAX as u64,
    1 << 32,
    fdring::MAGIC,
    1 << 62,
    i64::MAX as u64,
];

/// How to make a value from the current contents of a field.
#[derive(Debug, Clone, Copy)]
pub(super) struct ValueSpec {
    kind: u8,
    k: u8,
    wide: u64,
}

impl ValueSpec {
    pub(super) fn parse(s: &mut Script) -> ValueSpec {
        let kind = s.byte() % 10;
        let k = s.byte();
        let wide = if kind == 9 { s.u64() } else { 0 };
        ValueSpec { kind, k, wide }
    }

    pub(super) fn resolve(self, current: u64, cap: u64) -> u64 {
        let k = u64::from(self.k);
        match self.kind {
            0 => k,
            1 => current.wrapping_add(k),
            2 => current.wrapping_sub(k),
            3 => current
                .wrapping_add(cap)
                .wrapping_add(k % 3)
                .wrapping_sub(1),
            4 => u64::MAX - k,
            5 => (INDEX_LIMIT - 2).wrapping_add(k % 4),
            6 => INTERESTING[self.k as usize % INTERESTING.len()],
            7 => 1 << (k % 64),
            8 => current ^ (1 << (k % 64)),
            _ => self.wide,
        }
    }
}

/// A value for an armed or closed word.
pub(super) fn word(s: &mut Script) -> u32 {
    match s.below(4) {
        0 => 0,
        1 => 1,
        2 => u32::MAX,
        _ => s.u32(),
    }
}

/// The header fields, with their widths.
pub(super) const FIELDS: [(usize, usize); 16] = [
    (MAGIC, 8),
    (VERSION, 4),
    (ITEM_SIZE, 4),
    (ITEM_ALIGN, 4),
    (FLAGS, 4),
    (CAPACITY, 8),
    (DATA_OFFSET, 8),
    (TYPE_TAG, 8),
    (WAKE_INODES, 8),
    (WAKE_INODES + 8, 8),
    (WRITE_INDEX, 8),
    (READ_INDEX, 8),
    (PRODUCER_ARMED, 4),
    (CONSUMER_ARMED, 4),
    (CLOSED_PRODUCER, 4),
    (CLOSED_CONSUMER, 4),
];

pub(super) const WIDTHS: [usize; 3] = [1, 4, 8];

/// Where a write before opening goes.
#[derive(Debug, Clone, Copy)]
pub(super) enum Target {
    Field(usize, usize),
    /// Any offset in the file (modulo its size), with a width.
    Raw(u16, usize),
}

#[derive(Debug, Clone, Copy)]
pub(super) struct PreWrite {
    pub(super) target: Target,
    pub(super) value: ValueSpec,
}

impl PreWrite {
    pub(super) fn parse(s: &mut Script) -> PreWrite {
        let t = s.byte();
        let target = match FIELDS.get(usize::from(t % 20)) {
            Some(&(offset, width)) => Target::Field(offset, width),
            None => Target::Raw(s.u16(), WIDTHS[usize::from(t >> 5) % 3]),
        };
        PreWrite {
            target,
            value: ValueSpec::parse(s),
        }
    }
}
