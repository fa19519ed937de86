//! Connection-level faults. A real outage often shows up below HTTP: a closed port
//! (ECONNREFUSED) or a connection dropped without an answer. axum hides connections, so the
//! listener hands out streams a handler can kill, and a dedicated listener can close its
//! socket and reopen it on the same port.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::state::ProviderState;

/// A TCP stream that fails every read and write once killed, so hyper drops the connection
/// without writing the response it was handed.
#[derive(Debug)]
pub(crate) struct KillableStream {
    inner: TcpStream,
    killed: Arc<AtomicBool>,
}

fn aborted() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "simulated connection drop",
    )
}

impl AsyncRead for KillableStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.killed.load(Ordering::Acquire) {
            return Poll::Ready(Err(aborted()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillableStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.killed.load(Ordering::Acquire) {
            return Poll::Ready(Err(aborted()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Per-connection handle given to handlers (as `ConnectInfo`): kills its connection.
#[derive(Debug, Clone)]
pub(crate) struct Conn {
    killed: Arc<AtomicBool>,
}

impl Conn {
    /// Drops the connection instead of answering.
    pub(crate) fn kill(&self) {
        self.killed.store(true, Ordering::Release);
    }
}

impl Connected<IncomingStream<'_, SimListener>> for Conn {
    fn connect_info(stream: IncomingStream<'_, SimListener>) -> Self {
        Conn {
            killed: stream.io().killed.clone(),
        }
    }
}

/// Closes the dedicated port while its provider refuses connections.
#[derive(Debug)]
pub(crate) struct Gate {
    pub provider: Arc<ProviderState>,
    pub changed: watch::Receiver<u64>,
}

/// A listener handing out [`KillableStream`]s; with a [`Gate`], it unbinds while the
/// provider refuses connections and rebinds the same port afterwards.
#[derive(Debug)]
pub(crate) struct SimListener {
    addr: SocketAddr,
    inner: Option<TcpListener>,
    gate: Option<Gate>,
}

impl SimListener {
    /// Binds now, so the real port is known before serving.
    pub(crate) async fn bind(addr: SocketAddr, gate: Option<Gate>) -> io::Result<Self> {
        let inner = TcpListener::bind(addr).await?;
        Ok(SimListener {
            addr: inner.local_addr()?,
            inner: Some(inner),
            gate,
        })
    }
}

/// Waits for a fault change; never returns once the sender is gone (shutdown follows).
async fn changed(rx: &mut watch::Receiver<u64>) {
    if rx.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

impl Listener for SimListener {
    type Io = KillableStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            if let Some(gate) = &mut self.gate
                && gate.provider.refusing()
            {
                // Dropping the socket is what makes connects fail with ECONNREFUSED.
                self.inner = None;
                changed(&mut gate.changed).await;
                continue;
            }
            let listener = match &self.inner {
                Some(l) => l,
                None => match TcpListener::bind(self.addr).await {
                    Ok(l) => self.inner.insert(l),
                    Err(e) => {
                        tracing::warn!(addr = %self.addr, error = %e, "simulator: rebind failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let accepted = match &mut self.gate {
                Some(gate) => tokio::select! {
                    r = listener.accept() => Some(r),
                    () = changed(&mut gate.changed) => None,
                },
                None => Some(listener.accept().await),
            };
            match accepted {
                None => continue,
                Some(Ok((inner, peer))) => {
                    let _ = inner.set_nodelay(true);
                    let stream = KillableStream {
                        inner,
                        killed: Arc::new(AtomicBool::new(false)),
                    };
                    return (stream, peer);
                }
                // Usually too many open files: back off instead of spinning.
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "simulator: accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.addr)
    }
}

impl SimListener {
    /// The bound address (the real port when bound to port 0).
    pub(crate) fn local_addr_now(&self) -> SocketAddr {
        self.addr
    }

    /// Adds the gate that closes this listener while its provider refuses connections.
    pub(crate) fn with_gate(mut self, gate: Gate) -> Self {
        self.gate = Some(gate);
        self
    }
}
