//! `Table`: the members of a topology by [`Key`], a key never reused
//! while its member lives, so that a late event of a member that left is
//! not taken for its successor's.

use super::Key;

/// Keys with this bit are the topology's own fds (a listener, a pending
/// connection), never a member's.
pub(super) const INTERNAL: u64 = 1 << 63;

#[derive(Debug)]
pub(super) struct Table<E> {
    slots: Vec<Slot<E>>,
    free: Vec<u32>,
    len: usize,
}

#[derive(Debug)]
struct Slot<E> {
    /// Bumped each time the slot is emptied: part of the key.
    generation: u32,
    entry: Option<E>,
}

impl<E> Table<E> {
    pub(super) fn new() -> Table<E> {
        Table {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }

    /// The key the next [`insert`](Self::insert) will return.
    pub(super) fn next_key(&self) -> Key {
        match self.free.last() {
            Some(&index) => key(index, self.slots[index as usize].generation),
            None => key(self.slots.len() as u32, 0),
        }
    }

    pub(super) fn insert(&mut self, entry: E) -> Key {
        let k = self.next_key();
        match self.free.pop() {
            Some(index) => self.slots[index as usize].entry = Some(entry),
            None => self.slots.push(Slot {
                generation: 0,
                entry: Some(entry),
            }),
        }
        self.len += 1;
        k
    }

    pub(super) fn get(&self, k: Key) -> Option<&E> {
        let (index, generation) = parts(k)?;
        let slot = self.slots.get(index)?;
        (slot.generation == generation).then_some(slot.entry.as_ref()?)
    }

    pub(super) fn get_mut(&mut self, k: Key) -> Option<&mut E> {
        let (index, generation) = parts(k)?;
        let slot = self.slots.get_mut(index)?;
        if slot.generation != generation {
            return None;
        }
        slot.entry.as_mut()
    }

    pub(super) fn remove(&mut self, k: Key) -> Option<E> {
        let (index, generation) = parts(k)?;
        let slot = self.slots.get_mut(index)?;
        if slot.generation != generation {
            return None;
        }
        let entry = slot.entry.take()?;
        // 31 bits, then wrapping: a key comes back only after two billion
        // members passed through the same slot.
        slot.generation = (slot.generation + 1) & (u32::MAX >> 1);
        self.free.push(index as u32);
        self.len -= 1;
        Some(entry)
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (Key, &E)> {
        self.slots.iter().enumerate().filter_map(|(index, slot)| {
            Some((key(index as u32, slot.generation), slot.entry.as_ref()?))
        })
    }

    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = (Key, &mut E)> {
        self.slots
            .iter_mut()
            .enumerate()
            .filter_map(|(index, slot)| {
                let generation = slot.generation;
                Some((key(index as u32, generation), slot.entry.as_mut()?))
            })
    }
}

fn key(index: u32, generation: u32) -> Key {
    Key(u64::from(generation) << 32 | u64::from(index))
}

fn parts(k: Key) -> Option<(usize, u32)> {
    if k.0 & INTERNAL != 0 {
        return None;
    }
    Some(((k.0 & u64::from(u32::MAX)) as usize, (k.0 >> 32) as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_not_reused_for_the_next_member_of_its_slot() {
        let mut table = Table::new();
        let a = table.insert('a');
        assert_eq!(table.remove(a), Some('a'));
        let b = table.insert('b');
        assert_ne!(a, b);
        assert_eq!(table.get(a), None);
        assert_eq!(table.get(b), Some(&'b'));
        assert_eq!(table.remove(a), None);
        assert_eq!(table.len(), 1);
        assert_eq!(table.next_key(), table.insert('c'));
    }
}
