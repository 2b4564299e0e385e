//! Batched UDP I/O: many datagrams per system call with `recvmmsg(2)` and `sendmmsg(2)`.
//!
//! On a loopback benchmark about half of a DNS server's CPU goes to the kernel's per-call cost,
//! so receiving and sending up to [`Packets::capacity`] datagrams per call is the biggest single
//! saving. [`Packets`] owns the buffers, addresses and `mmsghdr` arrays once, so a batch costs
//! no allocation. The server's UDP fast path and the benchmark tools in `bench/` share it.
//! Linux only; the only `unsafe` in the crate, each call documented.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd;

/// A batch of datagrams with their peer addresses, in fixed-size slots.
pub struct Packets {
    data: Box<[u8]>,
    slot: usize,
    lens: Box<[usize]>,
    addrs: Box<[libc::sockaddr_storage]>,
    addr_lens: Box<[libc::socklen_t]>,
    iovs: Box<[libc::iovec]>,
    hdrs: Box<[libc::mmsghdr]>,
    count: usize,
}

// SAFETY: the raw pointers in `iovs` and `hdrs` only ever point into this struct's own boxed
// buffers and are rewritten before every system call; nothing is shared between threads.
unsafe impl Send for Packets {}

impl Packets {
    /// `capacity` slots of `slot_size` bytes each (a datagram longer than its slot is cut and
    /// reported with its real length, see [`Packets::get`]).
    pub fn new(capacity: usize, slot_size: usize) -> Self {
        let capacity = capacity.max(1);
        Packets {
            data: vec![0; capacity * slot_size].into_boxed_slice(),
            slot: slot_size,
            lens: vec![0; capacity].into_boxed_slice(),
            addrs: zeroed_slice(capacity),
            addr_lens: vec![0; capacity].into_boxed_slice(),
            iovs: zeroed_slice(capacity),
            hdrs: zeroed_slice(capacity),
            count: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.lens.len()
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn clear(&mut self) {
        self.count = 0;
    }

    /// Datagram `i` (its bytes, cut to the slot size) and its peer. `None` for an address
    /// family other than IPv4/IPv6, which a UDP socket never reports.
    pub fn get(&self, i: usize) -> Option<(&[u8], SocketAddr)> {
        if i >= self.count {
            return None;
        }
        let len = self.lens[i].min(self.slot);
        let bytes = &self.data[i * self.slot..i * self.slot + len];
        Some((bytes, from_storage(&self.addrs[i])?))
    }

    /// Whether datagram `i` was longer than its slot (and so cut).
    pub fn truncated(&self, i: usize) -> bool {
        i < self.count && self.lens[i] > self.slot
    }

    /// Append a datagram for `to`: `fill` writes it into the slot and returns its length.
    /// Returns `false` (and appends nothing) when the batch is full.
    pub fn push(&mut self, to: SocketAddr, fill: impl FnOnce(&mut [u8]) -> usize) -> bool {
        self.try_push(to, |slot| Some(fill(slot)))
    }

    /// Like [`Packets::push`], but `fill` may decide there is nothing to send (`None`).
    pub fn try_push(
        &mut self,
        to: SocketAddr,
        fill: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> bool {
        let i = self.count;
        if i >= self.capacity() {
            return false;
        }
        let slot = &mut self.data[i * self.slot..(i + 1) * self.slot];
        let Some(len) = fill(slot) else {
            return false;
        };
        self.lens[i] = len.min(self.slot);
        self.addr_lens[i] = to_storage(to, &mut self.addrs[i]);
        self.count += 1;
        true
    }

    /// Point every header at its own slot and address, for `n` messages.
    fn prepare(&mut self, n: usize, receiving: bool) {
        let base = self.data.as_mut_ptr();
        for i in 0..n {
            self.iovs[i] = libc::iovec {
                // SAFETY: i < capacity, so the offset stays inside `data`.
                iov_base: unsafe { base.add(i * self.slot) }.cast(),
                iov_len: if receiving { self.slot } else { self.lens[i] },
            };
            let hdr = &mut self.hdrs[i].msg_hdr;
            hdr.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            hdr.msg_namelen = if receiving {
                size_of::<libc::sockaddr_storage>() as libc::socklen_t
            } else {
                self.addr_lens[i]
            };
            hdr.msg_iov = &mut self.iovs[i];
            hdr.msg_iovlen = 1;
            hdr.msg_control = std::ptr::null_mut();
            hdr.msg_controllen = 0;
            hdr.msg_flags = 0;
            self.hdrs[i].msg_len = 0;
        }
    }

    /// Receive up to `capacity` datagrams: blocks (as the socket is set up) for the first one,
    /// then takes whatever else is already queued. Replaces the batch's contents.
    pub fn recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        self.count = 0;
        let n = self.capacity();
        self.prepare(n, true);
        // SAFETY: `hdrs[..n]` point at live buffers of the lengths given (set just above);
        // the kernel writes at most that much into each.
        let got = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if got < 0 {
            return Err(io::Error::last_os_error());
        }
        let got = got as usize;
        for i in 0..got {
            let hdr = &self.hdrs[i];
            // A datagram longer than the slot is cut by the kernel (MSG_TRUNC in msg_flags);
            // report it as longer than the slot so callers can tell.
            self.lens[i] = if hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                self.slot + 1
            } else {
                hdr.msg_len as usize
            };
        }
        self.count = got;
        Ok(got)
    }

    /// Send every datagram in the batch; returns how many the kernel took. A datagram the
    /// kernel refuses (a peer that went away, say) is skipped and not counted; the error is
    /// returned only when nothing at all was sent.
    pub fn send(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        let total = self.count;
        self.prepare(total, false);
        let (mut sent, mut skipped) = (0, 0);
        let mut last_error = None;
        while sent + skipped < total {
            let at = sent + skipped;
            // SAFETY: `hdrs[at..total]` point at live buffers and addresses set above.
            let n = unsafe {
                libc::sendmmsg(
                    socket.as_raw_fd(),
                    self.hdrs.as_mut_ptr().add(at),
                    (total - at) as libc::c_uint,
                    0,
                )
            };
            if n < 0 {
                // sendmmsg reports an error only for the first datagram it tried: skip it.
                last_error = Some(io::Error::last_os_error());
                skipped += 1;
                continue;
            }
            sent += n as usize;
        }
        match last_error {
            Some(error) if sent == 0 => Err(error),
            _ => Ok(sent),
        }
    }
}

/// `n` all-zero C structs.
fn zeroed_slice<T: Copy>(n: usize) -> Box<[T]> {
    // SAFETY: only used for plain C structs (`sockaddr_storage`, `iovec`, `mmsghdr`), for
    // which all-zero is valid (null pointers, zero lengths); pointers are set before use.
    (0..n).map(|_| unsafe { zeroed() }).collect()
}

fn to_storage(addr: SocketAddr, out: &mut libc::sockaddr_storage) -> libc::socklen_t {
    // SAFETY: sockaddr_storage is large and aligned enough for either family.
    unsafe {
        match addr {
            SocketAddr::V4(a) => {
                let sin = &mut *(out as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>();
                sin.sin_family = libc::AF_INET as libc::sa_family_t;
                sin.sin_port = a.port().to_be();
                sin.sin_addr = libc::in_addr {
                    s_addr: u32::from(*a.ip()).to_be(),
                };
                size_of::<libc::sockaddr_in>() as libc::socklen_t
            }
            SocketAddr::V6(a) => {
                let sin6 = &mut *(out as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>();
                sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sin6.sin6_port = a.port().to_be();
                sin6.sin6_flowinfo = a.flowinfo();
                sin6.sin6_addr = libc::in6_addr {
                    s6_addr: a.ip().octets(),
                };
                sin6.sin6_scope_id = a.scope_id();
                size_of::<libc::sockaddr_in6>() as libc::socklen_t
            }
        }
    }
}

fn from_storage(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    // SAFETY: the family field tells which struct the kernel wrote.
    unsafe {
        match i32::from(storage.ss_family) {
            libc::AF_INET => {
                let sin = &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>();
                Some(SocketAddr::V4(SocketAddrV4::new(
                    Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
                    u16::from_be(sin.sin_port),
                )))
            }
            libc::AF_INET6 => {
                let sin6 =
                    &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>();
                Some(SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                    u16::from_be(sin6.sin6_port),
                    sin6.sin6_flowinfo,
                    sin6.sin6_scope_id,
                )))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A batch sent over loopback arrives whole, in order, with the right peer.
    #[test]
    fn round_trip_over_loopback() {
        for bind in ["127.0.0.1:0", "[::1]:0"] {
            let Ok(a) = UdpSocket::bind(bind) else {
                continue; // no IPv6 on this host
            };
            let b = UdpSocket::bind(bind).unwrap();
            b.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let to = b.local_addr().unwrap();
            let mut out = Packets::new(16, 64);
            for i in 0..10u8 {
                assert!(out.push(to, |buf| {
                    buf[..3].copy_from_slice(&[i, i, i]);
                    3
                }));
            }
            assert_eq!(out.send(&a).unwrap(), 10);
            let mut into = Packets::new(16, 64);
            let mut seen = Vec::new();
            while seen.len() < 10 {
                into.recv(&b).unwrap();
                for i in 0..into.len() {
                    let (bytes, from) = into.get(i).unwrap();
                    assert_eq!(from, a.local_addr().unwrap());
                    seen.push(bytes.to_vec());
                }
            }
            let want: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i, i, i]).collect();
            assert_eq!(seen, want);
        }
    }

    /// A datagram the kernel refuses (to port 0) is skipped, not counted, and the rest go out.
    #[test]
    fn a_refused_datagram_is_skipped_and_not_counted() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        b.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let good = b.local_addr().unwrap();
        let bad: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let mut out = Packets::new(4, 16);
        for to in [good, bad, good] {
            out.push(to, |buf| {
                buf[0] = 1;
                1
            });
        }
        assert_eq!(out.send(&a).unwrap(), 2);
        let mut only_bad = Packets::new(1, 16);
        only_bad.push(bad, |_| 1);
        assert!(only_bad.send(&a).is_err());
        let mut into = Packets::new(4, 16);
        let mut got = 0;
        while got < 2 {
            got += into.recv(&b).unwrap();
        }
        assert_eq!(got, 2);
    }

    /// A datagram longer than the slot is reported as longer, not silently cut.
    #[test]
    fn oversized_datagram_is_flagged() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        b.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        a.send_to(&[7; 100], b.local_addr().unwrap()).unwrap();
        let mut into = Packets::new(4, 32);
        assert_eq!(into.recv(&b).unwrap(), 1);
        assert!(into.truncated(0));
        assert_eq!(into.get(0).unwrap().0.len(), 32);
    }
}
