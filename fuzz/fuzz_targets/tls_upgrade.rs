//! The TLS upgrade of a login: the SSLRequest, then whatever a client sends as its TLS
//! handshake and first records, part of it read together with the SSLRequest (corelay's
//! server side, with the test certificate).
#![no_main]
use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use corelay::net::tls::{server_config_pem, TlsLayer, TlsStart};
use corelay::protocol::handshake::SslRequest;
use futures_lite::{AsyncRead, AsyncWrite};
use libfuzzer_sys::fuzz_target;

/// Reads from the fuzzer's bytes (then the end of the stream); writes go nowhere.
struct Peer<'a>(&'a [u8]);

impl AsyncRead for Peer<'_> {
    fn poll_read(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let n = buf.len().min(self.0.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Poll::Ready(Ok(n))
    }
}

impl AsyncWrite for Peer<'_> {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fn config() -> Arc<corelay::net::tls::ServerConfig> {
    static CONFIG: OnceLock<Arc<corelay::net::tls::ServerConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            server_config_pem(
                include_bytes!("../../tests/data/tls-cert.pem"),
                include_bytes!("../../tests/data/tls-key.pem"),
                "1.2",
            )
            .expect("the test certificate loads")
        })
        .clone()
}

fuzz_target!(|data: &[u8]| {
    let (head, rest) = data.split_at(data.len().min(32));
    let _ = SslRequest::parse(head);
    // The first byte says how much arrived with the SSLRequest.
    let Some((&split, rest)) = rest.split_first() else { return };
    let (early, later) = rest.split_at(usize::from(split).min(rest.len()));
    let Ok(mut layer) = TlsLayer::new(TlsStart::Server(config()), early) else { return };
    let mut peer = Peer(later);
    futures_lite::future::block_on(async {
        if layer.handshake(&mut peer).await.is_ok() {
            let mut buf = [0u8; 512];
            while let Ok(n) = layer.read(&mut peer, &mut buf).await {
                if n == 0 {
                    break;
                }
            }
            let _ = layer.write_all(&mut peer, b"\x07\x00\x00\x02\x00\x00\x00\x02\x00\x00\x00").await;
        }
    });
});
