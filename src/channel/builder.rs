//! [`Builder`]: the options for creating a ring or opening a received
//! one, and the checks and header reads that opening makes.

use std::marker::PhantomData;
use std::mem::{size_of, MaybeUninit};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use bytemuck::Pod;

#[cfg(doc)]
use super::channel;
use super::end::End;
use super::{Fds, Receiver, Sender, DEFAULT_SPIN};
use crate::error::{Error, Rejection};
use crate::layout::{self, Config, Expected, Header};
use crate::memfd::{self, CreateOptions, Mapping};
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
    type_tag: Option<u64>,
    huge_pages: bool,
    pub(super) mlock: bool,
    pub(super) spin: Duration,
}

impl Default for Builder {
    fn default() -> Builder {
        Builder::new()
    }
}

impl Builder {
    /// Options with no capacity yet, no type tag, normal pages, no `mlock`,
    /// and [`DEFAULT_SPIN`].
    pub fn new() -> Builder {
        Builder {
            capacity: 0,
            type_tag: None,
            huge_pages: false,
            mlock: false,
            spin: DEFAULT_SPIN,
        }
    }

    /// The least number of items the ring holds (rounded up to whole
    /// pages). Only used by [`build`](Self::build).
    pub fn capacity(mut self, capacity: usize) -> Builder {
        self.capacity = capacity;
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
    /// rounded to whole huge pages. Fails with an `Io` error if the system
    /// has no huge pages to give.
    pub fn huge_pages(mut self, huge_pages: bool) -> Builder {
        self.huge_pages = huge_pages;
        self
    }

    /// Locks this end's mapping into RAM (`mlock`) so that it never takes a
    /// page fault, for real-time audio. Fails with an `Io` error if
    /// `RLIMIT_MEMLOCK` is too low.
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

    /// Creates a ring in a new sealed memfd and returns its two ends.
    ///
    /// # Errors
    ///
    /// As for [`channel`], and `Io` if huge pages or `mlock` were asked
    /// for and the system refused them.
    pub fn build<T: Pod>(&self) -> Result<(Sender<T>, Receiver<T>), Error> {
        let item_size = item_size::<T>()?;
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
        let config = Config {
            item_size,
            item_align: std::mem::align_of::<T>() as u32,
            capacity,
            data_offset: page_size,
            type_tag: self.type_tag.unwrap_or(0),
        };
        layout::check_geometry(&config, page_size)?;
        memfd::set_len(memfd.as_fd(), config.file_len())?;
        let mapping = Mapping::new(memfd.as_fd(), config.data_offset, config.data_len()).map_err(
            |e| match e {
                Error::Io { source, .. } if self.huge_pages => Error::io(
                    "mapping the huge-page memfd (are enough huge pages reserved in \
                     /proc/sys/vm/nr_hugepages?)",
                    source,
                ),
                other => other,
            },
        )?;
        header_of(&mapping).init(&config);
        memfd::seal(memfd.as_fd())?;
        // Allocate the pages now rather than on the first lap of the
        // stream (`docs/design.md`, "Pre-faulting").
        mapping.populate();

        let (sender_wake, receiver_wake) = WakeSocket::pair()?;
        let receiver_fds = Fds {
            memfd: dup(&memfd)?,
            wake: receiver_wake.into_fd(),
        };
        let sender = Sender {
            end: End::new(mapping, &config, memfd, sender_wake, self)?,
            _item: PhantomData,
        };
        let receiver = Builder {
            type_tag: Some(config.type_tag),
            ..self.clone()
        }
        .open_receiver(receiver_fds)?;
        Ok((sender, receiver))
    }

    /// Opens the sending end of a ring from fds received from elsewhere.
    ///
    /// # Errors
    ///
    /// `Rejected(..)` naming the first check that failed: not a memfd,
    /// missing seals, wrong size, bad magic or version, item size or
    /// alignment not `T`'s, wrong type tag, bad geometry, a wake-up fd that
    /// is not a connected Unix stream socket.
    /// `Io` if mapping it fails. Nothing is mapped on error.
    pub fn open_sender<T: Pod>(&self, fds: Fds) -> Result<Sender<T>, Error> {
        let (mapping, config, memfd, wake) = self.open::<T>(fds)?;
        Ok(Sender {
            end: End::new(mapping, &config, memfd, wake, self)?,
            _item: PhantomData,
        })
    }

    /// Opens the receiving end of a ring from fds received from elsewhere.
    ///
    /// # Errors
    ///
    /// As for [`open_sender`](Self::open_sender).
    pub fn open_receiver<T: Pod>(&self, fds: Fds) -> Result<Receiver<T>, Error> {
        let (mapping, config, memfd, wake) = self.open::<T>(fds)?;
        Ok(Receiver {
            end: End::new(mapping, &config, memfd, wake, self)?,
            _item: PhantomData,
        })
    }

    /// Verifies, validates and maps a received memfd, and adopts the
    /// wake-up socket.
    fn open<T: Pod>(&self, fds: Fds) -> Result<(Mapping, Config, OwnedFd, WakeSocket), Error> {
        let expected_size = item_size::<T>()?;
        let verified = memfd::verify(fds.memfd.as_fd())?;
        // Read the header with pread into a private copy, so that nothing
        // is mapped before the size is known to match.
        let header = read_header(fds.memfd.as_fd())?;
        let expected = Expected {
            item_size: expected_size,
            item_align: std::mem::align_of::<T>() as u32,
            type_tag: self.type_tag,
            page_size: verified.page_size,
        };
        let config = header.validate(&expected, verified.len)?;
        let wake = WakeSocket::adopt(fds.wake)?;
        let mapping = Mapping::new(fds.memfd.as_fd(), config.data_offset, config.data_len())?;
        Ok((mapping, config, fds.memfd, wake))
    }
}

/// `size_of::<T>()` as the header's u32, refusing zero-sized and huge types.
fn item_size<T>() -> Result<u32, Error> {
    match u32::try_from(size_of::<T>()) {
        Ok(0) => Err(Rejection::ZeroSizedItem.into()),
        Ok(size) => Ok(size),
        Err(_) => Err(Rejection::BadCapacity {
            capacity: 1,
            item_size: u32::MAX,
            page_size: memfd::page_size(),
        }
        .into()),
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
