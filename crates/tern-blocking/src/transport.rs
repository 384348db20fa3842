//! What the client needs of a byte stream beyond `Read + Write`.

use std::{io, net::TcpStream, time::Duration};

/// A byte stream the client can read on one thread and write on another:
/// a second handle to the same stream, and a read timeout (keep alive's
/// clock). `TcpStream` and `UnixStream` are transports; for another stream
/// (a TLS session, a serial port), implement these four methods.
pub trait Transport: io::Read + io::Write + Send + Sized + 'static {
    /// A second handle to the same stream, used for writing.
    fn try_clone(&self) -> io::Result<Self>;
    /// Makes reads give up after `timeout` (`None`: wait for input).
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
    /// Closes both directions, waking a blocked reader.
    fn shutdown(&self) -> io::Result<()>;
    /// Closes the writing direction (the peer reads end of stream).
    fn shutdown_write(&self) -> io::Result<()>;
}

impl Transport for TcpStream {
    fn try_clone(&self) -> io::Result<Self> {
        TcpStream::try_clone(self)
    }
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_read_timeout(self, timeout)
    }
    fn shutdown(&self) -> io::Result<()> {
        TcpStream::shutdown(self, std::net::Shutdown::Both)
    }
    fn shutdown_write(&self) -> io::Result<()> {
        TcpStream::shutdown(self, std::net::Shutdown::Write)
    }
}

#[cfg(unix)]
impl Transport for std::os::unix::net::UnixStream {
    fn try_clone(&self) -> io::Result<Self> {
        std::os::unix::net::UnixStream::try_clone(self)
    }
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        std::os::unix::net::UnixStream::set_read_timeout(self, timeout)
    }
    fn shutdown(&self) -> io::Result<()> {
        std::os::unix::net::UnixStream::shutdown(self, std::net::Shutdown::Both)
    }
    fn shutdown_write(&self) -> io::Result<()> {
        std::os::unix::net::UnixStream::shutdown(self, std::net::Shutdown::Write)
    }
}
