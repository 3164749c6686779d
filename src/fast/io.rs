//! Socket reads that know when a socket is drained.
//!
//! tokio remembers a socket as readable until a read returns `WouldBlock`,
//! so after every complete read the next one was a wasted `recv` (and
//! the pool's liveness probe one more): three `recv`s per proxied request
//! where nginx makes two. A read that returned fewer bytes than there was
//! room for emptied the kernel's receive queue (TCP copies until the
//! queue is empty or the room is full), so the socket is marked not
//! readable at once, as nginx does (`ngx_unix_recv`). Bytes that arrive
//! later raise a new edge-triggered event, which marks it readable again;
//! the runtime's readiness ticks keep an event that came in meanwhile.

use std::io;

use bytes::BytesMut;
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Reads what is there into `buf`'s spare capacity (at least `reserve`
/// bytes of it), without waiting. `Ok(0)`: the peer closed; `WouldBlock`:
/// nothing there.
pub fn try_read_buf(stream: &TcpStream, buf: &mut BytesMut, reserve: usize) -> io::Result<usize> {
    // Room for at least one byte: a read of 0 means the peer closed.
    buf.reserve(reserve.max(1));
    let room = buf.capacity() - buf.len();
    let mut n = 0;
    let read = stream.try_io(Interest::READABLE, || {
        n = stream.try_read_buf(buf)?;
        if n > 0 && n < room {
            // Drained: `try_io` clears the readiness on `WouldBlock`.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(())
    });
    match read {
        Ok(()) => Ok(n),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock && n > 0 => Ok(n),
        Err(e) => Err(e),
    }
}

/// Reads at least one byte into `buf` (or `Ok(0)` when the peer closed),
/// waiting for them as `AsyncReadExt::read_buf` does.
pub async fn read_buf(stream: &TcpStream, buf: &mut BytesMut, reserve: usize) -> io::Result<usize> {
    loop {
        match try_read_buf(stream, buf, reserve) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => stream.readable().await?,
            done => return done,
        }
    }
}

/// Whether bytes are waiting to be read, asked of the socket itself (not
/// of the runtime's readiness, which may not have seen their event yet).
/// For the moment a kept-alive connection is about to be closed: a request
/// already there is answered rather than cut off.
pub fn has_bytes(stream: &TcpStream) -> bool {
    let mut probe = [std::mem::MaybeUninit::<u8>::uninit(); 1];
    matches!(socket2::SockRef::from(stream).peek(&mut probe), Ok(n) if n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;
    use tokio::io::AsyncWriteExt;

    /// A short read marks the socket drained, and bytes that come later
    /// wake the reader again; a full read leaves it readable, and the
    /// rest is read without waiting.
    #[tokio::test]
    async fn drained_after_a_short_read_and_woken_by_more() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut writer = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (reader, _) = listener.accept().await.unwrap();

        assert!(!has_bytes(&reader));
        writer.write_all(b"hello").await.unwrap();
        let mut buf = BytesMut::new();
        assert_eq!(read_buf(&reader, &mut buf, 4096).await.unwrap(), 5);
        // Drained: the socket no longer counts as readable, without the
        // read that returns `WouldBlock` (tokio alone would say "ready").
        assert!(reader.readable().now_or_never().is_none());
        let err = try_read_buf(&reader, &mut buf, 4096).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);

        assert!(!has_bytes(&reader));
        // More bytes: the edge wakes the reader.
        let more = tokio::spawn(async move {
            writer.write_all(b"0123456789").await.unwrap();
            writer
        });
        reader.readable().await.unwrap();
        assert!(has_bytes(&reader));
        // Room for 4 of 10: a full read, the socket stays readable...
        let mut small = BytesMut::with_capacity(4);
        assert_eq!(try_read_buf(&reader, &mut small, 0).unwrap(), 4);
        assert_eq!(&small[..], b"0123");
        assert!(reader.readable().now_or_never().is_some());
        // ...and the rest comes without a wait.
        buf.clear();
        assert_eq!(try_read_buf(&reader, &mut buf, 4096).unwrap(), 6);
        assert_eq!(&buf[..], b"456789");

        // The peer closes: the reader sees the end.
        drop(more.await.unwrap());
        buf.clear();
        assert_eq!(read_buf(&reader, &mut buf, 4096).await.unwrap(), 0);
    }
}
