//! Worker threads, one monoio runtime each, and the sockets they own.
//!
//! Every listening address is bound once per worker with `SO_REUSEPORT`, so the kernel
//! spreads connections (and UDP flows) across workers and no accept crosses a core. All
//! sockets of a group are bound up front on the calling thread: when the address asks for
//! port 0, the first bind picks the port and the others reuse it.

pub mod affinity;
pub mod gather;
pub mod io;
pub mod join;
pub mod recycle;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::thread::JoinHandle;

use socket2::{Domain, Protocol, Socket, Type};

/// Backlog of each public listening socket.
const LISTEN_BACKLOG: i32 = 4096;

/// Raises this process's soft open-file limit to its hard limit and returns the new limit.
/// Every client, origin and tunnel socket is a descriptor, and the usual soft limit of 1024
/// runs out near a thousand clients; the hard limit is the operator's (`tuning/`).
pub fn raise_open_files() -> std::io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: `limit` is a valid rlimit whose soft value equals its hard one.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(limit.rlim_cur)
}

/// Turns transparent huge pages off for this process (and what it starts), as the first
/// thing `main` does.
///
/// mimalloc reserves a 1 GiB arena and advises the kernel to back it with huge pages, so
/// every 2 MiB region a worker touches at all becomes 2 MiB resident: an idle edge or
/// connector held about 35 MiB of mostly empty huge pages instead of 4 MiB of heap. The
/// heap of a tunnel is small and spread across threads, so huge pages buy little TLB reach
/// here and cost a lot of memory. This is what `MIMALLOC_ALLOW_THP=0` would do, without
/// relying on the environment.
pub fn disable_huge_pages() -> std::io::Result<()> {
    // SAFETY: PR_SET_THP_DISABLE takes one integer flag and no pointers.
    if unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// One worker per core unless told otherwise.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Runs `main` on a fresh runtime on the current thread: io_uring where the kernel has it,
/// epoll otherwise.
pub fn block_on<F: Future>(main: F) -> std::io::Result<F::Output> {
    let build = |ring: io_uring::Builder| {
        monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .enable_timer()
            .with_entries(1024)
            .uring_builder(ring)
            .build()
    };
    // Only this thread submits to and reaps from its ring, so completions need not interrupt
    // it with an inter-processor interrupt: they are run at its next kernel entry, and the
    // kernel may skip cross-thread bookkeeping. Kernels before 6.0 refuse these flags; the
    // ring is then built without them. DEFER_TASKRUN (completions finished only when the
    // runtime parks) was measured and not taken: 7 % less CPU per saturated small GET, but
    // small exchanges that share a worker with bulk transfers got 25-35 % slower, as their
    // completions waited behind the busy QUIC driver.
    let mut tuned = io_uring::IoUring::builder();
    tuned.setup_coop_taskrun().setup_single_issuer();
    let mut rt = match build(tuned) {
        Ok(rt) => rt,
        Err(_) => build(io_uring::IoUring::builder())?,
    };
    Ok(rt.block_on(main))
}

/// Starts one named worker thread per item, each running `body(index, item)` on its own
/// runtime; the item carries what that worker owns (its sockets, say). With `pin_cpus`,
/// worker `i` first pins itself to the `i`-th CPU the process may run on ([`affinity`]),
/// before its runtime and ring exist.
pub fn spawn_workers<T, F, Fut>(
    name: &str,
    items: Vec<T>,
    pin_cpus: bool,
    body: F,
) -> std::io::Result<Vec<JoinHandle<()>>>
where
    T: Send + 'static,
    F: Fn(usize, T) -> Fut + Send + Clone + 'static,
    Fut: Future<Output = ()>,
{
    // Read once, on this thread: it is the mask every worker inherits.
    let allowed = if pin_cpus {
        std::sync::Arc::new(affinity::allowed_cpus()?)
    } else {
        Default::default()
    };
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            let body = body.clone();
            let allowed = allowed.clone();
            std::thread::Builder::new()
                .name(format!("{name}-{index}"))
                .spawn(move || {
                    if pin_cpus {
                        affinity::pin_worker(index, &allowed);
                    }
                    match block_on(body(index, item)) {
                        Ok(()) => {}
                        Err(err) => tracing::error!(worker = index, "cannot start runtime: {err}"),
                    }
                })
        })
        .collect()
}

fn reuseport_socket(addr: SocketAddr, ty: Type, protocol: Protocol) -> std::io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), ty, Some(protocol))?;
    // For TCP, SO_REUSEADDR lets a restarted process bind past its predecessor's TIME_WAIT
    // sockets; UDP has no such state and must not share a port by it.
    socket.set_reuse_address(ty == Type::STREAM)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket)
}

/// Fails when another socket already holds `addr`. `SO_REUSEPORT` would otherwise let a
/// second process of the same user share the port silently and take half its traffic;
/// this probe binds without it, so any listener (or UDP socket) there makes it fail.
fn ensure_free(addr: SocketAddr, ty: Type, protocol: Protocol) -> std::io::Result<()> {
    if addr.port() == 0 {
        return Ok(());
    }
    // A process that just died may still hold its sockets for a moment: io_uring releases
    // the files its queued operations referenced only after the process is gone. A restart
    // right after a crash would otherwise be refused, so the probe retries for a second.
    let mut attempts = 10;
    loop {
        let probe = Socket::new(Domain::for_address(addr), ty, Some(protocol))?;
        probe.set_reuse_address(ty == Type::STREAM)?;
        match probe.bind(&addr.into()) {
            Ok(()) => return Ok(()),
            Err(err) if err.kind() == std::io::ErrorKind::AddrInUse && attempts > 1 => {
                attempts -= 1;
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Err(err) if err.kind() == std::io::ErrorKind::AddrInUse => {
                let message = format!("{addr} is already in use by another process");
                return Err(std::io::Error::new(err.kind(), message));
            }
            Err(err) => return Err(err),
        }
    }
}

/// Binds `count` TCP listeners on one address with `SO_REUSEPORT`.
pub fn bind_tcp_group(
    addr: SocketAddr,
    count: usize,
) -> std::io::Result<Vec<std::net::TcpListener>> {
    ensure_free(addr, Type::STREAM, Protocol::TCP)?;
    let mut addr = addr;
    let mut listeners = Vec::with_capacity(count);
    for _ in 0..count.max(1) {
        let socket = reuseport_socket(addr, Type::STREAM, Protocol::TCP)?;
        socket.listen(LISTEN_BACKLOG)?;
        let listener: std::net::TcpListener = socket.into();
        addr = listener.local_addr()?;
        listeners.push(listener);
    }
    Ok(listeners)
}

/// Binds `count` UDP sockets on one address with `SO_REUSEPORT`.
pub fn bind_udp_group(addr: SocketAddr, count: usize) -> std::io::Result<Vec<std::net::UdpSocket>> {
    ensure_free(addr, Type::DGRAM, Protocol::UDP)?;
    let mut addr = addr;
    let mut sockets = Vec::with_capacity(count);
    for _ in 0..count.max(1) {
        let socket: std::net::UdpSocket =
            reuseport_socket(addr, Type::DGRAM, Protocol::UDP)?.into();
        addr = socket.local_addr()?;
        sockets.push(socket);
    }
    Ok(sockets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_pages_are_turned_off() {
        disable_huge_pages().unwrap();
        // SAFETY: PR_GET_THP_DISABLE takes no arguments and returns the flag.
        assert_eq!(
            unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) },
            1
        );
    }

    #[test]
    fn groups_share_one_ephemeral_port() {
        let tcp = bind_tcp_group("127.0.0.1:0".parse().unwrap(), 3).unwrap();
        let port = tcp[0].local_addr().unwrap().port();
        assert_ne!(port, 0);
        assert!(tcp.iter().all(|l| l.local_addr().unwrap().port() == port));

        let udp = bind_udp_group("127.0.0.1:0".parse().unwrap(), 2).unwrap();
        let port = udp[0].local_addr().unwrap().port();
        assert!(udp.iter().all(|s| s.local_addr().unwrap().port() == port));
    }

    #[test]
    fn a_port_held_by_another_group_is_refused() {
        let tcp = bind_tcp_group("127.0.0.1:0".parse().unwrap(), 2).unwrap();
        let taken = tcp[0].local_addr().unwrap();
        let err = bind_tcp_group(taken, 2).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
        assert_eq!(
            err.to_string(),
            format!("{taken} is already in use by another process")
        );

        let udp = bind_udp_group("127.0.0.1:0".parse().unwrap(), 2).unwrap();
        let taken = udp[0].local_addr().unwrap();
        let err = bind_udp_group(taken, 1).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);

        // Once the holder is gone, the address is free again.
        drop(udp);
        assert_eq!(bind_udp_group(taken, 1).unwrap().len(), 1);
    }
}
