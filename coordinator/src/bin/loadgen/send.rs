//! Sending pre-signed transfers over HTTP, and what came back.

use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Report {
    pub acked: usize,
    pub refused: usize,
    pub elapsed: Duration,
    pub latencies: Vec<Duration>,
}

impl Report {
    pub fn tps(&self) -> f64 {
        self.acked as f64 / self.elapsed.as_secs_f64()
    }

    pub fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let index = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies[index]
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} acknowledged, {} refused in {:.2} s: {:.0} tx/s; latency p50 {:.2} ms, p99 {:.2} ms",
            self.acked,
            self.refused,
            self.elapsed.as_secs_f64(),
            self.tps(),
            self.percentile(0.50).as_secs_f64() * 1e3,
            self.percentile(0.99).as_secs_f64() * 1e3
        )
    }
}

/// Sends every account's transfers with `concurrency` requests in flight, each request
/// carrying `per_request` transfers (`POST /tx` for one, `POST /txs` for more). Accounts are
/// split among the in-flight lanes and each lane sends round by round, so every account's
/// nonces arrive in order.
pub async fn send(
    url: &str,
    by_account: Vec<Vec<Vec<u8>>>,
    concurrency: usize,
    per_request: usize,
) -> anyhow::Result<Report> {
    let http = reqwest::Client::builder().pool_max_idle_per_host(concurrency).build()?;
    let concurrency = concurrency.max(1).min(by_account.len().max(1));
    let per_request = per_request.max(1);
    let mut lanes: Vec<Vec<Vec<Vec<u8>>>> = vec![Vec::new(); concurrency];
    for (i, requests) in by_account.into_iter().enumerate() {
        lanes[i % concurrency].push(requests);
    }
    // Each lane's requests, in order: round k (nonce k of each of its accounts) before round k + 1.
    let lanes: Vec<Vec<(usize, Vec<u8>)>> = lanes
        .into_iter()
        .map(|lane| {
            let longest = lane.iter().map(Vec::len).max().unwrap_or(0);
            let mut requests = Vec::new();
            for round in 0..longest {
                let bodies: Vec<&Vec<u8>> = lane.iter().filter_map(|account| account.get(round)).collect();
                for group in bodies.chunks(per_request) {
                    if per_request == 1 {
                        requests.push((1, group[0].clone()));
                    } else {
                        let mut body = b"[".to_vec();
                        for (i, tx) in group.iter().enumerate() {
                            if i > 0 {
                                body.push(b',');
                            }
                            body.extend_from_slice(tx);
                        }
                        body.push(b']');
                        requests.push((group.len(), body));
                    }
                }
            }
            requests
        })
        .collect();
    let total: usize = lanes.iter().flatten().map(|(n, _)| n).sum();
    let progress = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let ticker = {
        let progress = progress.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(2)).await;
                eprintln!("  {} / {total} answered", progress.load(std::sync::atomic::Ordering::Relaxed));
            }
        })
    };
    let path = if per_request == 1 { "tx" } else { "txs" };
    let started = Instant::now();
    let mut tasks = Vec::new();
    for lane in lanes {
        let (http, url, progress) = (http.clone(), format!("{url}/{path}"), progress.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut refused = 0;
            for (count, body) in lane {
                let sent = Instant::now();
                let response = http.post(&url).header("content-type", "application/json").body(body).send().await?;
                let ok = response.status().is_success();
                let answer = response.bytes().await?;
                let accepted = match (ok, count) {
                    (false, _) => 0,
                    (true, 1) => 1,
                    (true, _) => serde_json::from_slice::<serde_json::Value>(&answer)
                        .ok()
                        .and_then(|v| {
                            v["results"].as_array().map(|r| r.iter().filter(|x| x["status"] == "accepted").count())
                        })
                        .unwrap_or(0),
                };
                if accepted < count && refused == 0 {
                    eprintln!("  refused: {}", String::from_utf8_lossy(&answer[..answer.len().min(400)]));
                }
                refused += count - accepted;
                latencies.extend(std::iter::repeat_n(sent.elapsed(), accepted));
                progress.fetch_add(count, std::sync::atomic::Ordering::Relaxed);
            }
            Ok::<_, reqwest::Error>((latencies, refused))
        }));
    }
    let mut report = Report { acked: 0, refused: 0, elapsed: Duration::ZERO, latencies: Vec::new() };
    for task in tasks {
        let (latencies, refused) = task.await??;
        report.acked += latencies.len();
        report.refused += refused;
        report.latencies.extend(latencies);
    }
    report.elapsed = started.elapsed();
    ticker.abort();
    report.latencies.sort();
    Ok(report)
}
