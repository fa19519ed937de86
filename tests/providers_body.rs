//! Bodies a mock framework cannot serve: one that drips, one that never ends, one that
//! declares 100 MB. A raw TCP server writes the HTTP by hand.
// Tests may panic: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use ai_failover::config::EngineConfig;
use ai_failover::contract::ErrorClass;
use ai_failover::providers::{Provider, try_build};
use common::providers::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Serves every connection with `serve_one` and returns an OpenAI adapter pointed at it.
async fn raw_server<F, Fut>(serve_one: F, max_response_bytes: usize) -> std::sync::Arc<dyn Provider>
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            // Read (enough of) the request before answering.
            let mut buf = vec![0; 64 * 1024];
            let _ = stream.read(&mut buf).await;
            tokio::spawn(serve_one(stream));
        }
    });
    let engine = EngineConfig {
        max_response_bytes,
        ..EngineConfig::default()
    };
    try_build(
        &config(Vendor::OpenAi, format!("http://{addr}/v1"), Some(KEY)),
        &engine,
    )
    .unwrap()
}

const CHUNKED_HEAD: &[u8] =
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";

#[tokio::test]
async fn a_dripping_body_times_out() {
    let provider = raw_server(
        |mut stream| async move {
            let _ = stream.write_all(CHUNKED_HEAD).await;
            loop {
                if stream.write_all(b"1\r\n \r\n").await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        },
        1 << 20,
    )
    .await;
    let mut c = call();
    c.timeout = Duration::from_millis(400);
    let started = Instant::now();
    let err = provider.complete(&c).await.unwrap_err();
    assert_eq!(err.class, ErrorClass::Timeout, "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn an_endless_body_stops_at_the_cap() {
    let provider = raw_server(
        |mut stream| async move {
            let _ = stream.write_all(CHUNKED_HEAD).await;
            let chunk = format!("{:x}\r\n{}\r\n", 8192, " ".repeat(8192));
            while stream.write_all(chunk.as_bytes()).await.is_ok() {}
        },
        64 * 1024,
    )
    .await;
    let err = provider.complete(&call()).await.unwrap_err();
    assert_eq!(err.class, ErrorClass::InvalidResponse);
    assert_eq!(err.message, "body larger than 65536 bytes");
    assert_eq!(err.http_status, Some(200));
}

#[tokio::test]
async fn a_declared_huge_body_is_refused_before_reading() {
    let provider = raw_server(
        |mut stream| async move {
            let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 104857600\r\n\r\n{";
            let _ = stream.write_all(head.as_bytes()).await;
            // Then nothing: a reader that waited for the body would time out instead.
            tokio::time::sleep(Duration::from_secs(10)).await;
        },
        1 << 20,
    )
    .await;
    let err = provider.complete(&call()).await.unwrap_err();
    assert_eq!(err.class, ErrorClass::InvalidResponse);
    assert_eq!(err.message, "body larger than 1048576 bytes");
}

#[tokio::test]
async fn a_connection_closed_before_the_answer_is_a_network_error() {
    let provider = raw_server(|stream| async move { drop(stream) }, 1 << 20).await;
    let err = provider.complete(&call()).await.unwrap_err();
    assert_eq!(err.class, ErrorClass::Network, "{err:?}");
}

#[tokio::test]
async fn a_connection_cut_mid_body_is_an_invalid_response() {
    let provider = raw_server(
        |mut stream| async move {
            let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 500\r\n\r\n{\"choices\":";
            let _ = stream.write_all(head.as_bytes()).await;
        },
        1 << 20,
    )
    .await;
    let err = provider.complete(&call()).await.unwrap_err();
    assert_eq!(err.class, ErrorClass::InvalidResponse, "{err:?}");
}
