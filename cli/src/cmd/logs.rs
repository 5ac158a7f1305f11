//! `logs`: a container's log, or the logs of every pod a selector matches,
//! streamed from the node agents through the apiserver. Several streams are
//! merged line by line, each line prefixed with its pod and container.

use std::io::Write;

use futures::stream::{self, BoxStream};
use futures::{StreamExt, TryFutureExt};
use moor_api::core::v1::{PodLogChunk, PodLogsRequest};
use tonic::Status;

use crate::args::LogsArgs;
use crate::cmd::{Ctx, pods};
use crate::error::{Error, Result};
use crate::lines::{Lines, Output, Stream};
use crate::rpc::Client;

/// Default `--tail` with a selector, as kubectl's.
const SELECTOR_TAIL: i64 = 10;

/// One log to read: a pod's container ("" lets the server pick the only one).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Source {
    pod: String,
    container: String,
}

/// Items of the merged streams: a chunk of source N, or its end (None).
type Item = (usize, Option<Result<PodLogChunk, Status>>);

/// Runs `logs`.
pub async fn run(ctx: &Ctx, args: LogsArgs) -> Result<()> {
    let template = request(&args)?;
    let client = ctx.client()?;
    let namespace = ctx.namespace();
    let prefixed = args.prefix || args.selector.is_some();
    let sources = sources(&client, &namespace, &args, prefixed).await?;
    if sources.is_empty() {
        eprintln!("No resources found in {namespace} namespace.");
        return Ok(());
    }
    let prefixes = sources
        .iter()
        .map(|s| if prefixed { s.prefix() } else { String::new() })
        .collect();
    let mut lines = Lines::new(prefixes);
    let request = |source: &Source| PodLogsRequest {
        namespace: namespace.clone(),
        name: source.pod.clone(),
        container: source.container.clone(),
        ..template.clone()
    };
    if !args.follow {
        // One after the other, each log whole, as kubectl prints them.
        for (i, source) in sources.iter().enumerate() {
            let log = open(&client, i, request(source)).await?;
            pump(&client, vec![log], &mut lines).await?;
        }
        return Ok(());
    }
    check_concurrency(sources.len(), args.max_log_requests)?;
    let opening = sources
        .iter()
        .enumerate()
        .map(|(i, source)| open(&client, i, request(source)));
    let logs = futures::future::try_join_all(opening).await?;
    pump(&client, logs, &mut lines).await
}

/// The request's options, the same for every source.
fn request(args: &LogsArgs) -> Result<PodLogsRequest> {
    let tail_lines = match args.tail {
        Some(n) if n < -1 => {
            return Err(Error::Usage(
                "--tail must be greater than or equal to -1".to_string(),
            ));
        }
        Some(-1) => None,
        Some(n) => Some(n),
        None if args.selector.is_some() => Some(SELECTOR_TAIL),
        None => None,
    };
    Ok(PodLogsRequest {
        follow: args.follow,
        tail_lines,
        timestamps: args.timestamps,
        previous: args.previous,
        since_seconds: args.since,
        ..Default::default()
    })
}

/// kubectl's limit on streams followed at once.
fn check_concurrency(streams: usize, max: usize) -> Result<()> {
    if streams > max {
        return Err(Error::Usage(format!(
            "you are attempting to follow {streams} log streams, but maximum allowed \
             concurrency is {max}, use --max-log-requests to increase the limit"
        )));
    }
    Ok(())
}

/// The logs the arguments name, in order.
async fn sources(
    client: &Client,
    namespace: &str,
    args: &LogsArgs,
    prefixed: bool,
) -> Result<Vec<Source>> {
    let container = args.container.clone().or(args.container_arg.clone());
    let pods = match (&args.selector, &args.target) {
        (Some(selector), _) => pods::list(client, namespace, selector).await?,
        (None, Some(target)) => {
            let name = pods::pod_of(client, namespace, target).await?;
            let simple = container.is_some() || (!prefixed && !args.all_containers);
            if simple {
                // The server names the containers if one is needed.
                let container = container.unwrap_or_default();
                return Ok(vec![Source {
                    pod: name,
                    container,
                }]);
            }
            vec![pods::get(client, namespace, &name).await?]
        }
        (None, None) => {
            return Err(Error::Usage(
                "expected POD or TYPE/NAME, or -l SELECTOR".to_string(),
            ));
        }
    };
    let mut sources = Vec::new();
    for pod in &pods {
        let name = pods::name_of(pod);
        let containers = match &container {
            Some(c) => vec![c.clone()],
            None => {
                let all = pods::containers(pod, args.all_containers);
                if all.len() > 1 && args.selector.is_none() && !args.all_containers {
                    // --prefix on a pod with several: the server's error lists them.
                    vec![String::new()]
                } else {
                    all
                }
            }
        };
        sources.extend(containers.into_iter().map(|container| Source {
            pod: name.clone(),
            container,
        }));
    }
    Ok(sources)
}

/// Opens the log of source `i`; the stream ends with an end marker.
async fn open(
    client: &Client,
    i: usize,
    request: PodLogsRequest,
) -> Result<BoxStream<'static, Item>> {
    let log = client
        .pods()
        .logs(request)
        .map_err(|s| client.status(s))
        .await?
        .into_inner();
    let chunks = log.map(move |chunk| (i, Some(chunk)));
    Ok(chunks.chain(stream::once(async move { (i, None) })).boxed())
}

/// Copies the streams to stdout and stderr, line by line, until they all
/// end; the first error ends every stream.
async fn pump(
    client: &Client,
    logs: Vec<BoxStream<'static, Item>>,
    lines: &mut Lines,
) -> Result<()> {
    let mut merged = stream::select_all(logs);
    while let Some((i, item)) = merged.next().await {
        match item {
            Some(Ok(chunk)) => {
                if let Some(out) = lines.push(i, Stream::of(&chunk.stream), &chunk.data) {
                    write(out)?;
                }
            }
            Some(Err(status)) => {
                lines.finish(i).into_iter().try_for_each(write)?;
                return Err(client.status(status));
            }
            None => lines.finish(i).into_iter().try_for_each(write)?,
        }
    }
    Ok(())
}

/// Writes bytes to their stream, at once (a follower reads them live).
fn write((stream, bytes): Output) -> Result<()> {
    match stream {
        Stream::Stdout => {
            let mut out = std::io::stdout().lock();
            out.write_all(&bytes)?;
            out.flush()?;
        }
        Stream::Stderr => {
            let mut err = std::io::stderr().lock();
            err.write_all(&bytes)?;
            err.flush()?;
        }
    }
    Ok(())
}

// === impl Source ===

impl Source {
    /// kubectl's `--prefix`: `[pod/NAME/CONTAINER] `.
    fn prefix(&self) -> String {
        format!("[pod/{}/{}] ", self.pod, self.container)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::args::{Cli, Command};

    fn logs(args: &[&str]) -> LogsArgs {
        let cli = Cli::try_parse_from([&["moorctl", "logs"], args].concat()).expect("parses");
        match cli.command {
            Command::Logs(args) => args,
            other => panic!("not logs: {other:?}"),
        }
    }

    #[test]
    fn requests_carry_the_flags() {
        let r = request(&logs(&["web", "-f", "--tail", "3", "--timestamps", "-p"])).unwrap();
        assert!(r.follow && r.timestamps && r.previous);
        assert_eq!(r.tail_lines, Some(3));
        assert_eq!(r.since_seconds, None);
        let r = request(&logs(&["web", "--since", "2m", "--tail=-1"])).unwrap();
        assert_eq!((r.tail_lines, r.since_seconds), (None, Some(120)));
        assert!(!r.follow);
    }

    #[test]
    fn a_selector_tails_ten_lines_unless_told() {
        assert_eq!(
            request(&logs(&["-l", "app=web"])).unwrap().tail_lines,
            Some(10)
        );
        let all = request(&logs(&["-l", "app=web", "--tail", "-1"])).unwrap();
        assert_eq!(all.tail_lines, None);
        assert_eq!(request(&logs(&["web"])).unwrap().tail_lines, None);
        assert!(request(&logs(&["web", "--tail", "-2"])).is_err());
    }

    #[test]
    fn follow_concurrency_is_bounded() {
        assert!(check_concurrency(5, 5).is_ok());
        let err = check_concurrency(6, 5).unwrap_err().to_string();
        assert!(err.contains("follow 6 log streams"), "{err}");
        assert!(err.contains("--max-log-requests"), "{err}");
    }

    #[test]
    fn prefixes_read_like_kubectl() {
        let source = Source {
            pod: "web-1".into(),
            container: "app".into(),
        };
        assert_eq!(source.prefix(), "[pod/web-1/app] ");
    }
}
