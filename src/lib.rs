//! adit: a self-hostable reverse tunnel with an io_uring, thread-per-core QUIC data plane.
//!
//! An origin with no public address runs the **connector** (`adit tunnel run`), which dials
//! out over QUIC to the **edge** (`adit edge`). The edge accepts public HTTP(S) on its listeners,
//! finds the tunnel that owns the requested hostname and sends each request down a
//! bidirectional stream of one of that tunnel's connections. The connector matches the
//! request against its ingress rules and relays it to the origin service.
//!
//! # Layout
//!
//! Read the modules roughly in this order:
//!
//! - [`tunnel`]: what travels between connector and edge. [`tunnel::frame`] is the sans-IO
//!   codec of the header frames that open every stream; [`tunnel::credentials`] is the file
//!   a connector proves its tunnel with.
//! - [`http`]: sans-IO HTTP/1.1 pieces shared by every leg: request and response head
//!   parsing with explicit limits, body framing (length, chunked, close-delimited), hop-by-hop
//!   header handling, and the error pages a user sees.
//! - [`ws`]: WebSocket (RFC 6455) for carrying raw TCP: a sans-IO frame codec and handshake,
//!   and the bridge that relays between a WebSocket and a byte stream with half-close.
//! - [`runtime`]: worker threads, one monoio (io_uring) runtime each, the
//!   `SO_REUSEPORT` sockets each worker owns, and the rustls stream over monoio sockets that
//!   both the edge's HTTPS listener and the connector's TLS to origins use; also
//!   [`runtime::join`], the two-future combinators the request paths poll in place (an
//!   async function would store each future it is given twice).
//! - [`quic`]: a per-worker driver for a `quinn-proto` endpoint. UDP goes through
//!   `quinn-udp` (GSO/GRO batches) with monoio used only to wait for readiness; streams
//!   are exposed as small async types that move `Bytes` in and out without copies.
//! - [`control`]: the edge's control plane, on its own thread: the SQLite store (tunnels,
//!   routes, connection history, when each tunnel last became active and inactive), the
//!   certificate authority, the admin API with its tunnel listing (status, filters, paging)
//!   and the dashboard page it serves, connection registration, and the routing snapshots
//!   it publishes to the data-plane workers.
//! - [`edge`]: the edge's data plane: public HTTP and HTTPS listeners per worker (HTTPS
//!   certificates chosen by SNI), the tunnel listener, the proxy that turns one client
//!   request into one tunnel stream (and closes a client connection without resetting it
//!   under its last response, `edge/close.rs`), and the choice of the tunnel connection for each
//!   request ([`edge::pick`]: the least loaded replica, and inside it one connection while
//!   it stays fresh and within a slack, so that requests share datagrams; never one whose
//!   sent requests went unanswered while another connection answers).
//! - [`connector`]: the YAML config and ingress rules, the outbound QUIC connections with
//!   reconnect and backoff, and the origin proxy with its keep-alive pools and TLS to
//!   `https://` and `unix+tls:` origins, the relay of `tcp://` services, and the drain on
//!   shutdown (unregister, finish what is in flight, close).
//! - [`metrics`]: Prometheus metrics of the edge and the connector: per-worker sets written
//!   without locks and summed at scrape time, the QUIC path figures of each connection, and
//!   the small HTTP server for `/metrics` and the connector's `/ready` and `/healthcheck`.
//! - [`access`]: the access client (`adit access tcp`), which carries local TCP connections
//!   or stdin/stdout over a WebSocket through the edge to a tunnel's `tcp://` service.
//! - [`origin`]: the built-in origin (`adit origin`) the tests run against.
//! - [`bench`]: the benchmark harness (`adit bench`): scenarios from `loadtest/` run directly
//!   and through an edge and a connector (and peers such as nginx), with throughput, latency
//!   percentiles, CPU and memory per path, SVG plots, and `bench compare` as a CI gate.
//! - [`load`]: the load generator (`adit load`): HTTP and TCP load from one monoio runtime
//!   per worker, closed or open loop (coordinated omission corrected, sends paced by a
//!   `timerfd` per connection), HdrHistogram reports.
//! - [`cli`]: the `adit` command line; `main.rs` only parses and dispatches.
//!
//! # Departures from `DESIGN.md`
//!
//! - There is no `buf` module of slab-indexed, fixed-size buffers registered with io_uring.
//!   Buffers are `BytesMut` recycled per worker instead: each connection reads into a
//!   buffer whose filled bytes are split off as `Bytes` and moved (not copied) into QUIC
//!   stream writes and socket writes, and `BytesMut::reserve`/`try_reclaim` take the room
//!   back once they are all dropped. Idle client connections return theirs to per-worker
//!   spares (`edge/idle.rs`), the connector encodes frames into a per-worker block
//!   ([`tunnel::buffers`]), socket writes gather QUIC chunks into pooled iovec sets
//!   ([`runtime::gather`]) and each request's boxed state reuses freed memory
//!   ([`runtime::recycle`]). In the steady state adit's own request path allocates nothing;
//!   quinn-proto allocates 6 times per stream (tests/tunnel_alloc.rs).
//! - Edge workers do not listen on UDP ports of their own, so a connector cannot address a
//!   chosen worker; the kernel's `SO_REUSEPORT` hash of each connection's addresses picks
//!   one. Each connection of a connector therefore dials from a UDP socket of its own, the
//!   edge says in `Registered` which worker took it and how many there are, and a connection
//!   that lands on a worker already holding another of the connector's connections while
//!   some worker holds none is dialed again at once from a new source port (at most four
//!   times in a row; see `connector/balance.rs`), and the old one is retired like a drain:
//!   unregistered, left to serve what the edge already sent it, closed when idle. With at
//!   least as many connections as edge workers, every worker then has one. A request that
//!   lands on a worker without a connection of its tunnel (fewer connections than workers)
//!   has its socket handed to one that has ([`edge::worker::WorkerMsg::Handoff`]).
//! - Not every socket operation goes through io_uring: after an idle client connection's
//!   readiness wait, its request is read with one direct non-blocking `recv` (measured
//!   faster than posting a read and waiting a loop turn for it), and the QUIC driver uses
//!   quinn-udp's `sendmsg`/`recvmmsg` with io_uring only for the socket's readiness.
//! - TCP services travel as WebSocket streams: `adit access tcp` opens a WebSocket to the
//!   edge's HTTP listener, the edge forwards it like any upgrade, and the WebSocket framing
//!   runs end to end between the access client and the connector. No stream uses
//!   [`tunnel::frame::StreamKind::Tcp`], and the edge has no raw TCP listeners.

pub mod access;
pub mod bench;
pub mod cli;
pub mod connector;
pub mod control;
pub mod edge;
pub mod http;
pub mod load;
pub mod metrics;
pub mod origin;
pub mod quic;
pub mod runtime;
pub mod tunnel;
pub mod ws;
