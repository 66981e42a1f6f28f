//! A read-only NBD server on a unix socket, serving one [`StreamedImage`] to QEMU.
//!
//! The fixed newstyle handshake (NBD_OPT_GO, NBD_OPT_INFO, NBD_OPT_EXPORT_NAME, NBD_OPT_LIST,
//! NBD_OPT_ABORT; everything else, structured replies included, is answered "unsupported"),
//! then simple replies to NBD_CMD_READ, NBD_CMD_DISC, NBD_CMD_FLUSH; writes, trims and the
//! like get EPERM (their payload is read and dropped). The protocol:
//! <https://github.com/NetworkBlockDevice/nbd/blob/master/doc/proto.md>.

use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use super::StreamError;
use super::image::StreamedImage;
use crate::image::Source;

const NBDMAGIC: u64 = 0x4e42_444d_4147_4943;
const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
const REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
const REQUEST_MAGIC: u32 = 0x2560_9513;
const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;

const FLAG_FIXED_NEWSTYLE: u16 = 1;
const FLAG_NO_ZEROES: u16 = 2;
const CLIENT_NO_ZEROES: u32 = 2;

const OPT_EXPORT_NAME: u32 = 1;
const OPT_ABORT: u32 = 2;
const OPT_LIST: u32 = 3;
const OPT_INFO: u32 = 6;
const OPT_GO: u32 = 7;

const REP_ACK: u32 = 1;
const REP_SERVER: u32 = 2;
const REP_INFO: u32 = 3;
const REP_ERR_UNSUP: u32 = 0x8000_0001;
const REP_ERR_INVALID: u32 = 0x8000_0003;
const REP_ERR_UNKNOWN: u32 = 0x8000_0006;

const INFO_EXPORT: u16 = 0;
const INFO_BLOCK_SIZE: u16 = 3;

const TRANS_HAS_FLAGS: u16 = 1;
const TRANS_READ_ONLY: u16 = 2;
const TRANS_SEND_FLUSH: u16 = 4;

const CMD_READ: u16 = 0;
const CMD_WRITE: u16 = 1;
const CMD_DISC: u16 = 2;
const CMD_FLUSH: u16 = 3;

const EPERM: u32 = 1;
const EIO: u32 = 5;
const EINVAL: u32 = 22;

/// The largest option a client may send (an export name and a few info requests).
const MAX_OPTION: u32 = 4096;
/// The largest read served: what the client is told (NBD_INFO_BLOCK_SIZE), and the memory one
/// request may take beyond the cache.
pub const MAX_READ: u32 = 4 << 20;
/// Connections served at once; QEMU opens one.
const MAX_CONNECTIONS: usize = 4;

/// The live connections: a handle to shut each down, and its thread.
type Connections = Mutex<Vec<(UnixStream, JoinHandle<()>)>>;

/// A running server; [`NbdServer::stop`] (or dropping it) closes the socket and every
/// connection and removes the socket file.
pub struct NbdServer {
    socket: PathBuf,
    stopping: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
    connections: Arc<Connections>,
}

impl NbdServer {
    /// Listens on `socket` (created with mode 0600; a stale file there is replaced) and serves
    /// `image` as the export `export`, read-only.
    pub fn start(
        socket: &Path,
        export: &str,
        image: Arc<StreamedImage>,
    ) -> Result<NbdServer, StreamError> {
        let io = |e: io::Error| StreamError::Socket {
            path: socket.into(),
            message: e.to_string(),
        };
        match std::fs::remove_file(socket) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io(e)),
            _ => {}
        }
        // Only root (and ferry's user) may read the image; the socket is the way in.
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
        let listener = UnixListener::bind(socket);
        nix::sys::stat::umask(old);
        let listener = listener.map_err(io)?;
        let stopping = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(Mutex::new(Vec::new()));
        let export = export.to_string();
        let accept = {
            let (stopping, connections) = (stopping.clone(), connections.clone());
            std::thread::Builder::new()
                .name("nbd-accept".into())
                .spawn(move || accept_loop(listener, &export, &image, &stopping, &connections))
                .map_err(io)?
        };
        Ok(NbdServer {
            socket: socket.into(),
            stopping,
            accept: Some(accept),
            connections,
        })
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn stop(mut self) {
        self.shut_down();
    }

    fn shut_down(&mut self) {
        let Some(accept) = self.accept.take() else {
            return;
        };
        self.stopping.store(true, Ordering::SeqCst);
        // Wakes the accept loop, which then sees `stopping`.
        let _ = UnixStream::connect(&self.socket);
        let _ = accept.join();
        let connections = std::mem::take(
            &mut *self
                .connections
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for (stream, _) in &connections {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
        for (_, thread) in connections {
            let _ = thread.join();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

impl Drop for NbdServer {
    fn drop(&mut self) {
        self.shut_down();
    }
}

fn accept_loop(
    listener: UnixListener,
    export: &str,
    image: &Arc<StreamedImage>,
    stopping: &AtomicBool,
    connections: &Connections,
) {
    for stream in listener.incoming() {
        if stopping.load(Ordering::SeqCst) {
            return;
        }
        let stream = match stream {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!("nbd: accept: {e}");
                continue;
            }
        };
        let mut live = connections.lock().unwrap_or_else(PoisonError::into_inner);
        live.retain(|(_, thread)| !thread.is_finished());
        if live.len() >= MAX_CONNECTIONS {
            tracing::warn!("nbd: {MAX_CONNECTIONS} connections already; refusing another");
            continue;
        }
        let Ok(handle) = stream.try_clone() else {
            continue;
        };
        let (export, image) = (export.to_string(), image.clone());
        let thread = std::thread::Builder::new()
            .name("nbd-conn".into())
            .spawn(move || {
                if let Err(e) = serve(stream, &export, &*image, image.len()) {
                    tracing::debug!("nbd: connection ended: {e}");
                }
            });
        match thread {
            Ok(thread) => live.push((handle, thread)),
            Err(e) => tracing::warn!("nbd: cannot start a connection thread: {e}"),
        }
    }
}

/// One client: the handshake, then requests until NBD_CMD_DISC or the connection closes.
/// `image` is `size` bytes; any [`Source`] serves (the unit tests use a file).
fn serve(stream: UnixStream, export: &str, image: &dyn Source, size: u64) -> io::Result<()> {
    let mut input = BufReader::new(stream.try_clone()?);
    let mut output = BufWriter::with_capacity(256 << 10, stream);
    if !handshake(&mut input, &mut output, export, size)? {
        return Ok(());
    }
    transmission(&mut input, &mut output, image)
}

/// Runs the option haggling: true once the client entered transmission, false if it left.
fn handshake(
    input: &mut impl Read,
    output: &mut impl Write,
    export: &str,
    size: u64,
) -> io::Result<bool> {
    output.write_all(&NBDMAGIC.to_be_bytes())?;
    output.write_all(&IHAVEOPT.to_be_bytes())?;
    output.write_all(&(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).to_be_bytes())?;
    output.flush()?;
    let client_flags = read_u32(input)?;
    let flags = TRANS_HAS_FLAGS | TRANS_READ_ONLY | TRANS_SEND_FLUSH;
    loop {
        if read_u64(input)? != IHAVEOPT {
            return Err(invalid("option without IHAVEOPT"));
        }
        let option = read_u32(input)?;
        let len = read_u32(input)?;
        if len > MAX_OPTION {
            return Err(invalid("option data too long"));
        }
        let mut data = vec![0u8; len as usize];
        input.read_exact(&mut data)?;
        match option {
            OPT_EXPORT_NAME => {
                if data != export.as_bytes() {
                    // The only answer the protocol has here is to hang up.
                    return Ok(false);
                }
                output.write_all(&size.to_be_bytes())?;
                output.write_all(&flags.to_be_bytes())?;
                if client_flags & CLIENT_NO_ZEROES == 0 {
                    output.write_all(&[0u8; 124])?;
                }
                output.flush()?;
                return Ok(true);
            }
            OPT_ABORT => {
                reply(output, option, REP_ACK, &[])?;
                return Ok(false);
            }
            OPT_LIST => {
                let mut name = (export.len() as u32).to_be_bytes().to_vec();
                name.extend_from_slice(export.as_bytes());
                reply(output, option, REP_SERVER, &name)?;
                reply(output, option, REP_ACK, &[])?;
            }
            OPT_INFO | OPT_GO => {
                let Some(name) = go_export_name(&data) else {
                    reply(output, option, REP_ERR_INVALID, b"malformed request")?;
                    continue;
                };
                if name != export.as_bytes() {
                    reply(output, option, REP_ERR_UNKNOWN, b"no such export")?;
                    continue;
                }
                let mut info = INFO_EXPORT.to_be_bytes().to_vec();
                info.extend_from_slice(&size.to_be_bytes());
                info.extend_from_slice(&flags.to_be_bytes());
                reply(output, option, REP_INFO, &info)?;
                let mut sizes = INFO_BLOCK_SIZE.to_be_bytes().to_vec();
                for n in [1u32, 1 << 20, MAX_READ] {
                    sizes.extend_from_slice(&n.to_be_bytes());
                }
                reply(output, option, REP_INFO, &sizes)?;
                reply(output, option, REP_ACK, &[])?;
                if option == OPT_GO {
                    return Ok(true);
                }
            }
            _ => reply(output, option, REP_ERR_UNSUP, &[])?,
        }
    }
}

/// The export name in an NBD_OPT_GO/INFO request: `u32 len, name, u16 n, n × u16`.
fn go_export_name(data: &[u8]) -> Option<&[u8]> {
    let len = u32::from_be_bytes(data.get(..4)?.try_into().ok()?) as usize;
    let name = data.get(4..4usize.checked_add(len)?)?;
    let rest = &data[4 + len..];
    let count = u16::from_be_bytes(rest.get(..2)?.try_into().ok()?) as usize;
    (rest.len() == 2 + 2 * count).then_some(name)
}

fn reply(output: &mut impl Write, option: u32, kind: u32, data: &[u8]) -> io::Result<()> {
    output.write_all(&REPLY_MAGIC.to_be_bytes())?;
    output.write_all(&option.to_be_bytes())?;
    output.write_all(&kind.to_be_bytes())?;
    output.write_all(&(data.len() as u32).to_be_bytes())?;
    output.write_all(data)?;
    output.flush()
}

fn transmission(
    input: &mut impl Read,
    output: &mut impl Write,
    image: &dyn Source,
) -> io::Result<()> {
    let mut buf = Vec::new();
    loop {
        let mut head = [0u8; 28];
        input.read_exact(&mut head)?;
        let field = |at: usize, n: usize| &head[at..at + n];
        if u32::from_be_bytes(field(0, 4).try_into().expect("4")) != REQUEST_MAGIC {
            return Err(invalid("request without the request magic"));
        }
        let kind = u16::from_be_bytes(field(6, 2).try_into().expect("2"));
        let cookie: [u8; 8] = field(8, 8).try_into().expect("8");
        let offset = u64::from_be_bytes(field(16, 8).try_into().expect("8"));
        let len = u32::from_be_bytes(field(24, 4).try_into().expect("4"));
        match kind {
            CMD_READ => {
                if len > MAX_READ {
                    simple_reply(output, cookie, EINVAL, &[])?;
                    continue;
                }
                buf.resize(len as usize, 0);
                match image.read_exact_at(&mut buf, offset) {
                    Ok(()) => simple_reply(output, cookie, 0, &buf)?,
                    Err(e) => {
                        tracing::warn!("nbd: read of {len} bytes at {offset}: {e}");
                        let past_end = e.kind() == io::ErrorKind::UnexpectedEof;
                        let code = if past_end { EINVAL } else { EIO };
                        simple_reply(output, cookie, code, &[])?;
                    }
                }
            }
            CMD_DISC => return Ok(()),
            CMD_FLUSH => simple_reply(output, cookie, 0, &[])?,
            CMD_WRITE => {
                // The payload follows the request: drop it to stay in step, then refuse.
                io::copy(&mut input.take(u64::from(len)), &mut io::sink())?;
                simple_reply(output, cookie, EPERM, &[])?;
            }
            _ => simple_reply(output, cookie, EPERM, &[])?,
        }
        // Keep a large read's buffer from outliving it.
        if buf.capacity() > 1 << 20 {
            buf = Vec::new();
        }
    }
}

fn simple_reply(
    output: &mut impl Write,
    cookie: [u8; 8],
    error: u32,
    data: &[u8],
) -> io::Result<()> {
    output.write_all(&SIMPLE_REPLY_MAGIC.to_be_bytes())?;
    output.write_all(&error.to_be_bytes())?;
    output.write_all(&cookie)?;
    output.write_all(data)?;
    output.flush()
}

fn read_u32(input: &mut impl Read) -> io::Result<u32> {
    let mut b = [0u8; 4];
    input.read_exact(&mut b)?;
    Ok(u32::from_be_bytes(b))
}

fn read_u64(input: &mut impl Read) -> io::Result<u64> {
    let mut b = [0u8; 8];
    input.read_exact(&mut b)?;
    Ok(u64::from_be_bytes(b))
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("nbd: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A raw client: handshake with NBD_OPT_GO, a read, a write, a read past the end, then
    /// NBD_CMD_DISC, against an export backed by a file.
    #[test]
    fn go_read_refused_write_and_disconnect() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i % 253) as u8).collect();
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&data).unwrap();
        let (mut client, server) = UnixStream::pair().unwrap();
        let size = data.len() as u64;
        let thread = std::thread::spawn(move || serve(server, "installer", &file, size));

        let mut greeting = [0u8; 18];
        client.read_exact(&mut greeting).unwrap();
        assert_eq!(greeting[..8], NBDMAGIC.to_be_bytes());
        client.write_all(&3u32.to_be_bytes()).unwrap();
        let mut go = Vec::new();
        go.extend_from_slice(&IHAVEOPT.to_be_bytes());
        go.extend_from_slice(&OPT_GO.to_be_bytes());
        go.extend_from_slice(&(4 + 9 + 2u32).to_be_bytes());
        go.extend_from_slice(&9u32.to_be_bytes());
        go.extend_from_slice(b"installer");
        go.extend_from_slice(&0u16.to_be_bytes());
        client.write_all(&go).unwrap();
        let mut replies = Vec::new();
        loop {
            let mut head = [0u8; 20];
            client.read_exact(&mut head).unwrap();
            let kind = u32::from_be_bytes(head[12..16].try_into().unwrap());
            let len = u32::from_be_bytes(head[16..20].try_into().unwrap());
            let mut body = vec![0u8; len as usize];
            client.read_exact(&mut body).unwrap();
            replies.push((kind, body));
            if kind == REP_ACK {
                break;
            }
        }
        let export = &replies[0];
        assert_eq!(export.0, REP_INFO);
        assert_eq!(export.1[2..10], size.to_be_bytes());
        let flags = u16::from_be_bytes(export.1[10..12].try_into().unwrap());
        assert_ne!(flags & TRANS_READ_ONLY, 0, "the export is read-only");

        let request = |client: &mut UnixStream, kind: u16, offset: u64, len: u32| {
            let mut r = REQUEST_MAGIC.to_be_bytes().to_vec();
            r.extend_from_slice(&0u16.to_be_bytes());
            r.extend_from_slice(&kind.to_be_bytes());
            r.extend_from_slice(&u64::from(kind).to_be_bytes());
            r.extend_from_slice(&offset.to_be_bytes());
            r.extend_from_slice(&len.to_be_bytes());
            client.write_all(&r).unwrap();
        };
        let reply = |client: &mut UnixStream| {
            let mut head = [0u8; 16];
            client.read_exact(&mut head).unwrap();
            u32::from_be_bytes(head[4..8].try_into().unwrap())
        };
        request(&mut client, CMD_READ, 1000, 3000);
        assert_eq!(reply(&mut client), 0);
        let mut got = vec![0u8; 3000];
        client.read_exact(&mut got).unwrap();
        assert_eq!(got, data[1000..4000]);
        request(&mut client, CMD_WRITE, 0, 512);
        client.write_all(&[0x55; 512]).unwrap();
        assert_eq!(reply(&mut client), EPERM);
        request(&mut client, CMD_READ, 4900, 200);
        assert_eq!(reply(&mut client), EINVAL);
        request(&mut client, CMD_DISC, 0, 0);
        thread.join().unwrap().unwrap();
    }
}
