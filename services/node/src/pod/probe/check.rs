//! One probe attempt: a command in the container, an HTTP GET or a TCP
//! connect to the pod, each bounded by the probe's timeout. HTTP is a small
//! HTTP/1.1 client on a TcpStream: a probe needs only the status line.

use std::time::Duration;

use moor_api::core::v1::{Container, HttpGetAction, Probe};
use moor_api::meta::v1::IntOrString;
use moor_api::meta::v1::int_or_string::Value;
use moor_runtime::ContainerRuntime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How much of a response is read looking for the status line.
const MAX_STATUS_LINE: usize = 4096;

/// Where and how a probe runs.
pub struct Target<'a> {
    /// The runtime, for exec probes.
    pub runtime: &'a dyn ContainerRuntime,
    /// The container's id.
    pub id: &'a str,
    /// The container's spec, for named ports.
    pub container: &'a Container,
    /// The pod's IP: the default host of HTTP and TCP probes.
    pub pod_ip: &'a str,
}

/// Runs `probe` once: `Err` says why it failed, as Kubernetes words it.
pub async fn run(target: &Target<'_>, probe: &Probe, timeout: Duration) -> Result<(), String> {
    if let Some(exec) = &probe.exec {
        return exec_probe(target, &exec.command, timeout).await;
    }
    if let Some(http) = &probe.http_get {
        return http_probe(target, http, timeout).await;
    }
    if let Some(tcp) = &probe.tcp_socket {
        let port = port(target.container, tcp.port.as_ref())?;
        let host = host(&tcp.host, target.pod_ip);
        return match tokio::time::timeout(timeout, TcpStream::connect((host, port))).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(err)) => Err(format!("dial tcp {host}:{port}: {err}")),
            Err(_) => Err(format!("dial tcp {host}:{port}: i/o timeout")),
        };
    }
    Err("the probe has no handler (exec, httpGet or tcpSocket)".into())
}

async fn exec_probe(
    target: &Target<'_>,
    command: &[String],
    timeout: Duration,
) -> Result<(), String> {
    if command.is_empty() {
        return Err("the exec probe has no command".into());
    }
    match target.runtime.exec(target.id, command, timeout).await {
        Ok(out) if out.exit_code == 0 => Ok(()),
        Ok(out) => Err(format!(
            "command {command:?} exited with {}: {}",
            out.exit_code,
            out.output.trim()
        )),
        Err(err) => Err(err.to_string()),
    }
}

async fn http_probe(
    target: &Target<'_>,
    http: &HttpGetAction,
    timeout: Duration,
) -> Result<(), String> {
    if !matches!(http.scheme.as_str(), "" | "HTTP" | "http") {
        return Err(format!(
            "scheme {:?} is not supported (HTTP only)",
            http.scheme
        ));
    }
    let port = port(target.container, http.port.as_ref())?;
    let host = host(&http.host, target.pod_ip);
    let path = if http.path.starts_with('/') {
        http.path.clone()
    } else {
        format!("/{}", http.path)
    };
    let url = format!("http://{host}:{port}{path}");
    let headers: Vec<(&str, &str)> = http
        .http_headers
        .iter()
        .map(|h| (h.name.as_str(), h.value.as_str()))
        .collect();
    match tokio::time::timeout(timeout, get_status(host, port, &path, &headers)).await {
        Ok(Ok(code)) if (200..400).contains(&code) => Ok(()),
        Ok(Ok(code)) => Err(format!("HTTP probe failed with statuscode: {code}")),
        Ok(Err(err)) => Err(format!("Get {url:?}: {err}")),
        Err(_) => Err(format!(
            "Get {url:?}: context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
        )),
    }
}

/// Sends `GET path` and returns the response's status code.
pub async fn get_status(
    host: &str,
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<u16> {
    let mut stream = TcpStream::connect((host, port)).await?;
    let mut request = format!("GET {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        request.push_str(&format!("Host: {host}:{port}\r\n"));
    }
    if !headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("user-agent"))
    {
        request.push_str("User-Agent: moor-probe/0.1\r\n");
    }
    for (name, value) in headers {
        // Header lines come from the pod spec: no line breaks in them.
        if !name.contains(['\r', '\n']) && !value.contains(['\r', '\n']) {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    request.push_str("Accept: */*\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.contains(&b'\n') && head.len() < MAX_STATUS_LINE {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(buf.get(..n).unwrap_or_default());
    }
    parse_status(&head).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "malformed HTTP response (no status line)",
        )
    })
}

/// The code in `HTTP/1.x NNN reason`.
fn parse_status(head: &[u8]) -> Option<u16> {
    let line = head.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_whitespace();
    let version = parts.next()?;
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    let code = parts.next()?;
    (code.len() == 3).then(|| code.parse().ok()).flatten()
}

/// A probe's port: a number, or the name of one of the container's ports.
fn port(container: &Container, port: Option<&IntOrString>) -> Result<u16, String> {
    match port.and_then(|p| p.value.as_ref()) {
        Some(Value::IntVal(n)) => u16::try_from(*n).map_err(|_| format!("invalid port number {n}")),
        Some(Value::StrVal(name)) => {
            if let Ok(n) = name.parse::<u16>() {
                return Ok(n);
            }
            container
                .ports
                .iter()
                .find(|p| p.name == *name)
                .and_then(|p| u16::try_from(p.container_port).ok())
                .ok_or_else(|| format!("the container has no port named {name:?}"))
        }
        None => Err("the probe has no port".into()),
    }
}

fn host<'a>(host: &'a str, pod_ip: &'a str) -> &'a str {
    if host.is_empty() { pod_ip } else { host }
}

#[cfg(test)]
mod tests {
    use moor_api::core::v1::{ContainerPort, ExecAction, TcpSocketAction};
    use moor_runtime::{ExecOutput, Fake};
    use tokio::net::TcpListener;

    use super::*;

    fn int(n: i32) -> Option<IntOrString> {
        Some(IntOrString {
            value: Some(Value::IntVal(n)),
        })
    }

    fn named(name: &str) -> Option<IntOrString> {
        Some(IntOrString {
            value: Some(Value::StrVal(name.into())),
        })
    }

    /// Answers one connection with `response` after reading the request.
    async fn serve_once(response: &'static str) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf).await;
            let _ = stream.write_all(response.as_bytes()).await;
        });
        port
    }

    fn container() -> Container {
        Container {
            name: "web".into(),
            ports: vec![ContainerPort {
                name: "http".into(),
                container_port: 8080,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn ports_by_number_and_name() {
        let c = container();
        assert_eq!(port(&c, int(80).as_ref()), Ok(80));
        assert_eq!(port(&c, named("http").as_ref()), Ok(8080));
        assert!(port(&c, named("metrics").as_ref()).is_err());
        assert!(port(&c, int(70_000).as_ref()).is_err());
        assert!(port(&c, None).is_err());
    }

    #[test]
    fn parses_status_lines() {
        assert_eq!(parse_status(b"HTTP/1.1 204 No Content\r\n"), Some(204));
        assert_eq!(parse_status(b"HTTP/1.0 500\r\n"), Some(500));
        assert_eq!(parse_status(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(parse_status(b""), None);
    }

    #[tokio::test]
    async fn http_success_is_200_to_399() {
        let fake = Fake::new(1, 1 << 20);
        let c = container();
        let target = Target {
            runtime: &fake,
            id: "x",
            container: &c,
            pod_ip: "127.0.0.1",
        };
        let probe = |port: u16| Probe {
            http_get: Some(HttpGetAction {
                path: "healthz".into(),
                port: int(i32::from(port)),
                ..Default::default()
            }),
            ..Default::default()
        };
        let second = Duration::from_secs(5);
        let ok = serve_once("HTTP/1.1 302 Found\r\nLocation: /\r\n\r\n").await;
        assert_eq!(run(&target, &probe(ok), second).await, Ok(()));
        let bad = serve_once("HTTP/1.1 503 Service Unavailable\r\n\r\n").await;
        let err = run(&target, &probe(bad), second).await.unwrap_err();
        assert!(err.contains("statuscode: 503"), "{err}");
        // Nothing listens on a port just released.
        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        assert!(run(&target, &probe(port), second).await.is_err());
        let tcp = Probe {
            tcp_socket: Some(TcpSocketAction {
                port: int(i32::from(port)),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(run(&target, &tcp, second).await.is_err());
        let open = serve_once("").await;
        let tcp = Probe {
            tcp_socket: Some(TcpSocketAction {
                port: int(i32::from(open)),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(run(&target, &tcp, second).await, Ok(()));
    }

    #[tokio::test]
    async fn exec_success_is_exit_zero() {
        let fake = Fake::new(1, 1 << 20);
        let c = container();
        let probe = Probe {
            exec: Some(ExecAction {
                command: vec!["check".into()],
            }),
            ..Default::default()
        };
        let target = Target {
            runtime: &fake,
            id: "missing",
            container: &c,
            pod_ip: "127.0.0.1",
        };
        let second = Duration::from_secs(1);
        assert!(
            run(&target, &probe, second).await.is_err(),
            "no container, no success"
        );
        fake.set_exec(|_, _| {
            Ok(ExecOutput {
                exit_code: 1,
                output: "not yet\n".into(),
            })
        });
        let spec = moor_runtime::ContainerSpec {
            name: "c".into(),
            image: "img".into(),
            command: vec![],
            args: vec![],
            working_dir: String::new(),
            env: vec![],
            labels: Default::default(),
            mounts: vec![],
            network: moor_runtime::NetworkMode::Network("moor".into()),
            ipc_container: None,
            hostname: None,
            ports: vec![],
            nano_cpus: None,
            memory_bytes: None,
        };
        let id = fake.create_container(&spec).await.unwrap();
        fake.start_container(&id).await.unwrap();
        let target = Target { id: &id, ..target };
        let err = run(&target, &probe, second).await.unwrap_err();
        assert!(err.contains("exited with 1: not yet"), "{err}");
    }
}
