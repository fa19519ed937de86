//! The addresses clients are given: as the vendor SDKs take them.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::Api;

/// Reachable form of a bound address: a wildcard bind is reached over loopback.
pub(crate) fn reachable(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
    } else {
        addr
    }
}

/// The base URL a client of `api` is configured with, as the vendor SDKs take it:
/// OpenAI-compatible with `/v1`, Anthropic and Gemini the bare host.
pub(crate) fn base_url(api: Api, addr: SocketAddr, prefix: Option<&str>) -> String {
    let root = match prefix {
        Some(p) => format!("http://{}/{p}", reachable(addr)),
        None => format!("http://{}", reachable(addr)),
    };
    match api {
        Api::Openai => format!("{root}/v1"),
        Api::Anthropic | Api::Gemini => root,
    }
}

/// The base URL of a provider's dedicated port.
pub(crate) fn dedicated_base_url(api: Api, addr: SocketAddr) -> String {
    base_url(api, addr, None)
}
