//! DNS over TCP (RFC 7766): length-prefixed messages, each handed to the full path, replies
//! written back in order.
//!
//! Our own loop rather than hickory-server's, so TCP keeps the full path's rules: no reply to
//! a message with QR set even when it does not parse, nor to a source that
//! [`super::source::answerable`] refuses, and the same encoder. One task per connection;
//! queries on a connection are answered one after another (the handler never waits, so
//! pipelined queries are answered as fast as they are read). A connection that does not
//! deliver a whole message within the idle timeout, from the end of the last one, is closed,
//! so a client stalled (or trickling bytes) in a message cannot hold it open.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::full::{self, Transport};
use super::{Handler, source};

/// Accept connections on `listener` until `stop` is cancelled; then every connection ends.
pub async fn serve(
    listener: TcpListener,
    handler: Arc<Handler>,
    idle_timeout: Duration,
    stop: CancellationToken,
) {
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => break,
        };
        // Finished connections, without waiting.
        while connections.try_join_next().is_some() {}
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: pause rather than spin.
                debug!(%error, "TCP accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if !source::answerable(peer) {
            continue;
        }
        let handler = handler.clone();
        connections.spawn(async move {
            if let Err(error) = connection(stream, peer, &handler, idle_timeout).await {
                debug!(%error, %peer, "TCP connection ended");
            }
        });
    }
    // Dropping the set aborts the connections still open.
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    handler: &Handler,
    idle_timeout: Duration,
) -> std::io::Result<()> {
    let (mut reader, mut writer) = stream.into_split();
    let mut message = Vec::with_capacity(512);
    let mut framed = Vec::with_capacity(514);
    loop {
        let read = tokio::time::timeout(idle_timeout, async {
            let mut len = [0u8; 2];
            reader.read_exact(&mut len).await?;
            message.resize(usize::from(u16::from_be_bytes(len)), 0);
            reader.read_exact(&mut message).await?;
            Ok::<_, std::io::Error>(())
        })
        .await;
        match read {
            Ok(Ok(())) => {}
            // EOF between messages is the normal end; anything else ends it too.
            Ok(Err(error)) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(Err(error)) => return Err(error),
            Err(_) => return Ok(()),
        }
        let Some(reply) = full::reply(handler, &message, peer, Transport::Tcp) else {
            continue;
        };
        // The encoder keeps a TCP reply within 65,535 bytes.
        let Ok(len) = u16::try_from(reply.len()) else {
            continue;
        };
        framed.clear();
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(&reply);
        // A client that does not read its replies is dropped like one that does not write.
        match tokio::time::timeout(idle_timeout, writer.write_all(&framed)).await {
            Ok(written) => written?,
            Err(_) => return Ok(()),
        }
    }
}
