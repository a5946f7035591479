//! Holds many concurrent streaming answers open against a running tutor and reports time to
//! first event, total time, errors, and which backend gave each answer (so a run whose model
//! answers were all refused and replaced is seen as such). Used by `benches/load.sh`; loopback
//! only.
//!
//! ```text
//! cargo run --release --example stream-load -- http://127.0.0.1:8080 LESSON_ID "question" 1000
//! ```

use futures::StreamExt;
use std::time::{Duration, Instant};

struct Outcome {
    first_event: Option<Duration>,
    total: Duration,
    ok: bool,
    /// The `backend` of the final answer (its `done` event).
    backend: Option<String>,
}

async fn one(client: reqwest::Client, url: String, body: String) -> Outcome {
    let started = Instant::now();
    let failed = |started: Instant| Outcome {
        first_event: None,
        total: started.elapsed(),
        ok: false,
        backend: None,
    };
    let Ok(response) = client
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "text/event-stream")
        .body(body)
        .send()
        .await
    else {
        return failed(started);
    };
    if !response.status().is_success() {
        return failed(started);
    }
    let mut first_event = None;
    let mut seen = String::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else {
            return failed(started);
        };
        if first_event.is_none() {
            first_event = Some(started.elapsed());
        }
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    let backend = seen
        .split("event: done\ndata: ")
        .nth(1)
        .and_then(|rest| rest.lines().next())
        .and_then(|data| serde_json::from_str::<serde_json::Value>(data).ok())
        .and_then(|answer| answer["backend"].as_str().map(str::to_string));
    Outcome {
        first_event,
        total: started.elapsed(),
        ok: seen.contains("event: done") && !seen.contains("event: error"),
        backend,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let at = ((sorted.len() as f64 * p) as usize).min(sorted.len() - 1);
    sorted[at].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [base, lesson, question, streams] = args.as_slice() else {
        anyhow::bail!("usage: stream-load BASE_URL LESSON_ID QUESTION STREAMS");
    };
    let streams: usize = streams.parse()?;
    let url = format!("{}/v1/chat", base.trim_end_matches('/'));
    let body =
        serde_json::json!({"lesson_id": lesson, "message": question, "stream": true}).to_string();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(streams)
        .timeout(Duration::from_secs(60))
        .build()?;
    let started = Instant::now();
    let tasks: Vec<_> = (0..streams)
        .map(|_| tokio::spawn(one(client.clone(), url.clone(), body.clone())))
        .collect();
    let mut outcomes = Vec::with_capacity(streams);
    for task in tasks {
        outcomes.push(task.await?);
    }
    let wall = started.elapsed();
    let errors = outcomes.iter().filter(|o| !o.ok).count();
    let mut first: Vec<Duration> = outcomes.iter().filter_map(|o| o.first_event).collect();
    let mut total: Vec<Duration> = outcomes.iter().filter(|o| o.ok).map(|o| o.total).collect();
    first.sort();
    total.sort();
    let mut backends = std::collections::BTreeMap::<String, usize>::new();
    for outcome in &outcomes {
        let name = outcome
            .backend
            .clone()
            .unwrap_or_else(|| "none".to_string());
        *backends.entry(name).or_default() += 1;
    }
    println!(
        "{}",
        serde_json::json!({
            "streams": streams,
            "errors": errors,
            "wall_s": (wall.as_secs_f64() * 100.0).round() / 100.0,
            "first_event_p50_ms": percentile(&first, 0.5).round(),
            "first_event_p99_ms": percentile(&first, 0.99).round(),
            "total_p50_ms": percentile(&total, 0.5).round(),
            "total_p99_ms": percentile(&total, 0.99).round(),
            "backends": backends,
        })
    );
    Ok(())
}
