//! One acceptor type for the binary whichever way connections come in, so the engine is
//! instantiated once: plain TCP, or TLS when the build has it and the user asks for it.

use std::io::{self, IoSlice};
use std::net::{SocketAddr, TcpStream};

use server_core::{Acceptor, Admission, AsBorrowedSocket, BorrowedSocket, Link, PlainTcp};

#[cfg(feature = "tls")]
use crate::tls::{TlsAcceptor, TlsLink};

/// How accepted connections become links.
#[derive(Debug)]
pub enum Entry {
    /// As they are: the seed's behaviour.
    Plain(PlainTcp),
    /// Through a TLS handshake.
    #[cfg(feature = "tls")]
    Tls(TlsAcceptor),
}

/// The link an [`Entry`] makes.
#[derive(Debug)]
pub enum EntryLink {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP; boxed, so plain connections do not pay for its kilobyte in the pool.
    #[cfg(feature = "tls")]
    Tls(Box<TlsLink>),
}

impl Acceptor for Entry {
    type Link = EntryLink;

    fn accept(&mut self, stream: TcpStream, peer: SocketAddr) -> io::Result<Admission<EntryLink>> {
        Ok(match self {
            Entry::Plain(plain) => match plain.accept(stream, peer)? {
                Admission::Admit(link) => Admission::Admit(EntryLink::Plain(link)),
                Admission::Refuse => Admission::Refuse,
            },
            #[cfg(feature = "tls")]
            Entry::Tls(tls) => match tls.accept(stream, peer)? {
                Admission::Admit(link) => Admission::Admit(EntryLink::Tls(Box::new(link))),
                Admission::Refuse => Admission::Refuse,
            },
        })
    }
}

/// Calls `$body` with `$link` bound to whichever link `$self` holds.
macro_rules! each {
    ($self:expr, $link:ident => $body:expr) => {
        match $self {
            EntryLink::Plain($link) => $body,
            #[cfg(feature = "tls")]
            EntryLink::Tls($link) => $body,
        }
    };
}

impl AsBorrowedSocket for EntryLink {
    fn borrowed(&self) -> BorrowedSocket<'_> {
        each!(self, link => link.borrowed())
    }
    fn raw_number(&self) -> u64 {
        each!(self, link => link.raw_number())
    }
}

impl Link for EntryLink {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        each!(self, link => link.recv(buf))
    }
    fn send(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        each!(self, link => link.send(bufs))
    }
    fn flush_own(&mut self) -> io::Result<()> {
        each!(self, link => link.flush_own())
    }
    fn wants_write(&self) -> bool {
        each!(self, link => link.wants_write())
    }
    fn is_established(&self) -> bool {
        each!(self, link => link.is_established())
    }
    fn has_buffered_input(&self) -> bool {
        each!(self, link => link.has_buffered_input())
    }
    fn transport(&self) -> &'static str {
        each!(self, link => link.transport())
    }
}
