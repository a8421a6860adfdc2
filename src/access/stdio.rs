//! Stdio mode: standard input and output carried over one WebSocket, with blocking IO on
//! two threads (one per direction), for ssh's `ProxyCommand`.
//!
//! The end of standard input shuts down writing towards the edge; the end of the stream
//! from the edge closes standard output. Either way the other direction goes on, and the
//! call returns once both have ended, or as soon as a Close frame or an error ends both.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::upgrade::{self, Answer, Step};
use super::{AccessError, Target};
use crate::runtime::io::READ_CHUNK;
use crate::ws::frame::{self, Decoder, Message, Opcode, HEADER_ROOM};
use crate::ws::{handshake, Role};

/// How long connecting to the edge and its answer to the upgrade may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Carries this process's standard input and output to `target`.
pub fn carry_stdio(target: &Target) -> Result<(), AccessError> {
    carry(target, io::stdin(), StdoutSink)
}

/// Carries `input` and `output` to `target`; `output` is dropped when the edge's side ends,
/// which is how its reader learns of the end.
pub fn carry<I, O>(target: &Target, input: I, output: O) -> Result<(), AccessError>
where
    I: Read + Send + 'static,
    O: Write + Send + 'static,
{
    let (edge, initial) = open(target)?;
    let writer = Arc::new(Mutex::new(edge.try_clone()?));
    let (done, ended) = crossbeam_channel::bounded(2);

    let up_writer = writer.clone();
    let up_done = done.clone();
    std::thread::Builder::new()
        .name("access-input".into())
        .spawn(move || {
            let _ = up_done.send(Ended::Input(to_edge(input, &up_writer)));
        })?;
    std::thread::Builder::new()
        .name("access-output".into())
        .spawn(move || {
            let _ = done.send(Ended::Output(from_edge(edge, initial, output, &writer)));
        })?;

    let mut input_ended = false;
    let mut output_ended = false;
    // A write to the edge that failed: the reading side, which learns why the connection
    // ended (a Close saying the service broke off, a reset), usually has the better reason.
    let mut write_failed = None;
    loop {
        let next = match write_failed {
            None => ended.recv().ok(),
            Some(_) => ended.recv_timeout(OUTPUT_REASON_WAIT).ok(),
        };
        match next {
            None | Some(Ended::Output(Ok(OutputEnd::Closed))) => break,
            Some(Ended::Input(Ok(()))) => input_ended = true,
            Some(Ended::Input(Err(AccessError::Io(err)))) if !output_ended => {
                write_failed = Some(AccessError::Io(err));
            }
            Some(Ended::Output(Ok(OutputEnd::Eof))) => output_ended = true,
            Some(Ended::Input(Err(err)) | Ended::Output(Err(err))) => return Err(err),
        }
        if output_ended && (input_ended || write_failed.is_some()) {
            break;
        }
    }
    write_failed.map_or(Ok(()), Err)
}

/// How long a failed write to the edge waits for the reading side's reason.
const OUTPUT_REASON_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

enum Ended {
    Input(Result<(), AccessError>),
    Output(Result<OutputEnd, AccessError>),
}

enum OutputEnd {
    /// The edge's side ended; input may still be going.
    Eof,
    /// A Close frame ended both directions.
    Closed,
}

/// Connects and completes the handshake; returns the socket (blocking, no timeouts left)
/// and the WebSocket bytes that came with the answer.
fn open(target: &Target) -> Result<(TcpStream, Bytes), AccessError> {
    let connect_error = |reason| AccessError::Connect {
        addr: target.edge.to_string(),
        reason,
    };
    let mut edge =
        TcpStream::connect_timeout(&target.edge, HANDSHAKE_TIMEOUT).map_err(connect_error)?;
    edge.set_nodelay(true)?;
    edge.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
    let key = handshake::new_key();
    edge.write_all(&upgrade::request(&target.hostname, &key))?;

    let mut answer = Answer::new(&key);
    let mut eof = false;
    loop {
        match answer.step(eof) {
            Step::More => {}
            Step::Switched(rest) => {
                edge.set_read_timeout(None)?;
                return Ok((edge, rest));
            }
            Step::Failed(err) => return Err(err),
        }
        let buf = answer.buffer();
        let start = buf.len();
        buf.resize(start + 16 * 1024, 0);
        let read = edge.read(&mut buf[start..]);
        buf.truncate(start + *read.as_ref().unwrap_or(&0));
        match read {
            Ok(n) => eof = n == 0,
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                let why = format!("the edge did not answer within {HANDSHAKE_TIMEOUT:?}");
                return Err(AccessError::Handshake(why));
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err.into()),
        }
    }
}

/// Writes one whole frame; the lock keeps the two threads' frames from interleaving.
fn send(writer: &Mutex<TcpStream>, frame: &[u8]) -> io::Result<()> {
    writer
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .write_all(frame)
}

fn shutdown_write(writer: &Mutex<TcpStream>) {
    let _ = writer
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .shutdown(Shutdown::Write);
}

fn mask() -> Option<[u8; 4]> {
    Some(rand::random())
}

/// Input to the edge: each read becomes one masked binary frame built in the read buffer.
fn to_edge<I: Read>(mut input: I, writer: &Mutex<TcpStream>) -> Result<(), AccessError> {
    let mut buf = BytesMut::with_capacity(HEADER_ROOM + READ_CHUNK);
    loop {
        buf.clear();
        buf.resize(HEADER_ROOM + READ_CHUNK, 0);
        let n = match input.read(&mut buf[HEADER_ROOM..]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => {
                shutdown_write(writer);
                return Err(AccessError::Input(err));
            }
        };
        buf.truncate(HEADER_ROOM + n);
        let frame = frame::frame_in_place(&mut buf, Opcode::Binary, mask());
        send(writer, &frame)?;
    }
    shutdown_write(writer);
    Ok(())
}

/// The edge to output: payloads are written as they are decoded; pings are answered.
fn from_edge<O: Write>(
    mut edge: TcpStream,
    initial: Bytes,
    mut output: O,
    writer: &Mutex<TcpStream>,
) -> Result<OutputEnd, AccessError> {
    let mut decoder = Decoder::new(Role::Client);
    let mut buf = BytesMut::from(&initial[..]);
    loop {
        match decoder.decode(&mut buf) {
            Ok(Some(Message::Data(run))) => {
                output
                    .write_all(&run)
                    .and_then(|()| output.flush())
                    .map_err(AccessError::Output)?;
            }
            Ok(Some(Message::Ping(payload))) => {
                send(
                    writer,
                    &frame::control_frame(Opcode::Pong, &payload, mask()),
                )?;
            }
            Ok(Some(Message::Pong(_))) => {}
            Ok(Some(Message::Close(code))) => {
                let close = match code {
                    Some(code) => frame::close_frame(code, mask()),
                    None => frame::control_frame(Opcode::Close, &[], mask()),
                };
                let _ = send(writer, &close);
                shutdown_write(writer);
                return match code {
                    Some(code) if code != frame::CLOSE_NORMAL => Err(AccessError::BrokeOff(code)),
                    _ => Ok(OutputEnd::Closed),
                };
            }
            Ok(None) => {
                let start = buf.len();
                buf.resize(start + READ_CHUNK, 0);
                let read = edge.read(&mut buf[start..]);
                buf.truncate(start + *read.as_ref().unwrap_or(&0));
                match read {
                    Ok(0) if decoder.between_frames() && buf.is_empty() => {
                        return Ok(OutputEnd::Eof);
                    }
                    Ok(0) => return Err(AccessError::Truncated),
                    Ok(_) => {}
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                    Err(err) => return Err(err.into()),
                }
            }
            Err(err) => {
                let _ = send(writer, &frame::close_frame(err.close_code(), mask()));
                shutdown_write(writer);
                return Err(AccessError::Protocol(err));
            }
        }
    }
}

/// Standard output, unbuffered beyond each write; dropping it closes the descriptor's pipe
/// for the reader, so that the other end sees the end of the stream while this process
/// still runs.
struct StdoutSink;

impl Write for StdoutSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        io::stdout().lock().write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stdout().lock().flush()
    }
}

impl Drop for StdoutSink {
    fn drop(&mut self) {
        let _ = io::stdout().lock().flush();
        // Closing descriptor 1 outright would let the next file opened take its number and
        // receive whatever is later printed; /dev/null in its place ends the pipe just the
        // same.
        let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") else {
            return;
        };
        // SAFETY: dup2 with two descriptors that are open: `null` for the duration of the
        // call, and 1, which this process was started with and never closes itself.
        unsafe {
            libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), libc::STDOUT_FILENO);
        }
    }
}
