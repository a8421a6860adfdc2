//! UDP IO of one endpoint: quinn-udp's batched syscalls (`recvmmsg` with GRO, `sendmsg` with
//! GSO) on the non-blocking socket, with monoio used only to wait for readiness.
//!
//! monoio's own UDP operations cannot carry control messages, so GSO and GRO are out of their
//! reach. The readiness socket is a duplicate of the IO socket's descriptor: both name the
//! same kernel socket, so polling one tells when the other can be read or written, and no
//! monoio read or write is ever issued on it.

use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};

use quinn_udp::{RecvMeta, Transmit, UdpSocketState};
use tracing::{debug, warn};

/// Socket buffer size asked for: the default ~208 KiB drops packets at full speed.
const SOCKET_BUFFER: usize = 8 << 20;

/// Receive buffers handed to one `recvmmsg`.
pub(super) const RECV_SLOTS: usize = 16;

/// A GRO train never exceeds one maximal IP datagram.
const GRO_SLOT: usize = 64 << 10;

/// The largest datagram we accept without GRO; it is also advertised to peers as our
/// `max_udp_payload_size`, so they never send more (1500-byte Ethernet MTU minus IPv4 and UDP
/// headers).
pub(super) const MAX_UDP_PAYLOAD: u16 = 1472;

/// What a socket that coalesces with GRO accepts: every receive buffer then holds 64 KiB,
/// so a loopback peer may send datagrams up to `config::LOOPBACK_MTU`.
const MAX_GRO_PAYLOAD: u16 = super::config::LOOPBACK_MTU;

const _: () = assert!(MAX_GRO_PAYLOAD as usize <= GRO_SLOT);

pub(super) struct UdpIo {
    /// The socket every quinn-udp syscall goes through.
    socket: std::net::UdpSocket,
    state: UdpSocketState,
    /// `RECV_SLOTS` receive buffers of `slot_len` bytes each, reused for every batch.
    recv_buf: RecvArea,
    slot_len: usize,
    meta: [RecvMeta; RECV_SLOTS],
}

impl UdpIo {
    /// Takes the bound socket, sets it non-blocking and raises its buffers. Also returns a
    /// duplicate registered with the current monoio runtime, to be polled for readiness only.
    pub(super) fn new(
        socket: std::net::UdpSocket,
    ) -> io::Result<(UdpIo, monoio::net::udp::UdpSocket)> {
        let state = UdpSocketState::new((&socket).into())?;
        let addr = socket.local_addr()?;
        raise_buffers(&socket, addr);

        let gro = state.gro_segments();
        let slot_len = if gro > 1 {
            GRO_SLOT
        } else {
            usize::from(MAX_UDP_PAYLOAD)
        };
        debug!(
            %addr,
            gso_segments = state.max_gso_segments(),
            gro_segments = gro,
            "quic endpoint: GSO {}, GRO {}",
            if state.max_gso_segments() > 1 { "on" } else { "off" },
            if gro > 1 { "on" } else { "off" },
        );

        let ready = monoio::net::udp::UdpSocket::from_std(socket.try_clone()?)?;
        let io = UdpIo {
            socket,
            state,
            recv_buf: RecvArea::new(slot_len * RECV_SLOTS)?,
            slot_len,
            meta: [RecvMeta::default(); RECV_SLOTS],
        };
        Ok((io, ready))
    }

    pub(super) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// The largest datagram this socket receives whole, advertised to peers as our
    /// `max_udp_payload_size`.
    pub(super) fn max_payload(&self) -> u16 {
        if self.slot_len >= GRO_SLOT {
            MAX_GRO_PAYLOAD
        } else {
            MAX_UDP_PAYLOAD
        }
    }

    /// Whether outgoing datagrams may be fragmented, which rules out MTU discovery.
    pub(super) fn may_fragment(&self) -> bool {
        self.state.may_fragment()
    }

    /// The most datagrams one send may carry as a GSO train; 1 without GSO. It can drop at
    /// run time when the kernel refuses GSO.
    pub(super) fn max_gso_segments(&self) -> usize {
        self.state.max_gso_segments()
    }

    /// Receives one batch without blocking; returns how many buffers were filled, to be read
    /// back with [`UdpIo::datagrams`].
    pub(super) fn recv(&mut self) -> io::Result<usize> {
        let mut chunks = self.recv_buf.as_mut_slice().chunks_mut(self.slot_len);
        let mut bufs: [IoSliceMut<'_>; RECV_SLOTS] =
            std::array::from_fn(|_| IoSliceMut::new(chunks.next().unwrap_or_default()));
        self.state
            .recv((&self.socket).into(), &mut bufs, &mut self.meta)
    }

    /// The `i`-th buffer of the last batch: its metadata and bytes (possibly a GRO train of
    /// `meta.stride`-sized datagrams).
    pub(super) fn datagrams(&self, i: usize) -> Option<(&RecvMeta, &[u8])> {
        let meta = self.meta.get(i)?;
        let start = i * self.slot_len;
        let data = self
            .recv_buf
            .as_slice()
            .get(start..start + meta.len.min(self.slot_len))?;
        Some((meta, data))
    }

    /// Sends one datagram or GSO train without blocking.
    pub(super) fn send(&self, out: &Outgoing, contents: &[u8]) -> io::Result<()> {
        let transmit = Transmit {
            destination: out.destination,
            ecn: out.ecn,
            contents,
            segment_size: out.segment_size,
            src_ip: out.src_ip,
        };
        self.state.try_send((&self.socket).into(), &transmit)
    }
}

/// The receive memory of one endpoint, mapped from the kernel rather than taken from the
/// heap.
///
/// With GRO an endpoint reads into 16 slots of 64 KiB, 1 MiB in all, and the connector has
/// an endpoint per tunnel connection. Zeroed heap memory is often recycled memory that the
/// allocator must clear, making the whole MiB resident at once; a fresh anonymous mapping is
/// zero by definition and becomes resident page by page as datagrams land in it, so an idle
/// endpoint holds only the few pages its handshakes and keep-alives touched.
struct RecvArea {
    start: std::ptr::NonNull<u8>,
    len: usize,
}

impl RecvArea {
    fn new(len: usize) -> io::Result<RecvArea> {
        // SAFETY: an anonymous private mapping with no address hint touches no existing
        // memory; the result is checked before use.
        let start = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if start == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let start = std::ptr::NonNull::new(start.cast()).ok_or(io::ErrorKind::OutOfMemory)?;
        Ok(RecvArea { start, len })
    }

    fn as_slice(&self) -> &[u8] {
        // SAFETY: the mapping is `len` readable bytes, zero-filled by the kernel or written
        // since, and lives as long as `self`.
        unsafe { std::slice::from_raw_parts(self.start.as_ptr(), self.len) }
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`, and `&mut self` makes this the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.start.as_ptr(), self.len) }
    }
}

impl Drop for RecvArea {
    fn drop(&mut self) {
        // SAFETY: the mapping was made in `new` with this start and length, and no slice of
        // it outlives `self`.
        unsafe { libc::munmap(self.start.as_ptr().cast(), self.len) };
    }
}

/// Where and how to send a datagram, taken from a quinn-proto transmit.
#[derive(Debug, Clone, Copy)]
pub(super) struct Outgoing {
    pub(super) destination: SocketAddr,
    pub(super) ecn: Option<quinn_udp::EcnCodepoint>,
    pub(super) segment_size: Option<usize>,
    pub(super) src_ip: Option<IpAddr>,
}

impl From<&quinn_proto::Transmit> for Outgoing {
    fn from(t: &quinn_proto::Transmit) -> Outgoing {
        Outgoing {
            destination: t.destination,
            ecn: t
                .ecn
                .and_then(|e| quinn_udp::EcnCodepoint::from_bits(e as u8)),
            segment_size: t.segment_size,
            src_ip: t.src_ip,
        }
    }
}

/// Whether a send error only means this datagram is lost (UDP allows that) rather than that
/// the socket must be waited on.
pub(super) fn log_send_error(error: &io::Error) {
    // EMSGSIZE is what MTU probes beyond the path's limit get; that is how discovery learns.
    if error.raw_os_error() != Some(libc::EMSGSIZE) {
        debug!(%error, "udp send failed; datagram dropped");
    }
}

/// Asks for `SOCKET_BUFFER` in both directions, forcing past the sysctl caps when privileged,
/// and reports what the kernel granted.
fn raise_buffers(socket: &std::net::UdpSocket, addr: SocketAddr) {
    let sock = socket2::SockRef::from(socket);
    set_buffer(&sock, Direction::Receive);
    set_buffer(&sock, Direction::Send);

    let recv = sock.recv_buffer_size().unwrap_or(0);
    let send = sock.send_buffer_size().unwrap_or(0);
    debug!(%addr, recv_buffer = recv, send_buffer = send, "quic endpoint socket buffers");

    // Linux reports twice the granted size (it counts its own bookkeeping).
    let granted = if cfg!(target_os = "linux") {
        2 * SOCKET_BUFFER
    } else {
        SOCKET_BUFFER
    };
    if recv < granted || send < granted {
        warn!(
            %addr,
            recv_buffer = recv,
            send_buffer = send,
            "udp socket buffers are capped below {SOCKET_BUFFER} bytes, which costs throughput; \
             run: sysctl -w net.core.rmem_max={SOCKET_BUFFER} net.core.wmem_max={SOCKET_BUFFER}"
        );
    }
}

#[derive(Clone, Copy)]
enum Direction {
    Receive,
    Send,
}

fn set_buffer(sock: &socket2::SockRef<'_>, direction: Direction) {
    if set_buffer_forced(sock, direction).is_ok() {
        return;
    }
    let result = match direction {
        Direction::Receive => sock.set_recv_buffer_size(SOCKET_BUFFER),
        Direction::Send => sock.set_send_buffer_size(SOCKET_BUFFER),
    };
    if let Err(error) = result {
        debug!(%error, "cannot set udp socket buffer size");
    }
}

/// `SO_RCVBUFFORCE`/`SO_SNDBUFFORCE` ignore `net.core.rmem_max`/`wmem_max` but need
/// `CAP_NET_ADMIN`.
#[cfg(target_os = "linux")]
fn set_buffer_forced(sock: &socket2::SockRef<'_>, direction: Direction) -> io::Result<()> {
    use std::os::fd::AsRawFd;

    let option = match direction {
        Direction::Receive => libc::SO_RCVBUFFORCE,
        Direction::Send => libc::SO_SNDBUFFORCE,
    };
    let value = SOCKET_BUFFER as libc::c_int;
    // SAFETY: the descriptor is a live socket borrowed for the call, and the option value
    // points at a c_int whose size is passed alongside.
    let ret = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn set_buffer_forced(_: &socket2::SockRef<'_>, _: Direction) -> io::Result<()> {
    Err(io::ErrorKind::Unsupported.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receive_area_starts_zeroed_and_keeps_what_is_written() {
        let mut area = RecvArea::new(RECV_SLOTS * GRO_SLOT).unwrap();
        assert_eq!(area.as_slice().len(), RECV_SLOTS * GRO_SLOT);
        assert!(area.as_slice().iter().all(|&b| b == 0));

        area.as_mut_slice()[GRO_SLOT..GRO_SLOT + 3].copy_from_slice(b"abc");
        assert_eq!(&area.as_slice()[GRO_SLOT - 1..GRO_SLOT + 4], b"\0abc\0");
    }
}
