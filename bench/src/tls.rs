//! `moor-bench tls`: what TLS with client certificates costs. The same
//! apiserver (embedded store) is measured with `--insecure` (plain text)
//! and with TLS (the default), alternating A/B in each round: creates per
//! second and their latency, then watch fan-out delivery latency.

use serde_json::{Value, json};

use crate::api::{Figure, api_creates};
use crate::server::{Apiserver, Transport};
use crate::watch::{self, FanOut, fan_out};

/// Flags of `moor-bench tls`.
#[derive(clap::Args)]
pub struct Args {
    /// Rounds, each measuring plain text then TLS.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Creates per measurement.
    #[arg(long, default_value_t = 2000)]
    creates: usize,
    /// Concurrent clients of the creates.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Watchers of the fan-out.
    #[arg(long, default_value_t = 500)]
    watchers: usize,
    /// Changes per second written in the fan-out.
    #[arg(long, default_value_t = 100)]
    rate: u64,
    /// Seconds of writing in the fan-out.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
}

/// One round's figures of one transport.
struct Round {
    creates: Figure,
    delivery_p50: f64,
    delivery_p99: f64,
    short: usize,
}

async fn round(transport: Transport, args: &Args, n: usize) -> anyhow::Result<Round> {
    let server = Apiserver::start_with(None, transport, &[]).await?;
    let creates = api_creates(&server, &format!("r{n}"), args.creates, args.concurrency).await?;
    drop(server);
    let server = Apiserver::start_with(None, transport, &[]).await?;
    let FanOut {
        mut samples, short, ..
    } = fan_out(
        &server,
        &watch::Args {
            watchers: args.watchers,
            rate: args.rate,
            seconds: args.seconds,
            connections: 20,
        },
    )
    .await?;
    Ok(Round {
        creates,
        delivery_p50: samples.quantile_ms(0.5),
        delivery_p99: samples.quantile_ms(0.99),
        short,
    })
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Runs the benchmark and returns its summary.
pub async fn run(args: Args) -> anyhow::Result<Value> {
    println!(
        "moor-bench tls: {} rounds; {} creates at c={}; {} watchers, {} changes/s for {} s",
        args.rounds, args.creates, args.concurrency, args.watchers, args.rate, args.seconds
    );
    let mut plain = Vec::new();
    let mut tls = Vec::new();
    for n in 0..args.rounds {
        for (transport, into) in [(Transport::Plain, &mut plain), (Transport::Tls, &mut tls)] {
            let r = round(transport, &args, n).await?;
            println!(
                "round {n} {:<6} {:>7.0} creates/s  p50 {:>6.2} ms  p99 {:>6.2} ms   watch delivery p50 {:>6.2} ms  p99 {:>6.2} ms{}",
                if transport == Transport::Tls {
                    "tls"
                } else {
                    "plain"
                },
                r.creates.rate,
                r.creates.p50,
                r.creates.p99,
                r.delivery_p50,
                r.delivery_p99,
                if r.short > 0 {
                    format!("  ({} watchers short)", r.short)
                } else {
                    String::new()
                }
            );
            into.push(r);
        }
    }
    let summarize = |rounds: &[Round]| {
        json!({
            "creates_per_second": median(rounds.iter().map(|r| r.creates.rate).collect()).round(),
            "create_p99_ms": (median(rounds.iter().map(|r| r.creates.p99).collect()) * 100.0).round() / 100.0,
            "delivery_p50_ms": (median(rounds.iter().map(|r| r.delivery_p50).collect()) * 100.0).round() / 100.0,
            "delivery_p99_ms": (median(rounds.iter().map(|r| r.delivery_p99).collect()) * 100.0).round() / 100.0,
            "watchers_short": rounds.iter().map(|r| r.short).sum::<usize>(),
        })
    };
    // Paired: each round's TLS figure against the plain one measured just
    // before it, so drift of the machine between rounds cancels out.
    let pairs = plain.iter().zip(&tls);
    let throughput_cost = median(
        pairs
            .clone()
            .map(|(p, t)| 1.0 - t.creates.rate / p.creates.rate)
            .collect(),
    );
    let p99_delta = median(
        pairs
            .clone()
            .map(|(p, t)| t.creates.p99 - p.creates.p99)
            .collect(),
    );
    let delivery_delta = median(
        pairs
            .map(|(p, t)| t.delivery_p99 - p.delivery_p99)
            .collect(),
    );
    println!(
        "median of the rounds' pairs: TLS costs {:.1}% of create throughput, {:+.2} ms create p99, {:+.2} ms watch delivery p99",
        throughput_cost * 100.0,
        p99_delta,
        delivery_delta
    );
    Ok(json!({
        "bench": "tls",
        "rounds": args.rounds,
        "plain": summarize(&plain),
        "tls": summarize(&tls),
        "throughput_cost": (throughput_cost * 1000.0).round() / 1000.0,
        "create_p99_delta_ms": (p99_delta * 100.0).round() / 100.0,
        "delivery_p99_delta_ms": (delivery_delta * 100.0).round() / 100.0,
    }))
}
