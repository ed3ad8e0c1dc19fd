//! [`Builder`]: the options for creating a ring or opening a received
//! one, and the checks and header reads that opening makes.

use std::io;
use std::marker::PhantomData;
use std::mem::{size_of, MaybeUninit};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use bytemuck::Pod;

#[cfg(doc)]
use super::channel;
use super::end::End;
use super::untyped::{ItemLayout, UntypedReceiver, UntypedSender};
use super::{Fds, Receiver, Sender, DEFAULT_MAX_DATA_BYTES, DEFAULT_SPIN};
use crate::error::{Error, Exhaustion, Rejection, Role};
use crate::layout::{self, Config, Expected, Header};
use crate::memfd::{self, CreateOptions, Mapping};
use crate::ring::{Read, Write};
use crate::signal::WakeSocket;

/// Options for creating a ring, or for opening one received from elsewhere.
///
/// ```
/// use std::time::Duration;
/// let (tx, rx) = fdring::Builder::new()
///     .capacity(4096)
///     .type_tag(0xa0d10)
///     .spin(Duration::from_micros(10))
///     .build::<f32>()?;
/// // The receiving side names the tag it expects when it opens the fds.
/// let rx = fdring::Builder::new().type_tag(0xa0d10).open_receiver::<f32>(rx.into_fds()?)?;
/// # Ok::<(), fdring::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Builder {
    capacity: usize,
    /// The most items an opened ring may hold; `None` is
    /// [`DEFAULT_MAX_DATA_BYTES`] of data.
    max_capacity: Option<usize>,
    type_tag: Option<u64>,
    huge_pages: bool,
    prefault: bool,
    pub(super) mlock: bool,
    pub(super) spin: Duration,
}

impl Default for Builder {
    fn default() -> Builder {
        Builder::new()
    }
}

impl Builder {
    /// Options with no capacity yet, no type tag, normal pages,
    /// pre-faulted at creation, no `mlock`, [`DEFAULT_SPIN`], and rings of
    /// at most [`DEFAULT_MAX_DATA_BYTES`] accepted by the `open_` calls.
    pub fn new() -> Builder {
        Builder {
            capacity: 0,
            max_capacity: None,
            type_tag: None,
            huge_pages: false,
            prefault: true,
            mlock: false,
            spin: DEFAULT_SPIN,
        }
    }

    /// The least number of items the ring holds (rounded up to whole
    /// pages). Only used by [`build`](Self::build).
    ///
    /// The ring's memory is committed when it is built: `build` faults in
    /// all of it (one header page, then `capacity * size_of::<T>()` bytes),
    /// so that the stream never waits for a page fault, unless
    /// [`prefault(false)`](Self::prefault) leaves that to the first lap.
    /// Either way it refuses a ring larger than the memory available
    /// (`MemAvailable` plus free swap, within this process's cgroup limit)
    /// with [`Exhaustion::Memory`](crate::Exhaustion::Memory), before it
    /// allocates anything.
    ///
    /// ```
    /// // 2^40 u64s would be 8 TiB.
    /// let refused = fdring::Builder::new().capacity(1 << 40).build::<u64>();
    /// assert!(matches!(
    ///     refused,
    ///     Err(fdring::Error::Exhausted(fdring::Exhaustion::Memory { .. }))
    /// ));
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn capacity(mut self, capacity: usize) -> Builder {
        self.capacity = capacity;
        self
    }

    /// The most items a ring opened by the `open_` calls may hold: a
    /// larger ring is refused before anything is mapped, so that a peer
    /// cannot make this end map (or, copying frames out, allocate) more
    /// than the program allows. Without it, the bound is
    /// [`DEFAULT_MAX_DATA_BYTES`] of data region (1 GiB).
    ///
    /// [`build`](Self::build) is not bound by it: the creator chooses its
    /// ring's size with [`capacity`](Self::capacity).
    ///
    /// ```
    /// // A ring of 4096 bytes, as if received from another process.
    /// let (tx, _rx) = fdring::channel::<u8>(4096)?;
    /// let fds = tx.into_fds()?;
    /// // Accept rings of up to 4096 bytes only.
    /// let tx = fdring::Builder::new().max_capacity(4096).open_sender::<u8>(fds)?;
    /// let refused = fdring::Builder::new().max_capacity(1024).open_sender::<u8>(tx.into_fds()?);
    /// assert_eq!(
    ///     refused.unwrap_err(),
    ///     fdring::Error::Rejected(fdring::Rejection::TooLarge { bytes: 4096, max: 1024 })
    /// );
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn max_capacity(mut self, items: usize) -> Builder {
        self.max_capacity = Some(items);
        self
    }

    /// A tag naming the item type, written into the header by
    /// [`build`](Self::build) and required to match by the `open_` calls.
    /// Without it, `build` writes 0 and `open_` accepts any tag.
    pub fn type_tag(mut self, tag: u64) -> Builder {
        self.type_tag = Some(tag);
        self
    }

    /// Backs the ring with huge pages (`MFD_HUGETLB`); the capacity is then
    /// rounded to whole huge pages, and the header takes one too.
    ///
    /// The pages come from the system's pool of huge pages, which is empty
    /// unless an administrator sized it (`/proc/sys/vm/nr_hugepages`).
    ///
    /// # Errors
    ///
    /// [`build`](Self::build) fails with
    /// [`Exhaustion::HugePages`](crate::Exhaustion::HugePages) naming the
    /// huge pages needed and free if the pool has too few, and with `Io` if
    /// the kernel has no huge-page support at all.
    ///
    /// ```
    /// match fdring::Builder::new().capacity(1000).huge_pages(true).build::<u64>() {
    ///     Ok((tx, _rx)) => println!("{} items in huge pages", tx.capacity()),
    ///     Err(fdring::Error::Exhausted(fdring::Exhaustion::HugePages { requested, free })) => {
    ///         println!("{requested} huge pages needed, {free} free");
    ///     }
    ///     Err(other) => panic!("{other}"),
    /// }
    /// ```
    pub fn huge_pages(mut self, huge_pages: bool) -> Builder {
        self.huge_pages = huge_pages;
        self
    }

    /// Whether [`build`](Self::build) faults the whole ring in (`true`, the
    /// default) or leaves each page to be faulted on first touch.
    ///
    /// Pre-faulting makes creation cost about as much as writing the ring
    /// once (a few milliseconds for 16 MiB) and spares the first lap of the
    /// stream a page fault every 4 KiB. Without it, creation takes the same
    /// time whatever the size, which suits a large ring that is created
    /// often and seldom filled (a ring per request, sized for the worst
    /// case); the first lap pays the faults instead, and the memory is
    /// allocated as it is touched, so a machine that runs out of memory
    /// meanwhile fails in the stream rather than in `build` (the up-front
    /// check against the memory available is still made). Only `build`
    /// pre-faults: the `open_` calls never do. [`mlock`](Self::mlock)
    /// faults the pages in anyway.
    ///
    /// ```
    /// // 16 MiB of u64s, faulted in as the stream first reaches them.
    /// let (mut tx, mut rx) = fdring::Builder::new()
    ///     .capacity(2 << 20)
    ///     .prefault(false)
    ///     .build::<u64>()?;
    /// tx.send(7)?;
    /// assert_eq!(rx.recv()?, 7);
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn prefault(mut self, prefault: bool) -> Builder {
        self.prefault = prefault;
        self
    }

    /// Locks this end's mapping into RAM (`mlock`) so that it never takes a
    /// page fault, for real-time audio.
    ///
    /// Each end locks its whole mapping: the header page and the data
    /// region twice (its mirror counts too), which `RLIMIT_MEMLOCK` must
    /// allow unless the process has `CAP_IPC_LOCK`.
    ///
    /// # Errors
    ///
    /// [`build`](Self::build) and the `open_` calls fail with
    /// [`Exhaustion::Memlock`](crate::Exhaustion::Memlock), naming the bytes
    /// to lock and the limit, if the kernel refuses.
    ///
    /// ```
    /// match fdring::Builder::new().capacity(512).mlock(true).build::<u64>() {
    ///     Ok(_) => println!("locked"),
    ///     Err(fdring::Error::Exhausted(fdring::Exhaustion::Memlock { requested, limit })) => {
    ///         println!("{requested} bytes to lock, RLIMIT_MEMLOCK is {limit}");
    ///     }
    ///     Err(other) => panic!("{other}"),
    /// }
    /// ```
    pub fn mlock(mut self, mlock: bool) -> Builder {
        self.mlock = mlock;
        self
    }

    /// How long a blocking call spins before it sleeps on its wake-up
    /// socket.
    ///
    /// The spin re-checks the ring with `spin_loop` hints for about a
    /// microsecond, then yields the CPU between checks. Spinning costs CPU
    /// while the peer is slow; sleeping costs a system call on each side
    /// and a scheduler wake-up (tens of microseconds on a virtual machine)
    /// when the peer is fast. The default, [`DEFAULT_SPIN`], is about one
    /// wake-up's cost. `Duration::ZERO` sleeps at once; `Duration::MAX`
    /// never sleeps (a `_timeout` call spins until its timeout). A spin
    /// longer than a millisecond looks at the wake-up socket every
    /// millisecond, so that it still notices a peer that died.
    ///
    /// ```
    /// use std::time::Duration;
    /// // Busy-wait, never sleep: for a core reserved for this thread.
    /// let (mut tx, mut rx) = fdring::Builder::new()
    ///     .capacity(512)
    ///     .spin(Duration::MAX)
    ///     .build::<u64>()?;
    /// std::thread::spawn(move || tx.send(3));
    /// assert_eq!(rx.recv()?, 3);
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn spin(mut self, spin: Duration) -> Builder {
        self.spin = spin;
        self
    }

    /// The type tag set with [`type_tag`](Self::type_tag), if any.
    pub(crate) fn tag(&self) -> Option<u64> {
        self.type_tag
    }

    /// Creates a ring in a new sealed memfd and returns its two ends.
    ///
    /// The ring's memory is committed here, unless
    /// [`prefault(false)`](Self::prefault): see
    /// [`capacity`](Self::capacity).
    ///
    /// # Errors
    ///
    /// As for [`channel`], and `Exhausted(HugePages)` or
    /// `Exhausted(Memlock)` if huge pages or `mlock` were asked for and the
    /// system refused them (see [`huge_pages`](Self::huge_pages) and
    /// [`mlock`](Self::mlock)). Nothing is left mapped or open on error.
    pub fn build<T: Pod>(&self) -> Result<(Sender<T>, Receiver<T>), Error> {
        let (sender, receiver) = self.build_ends(ItemLayout::of::<T>())?;
        Ok((
            Sender {
                end: sender,
                _item: PhantomData,
            },
            Receiver {
                end: receiver,
                _item: PhantomData,
            },
        ))
    }

    /// Creates a ring of items whose size and alignment are known only at
    /// run time (a C caller's, say) and returns its two untyped ends: the
    /// same ring, header and checks as [`build`](Self::build) for a type of
    /// that layout, so a typed end of such a type can open the other end.
    ///
    /// # Errors
    ///
    /// As for [`build`](Self::build), and `Rejected(BadAlign)` if the
    /// alignment is not a power of two dividing the size (at most a page),
    /// `Rejected(ZeroSizedItem)` for a size of 0.
    ///
    /// # Examples
    ///
    /// ```
    /// use fdring::{Builder, ItemLayout};
    ///
    /// let (tx, rx) = Builder::new().capacity(512).build_untyped(ItemLayout::new(8, 8))?;
    /// // A typed end of a type of that layout opens the other end.
    /// let mut rx = fdring::Receiver::<u64>::from_fds(rx.into_fds()?)?;
    /// let mut tx = tx;
    /// let lent = tx.try_reserve(1)?;
    /// // SAFETY: `lent.ptr` is valid for `lent.len >= 1` items of 8 bytes.
    /// unsafe { lent.ptr.cast::<u64>().write(42) };
    /// tx.commit(1)?;
    /// assert_eq!(rx.recv()?, 42);
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn build_untyped(
        &self,
        layout: ItemLayout,
    ) -> Result<(UntypedSender, UntypedReceiver), Error> {
        let (sender, receiver) = self.build_ends(layout)?;
        Ok((
            UntypedSender::new(sender, layout),
            UntypedReceiver::new(receiver, layout),
        ))
    }

    /// Creates the ring for [`build`](Self::build) and
    /// [`build_untyped`](Self::build_untyped).
    fn build_ends(&self, layout: ItemLayout) -> Result<(End<Write>, End<Read>), Error> {
        let item_size = layout.item_size()?;
        if self.capacity == 0 {
            return Err(Rejection::ZeroCapacity.into());
        }
        let options = CreateOptions {
            huge_pages: self.huge_pages,
        };
        let (memfd, page_size) = memfd::create("fdring", options)?;
        let bad_capacity = || Rejection::BadCapacity {
            capacity: self.capacity as u64,
            item_size,
            page_size,
        };
        let capacity = layout::round_capacity(self.capacity as u64, item_size, page_size)
            .ok_or_else(bad_capacity)?;
        let (sender_wake, receiver_wake) = WakeSocket::pair()?;
        let config = Config {
            item_size,
            item_align: layout.item_align()?,
            capacity,
            data_offset: page_size,
            type_tag: self.type_tag.unwrap_or(0),
            wake_inodes: [sender_wake.inode()?, receiver_wake.inode()?],
        };
        layout::check_geometry(&config, page_size)?;
        // The ring's memory is committed below: refuse what the machine
        // cannot give before the memfd has a size.
        let file_len = config.file_len();
        let huge_pages_needed = file_len / page_size;
        let no_huge_pages = |free: Option<u64>| {
            Error::Exhausted(Exhaustion::HugePages {
                requested: huge_pages_needed,
                free: free.unwrap_or(0),
            })
        };
        if self.huge_pages {
            let free = memfd::free_huge_pages(page_size);
            if free.is_some_and(|free| huge_pages_needed > free) {
                return Err(no_huge_pages(free));
            }
        } else if let Some(available) = memfd::memory_shortfall(file_len) {
            return Err(Error::Exhausted(Exhaustion::Memory {
                requested: file_len,
                available,
            }));
        }
        memfd::set_len(memfd.as_fd(), file_len)?;
        let mapping = Mapping::new(memfd.as_fd(), config.data_offset, config.data_len()).map_err(
            |e| match e {
                // The huge pages are reserved when the memfd is mapped.
                Error::Io { source, .. }
                    if self.huge_pages && source.kind() == io::ErrorKind::OutOfMemory =>
                {
                    no_huge_pages(memfd::free_huge_pages(page_size))
                }
                other => other,
            },
        )?;
        header_of(&mapping).init(&config);
        memfd::seal(memfd.as_fd())?;
        // Allocate the pages now rather than on the first lap of the
        // stream, checking as it goes that the machine still has the
        // memory (`docs/design.md`, "Pre-faulting"), unless asked not to.
        if self.prefault {
            mapping.populate(self.huge_pages)?;
        }

        let receiver_fds = Fds {
            memfd: dup(&memfd)?,
            wake: receiver_wake.into_fd(),
        };
        let sender = End::new(mapping, &config, memfd, sender_wake, self)?;
        let receiver = Builder {
            type_tag: Some(config.type_tag),
            // This end made the ring, whatever its size.
            max_capacity: Some(usize::MAX),
            ..self.clone()
        }
        .open_end(receiver_fds, Role::Receiver, layout)?;
        Ok((sender, receiver))
    }

    /// Opens the sending end of a ring from fds received from elsewhere.
    ///
    /// # Errors
    ///
    /// `Rejected(..)` naming the first check that failed: not a memfd,
    /// missing seals, wrong size, bad magic or version, item size or
    /// alignment not `T`'s, wrong type tag, bad geometry, indices out of
    /// range (`BadIndices`), a ring larger than
    /// [`max_capacity`](Self::max_capacity) (`TooLarge`), a wake-up fd that
    /// is not a connected Unix stream socket, the other end's bundle
    /// (`WrongRole`), or a socket of another ring (`ForeignWakeSocket`).
    /// `Exhausted(Memlock)` if [`mlock`](Self::mlock) was asked for and
    /// refused. `Io` if mapping it fails. Nothing is mapped on error.
    pub fn open_sender<T: Pod>(&self, fds: Fds) -> Result<Sender<T>, Error> {
        Ok(Sender {
            end: self.open_end(fds, Role::Sender, ItemLayout::of::<T>())?,
            _item: PhantomData,
        })
    }

    /// Opens the receiving end of a ring from fds received from elsewhere.
    ///
    /// # Errors
    ///
    /// As for [`open_sender`](Self::open_sender).
    pub fn open_receiver<T: Pod>(&self, fds: Fds) -> Result<Receiver<T>, Error> {
        Ok(Receiver {
            end: self.open_end(fds, Role::Receiver, ItemLayout::of::<T>())?,
            _item: PhantomData,
        })
    }

    /// Opens the sending end of a ring from fds received from elsewhere,
    /// for items of `layout` known only at run time: the same checks as
    /// [`open_sender`](Self::open_sender), against `layout` instead of a
    /// type's.
    ///
    /// # Errors
    ///
    /// As for [`open_sender`](Self::open_sender); the item size and
    /// alignment must be `layout`'s.
    ///
    /// ```
    /// use fdring::{Builder, ItemLayout};
    ///
    /// let (tx, _rx) = fdring::channel::<[u32; 3]>(64)?;
    /// let fds = tx.into_fds()?;
    /// let tx = Builder::new().open_untyped_sender(fds, ItemLayout::new(12, 4))?;
    /// assert_eq!(tx.layout(), ItemLayout::new(12, 4));
    /// // Another layout is refused.
    /// let refused = Builder::new().open_untyped_sender(tx.into_fds()?, ItemLayout::new(8, 8));
    /// assert!(matches!(refused, Err(fdring::Error::Rejected(fdring::Rejection::ItemSize { .. }))));
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn open_untyped_sender(
        &self,
        fds: Fds,
        layout: ItemLayout,
    ) -> Result<UntypedSender, Error> {
        Ok(UntypedSender::new(
            self.open_end(fds, Role::Sender, layout)?,
            layout,
        ))
    }

    /// Opens the receiving end of a ring from fds received from elsewhere,
    /// for items of `layout`; see
    /// [`open_untyped_sender`](Self::open_untyped_sender).
    ///
    /// # Errors
    ///
    /// As for [`open_sender`](Self::open_sender).
    ///
    /// ```
    /// use fdring::{Builder, ItemLayout};
    ///
    /// let (mut tx, rx) = fdring::channel::<u16>(64)?;
    /// tx.send(9)?;
    /// let mut rx = Builder::new().open_untyped_receiver(rx.into_fds()?, ItemLayout::of::<u16>())?;
    /// let lent = rx.try_reserve(1)?;
    /// assert_eq!(lent.len, 1);
    /// // SAFETY: `lent.ptr` points to one ready item of 2 bytes, aligned.
    /// assert_eq!(unsafe { lent.ptr.cast::<u16>().read() }, 9);
    /// rx.release(1)?;
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn open_untyped_receiver(
        &self,
        fds: Fds,
        layout: ItemLayout,
    ) -> Result<UntypedReceiver, Error> {
        Ok(UntypedReceiver::new(
            self.open_end(fds, Role::Receiver, layout)?,
            layout,
        ))
    }

    /// Opens one end, typed or not, for items of `layout`.
    fn open_end<S: crate::ring::Side>(
        &self,
        fds: Fds,
        role: Role,
        layout: ItemLayout,
    ) -> Result<End<S>, Error> {
        let (mapping, config, memfd, wake) = self.open(fds, role, layout)?;
        End::new(mapping, &config, memfd, wake, self)
    }

    /// Verifies, validates and maps a received memfd, and adopts the
    /// wake-up socket after checking that it is the one the ring made for
    /// `role`.
    fn open(
        &self,
        fds: Fds,
        role: Role,
        layout: ItemLayout,
    ) -> Result<(Mapping, Config, OwnedFd, WakeSocket), Error> {
        let expected_size = layout.item_size()?;
        let verified = memfd::verify(fds.memfd.as_fd())?;
        // Read the header with pread into a private copy, so that nothing
        // is mapped before the size is known to match.
        let header = read_header(fds.memfd.as_fd())?;
        let expected = Expected {
            item_size: expected_size,
            item_align: layout.item_align()?,
            type_tag: self.type_tag,
            page_size: verified.page_size,
        };
        let config = header.validate(&expected, verified.len)?;
        let max = match self.max_capacity {
            Some(items) => (items as u64).saturating_mul(u64::from(expected_size)),
            None => DEFAULT_MAX_DATA_BYTES,
        };
        if config.data_len() > max {
            return Err(Rejection::TooLarge {
                bytes: config.data_len(),
                max,
            }
            .into());
        }
        let wake = WakeSocket::adopt(fds.wake)?;
        layout::check_wake_inode(&config, role, wake.inode()?)?;
        let mapping = Mapping::new(fds.memfd.as_fd(), config.data_offset, config.data_len())?;
        Ok((mapping, config, fds.memfd, wake))
    }
}

fn header_of(mapping: &Mapping) -> &Header {
    // SAFETY: the mapping starts with a whole page (at least HEADER_BYTES,
    // checked by `layout::check_geometry`), is page-aligned (so aligned for
    // `Header`), and stays mapped for the borrow. Every field of `Header`
    // is an atomic integer, valid for any bytes the peer writes.
    unsafe { mapping.header().cast::<Header>().as_ref() }
}

fn read_header(memfd: BorrowedFd<'_>) -> Result<Header, Error> {
    let mut header = MaybeUninit::<Header>::zeroed();
    // SAFETY: the buffer is a private, properly sized `Header` allocation;
    // viewing it as bytes to fill it is sound because `Header` has no
    // padding that matters (any byte values are valid atomics).
    let bytes = unsafe {
        std::slice::from_raw_parts_mut(header.as_mut_ptr().cast::<u8>(), size_of::<Header>())
    };
    memfd::read_prefix(memfd, bytes)?;
    // SAFETY: zeroed and then overwritten with arbitrary bytes; every field
    // is an atomic integer, for which every bit pattern is valid.
    Ok(unsafe { header.assume_init() })
}

pub(super) fn dup(fd: &OwnedFd) -> Result<OwnedFd, Error> {
    fd.try_clone()
        .map_err(|e| Error::io("duplicating an fd", e))
}
