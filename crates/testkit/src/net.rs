//! Free loopback ports, and a one-shot HTTP GET for services under test.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A loopback TCP port that was free a moment ago: bound on `127.0.0.1:0`,
/// then released. Another process may take it before the caller does, so a
/// caller that binds it later must be ready to retry with a new one.
///
/// # Panics
///
/// If the loopback interface cannot be bound at all: no test could run.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .unwrap_or_else(|e| panic!("cannot bind a loopback port: {e}"))
}

/// `GET /` over a fresh HTTP/1.0 connection to `addr`: the body of a 200
/// answer (trimmed), an error otherwise or after 10 seconds.
pub async fn http_get(addr: SocketAddr) -> std::io::Result<String> {
    let request = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream
            .write_all(b"GET / HTTP/1.0\r\nHost: test\r\n\r\n")
            .await?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await?;
        match response.split_once("\r\n\r\n") {
            Some((head, body)) if head.starts_with("HTTP/1.") && head.contains(" 200 ") => {
                Ok(body.trim().to_string())
            }
            _ => Err(std::io::Error::other(format!(
                "{addr}: not a 200 answer: {response:?}"
            ))),
        }
    };
    tokio::time::timeout(Duration::from_secs(10), request)
        .await
        .map_err(|_| std::io::Error::other(format!("{addr}: no answer within 10 s")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_is_nonzero_and_bindable() {
        let port = free_port();
        assert_ne!(port, 0);
        TcpListener::bind((Ipv4Addr::LOCALHOST, port)).expect("port is free");
    }

    #[tokio::test]
    async fn http_get_returns_the_body_of_a_200_and_fails_otherwise() {
        async fn serve(answer: &'static str) -> SocketAddr {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let addr = listener.local_addr().expect("addr");
            tokio::spawn(async move {
                if let Ok((mut stream, _)) = listener.accept().await {
                    let mut buf = [0u8; 1024];
                    let _ = stream.read(&mut buf).await;
                    let _ = stream.write_all(answer.as_bytes()).await;
                }
            });
            addr
        }
        let ok = serve("HTTP/1.0 200 OK\r\n\r\nhello\n").await;
        assert_eq!(http_get(ok).await.expect("200"), "hello");
        let missing = serve("HTTP/1.0 404 Not Found\r\n\r\nno").await;
        assert!(http_get(missing).await.is_err());
    }
}
