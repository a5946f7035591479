//! A fast OpenAI-compatible stand-in model for load tests that answers the way a good model
//! would: from the first passage of its system prompt, reworded a little ("Put simply, ...") and
//! cited `[1]`, so the tutor shows it after the same checks a real answer goes through (a fixed
//! answer unrelated to the lesson would be removed, and the load would measure the fallback).
//!
//! ```text
//! cargo run --release --example stand-in -- PORT [DELAY_MS CHUNKS]
//! ```
//!
//! JSON, or with `"stream": true` a word per chunk, at once. With `DELAY_MS CHUNKS`, a slow
//! model: a stream comes in `CHUNKS` pieces `DELAY_MS` apart, and a JSON answer after the same
//! time. One worker thread, like a remote provider that costs the tutor's machine little.
//!
//! `STAND_IN_TLS=h2` serves HTTPS with the test certificate of `tests/it/tls/` (trust its
//! `ca.pem` with `TUTOR_MODEL_CA_FILE`), offering HTTP/2 (256 streams a connection) and
//! HTTP/1.1 like a hosted provider;
//! `STAND_IN_TLS=h1` offers HTTP/1.1 only.

#[path = "../tests/it/tls/server.rs"]
mod tls_server;

use axum::Json;
use axum::body::Body;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use serde_json::{Value, json};
use std::time::Duration;

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> anyhow::Result<()> {
    let usage = || anyhow::anyhow!("usage: stand-in PORT [DELAY_MS CHUNKS]");
    let args: Vec<String> = std::env::args().skip(1).collect();
    let port: u16 = args
        .first()
        .and_then(|p| p.parse().ok())
        .ok_or_else(usage)?;
    let pace = match &args[1..] {
        [] => None,
        [delay, chunks] => Some(Pace {
            delay: Duration::from_millis(delay.parse().map_err(|_| usage())?),
            chunks: chunks.parse().ok().filter(|&n| n > 0).ok_or_else(usage)?,
        }),
        _ => return Err(usage()),
    };
    let app = axum::Router::new()
        .route(
            "/v1/models",
            get(|| async {
                Json(json!({"object": "list", "data": [{"id": "stand-in", "object": "model"}]}))
            }),
        )
        .route(
            "/v1/chat/completions",
            post(move |Json(request): Json<Value>| complete(request, pace)),
        );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    if let Some(protocols) = std::env::var("STAND_IN_TLS").ok().filter(|p| !p.is_empty()) {
        let http2 = match protocols.as_str() {
            "h2" => true,
            "h1" => false,
            other => anyhow::bail!("STAND_IN_TLS must be h2 or h1, not {other:?}"),
        };
        tls_server::serve(listener, app, http2, || {}).await;
        return Ok(());
    }
    axum::serve(listener, app).await?;
    Ok(())
}

/// The answer to a request: the first sentence of passage `[1]` of the system prompt.
fn answer(request: &Value) -> String {
    let system = request["messages"][0]["content"].as_str().unwrap_or("");
    let passage = system
        .split_once("\n[1] (section:")
        .and_then(|(_, rest)| rest.split_once('\n'))
        .map_or("", |(_, text)| text.lines().next().unwrap_or(""));
    let first = tutor::text::split_sentences(passage)
        .into_iter()
        .next()
        .unwrap_or("The lesson covers this");
    let first = first.trim_end_matches(['.', '!', '?']);
    let mut chars = first.chars();
    // Lower-case an ordinary first word after the opening ("The" → "the"), not a name.
    let body: String = match (chars.next(), first.chars().nth(1)) {
        (Some(c), Some(next)) if next.is_lowercase() => c.to_lowercase().chain(chars).collect(),
        _ => first.to_string(),
    };
    format!("Put simply, {body} [1].")
}

/// How a slow model answers: a stream in `chunks` pieces `delay` apart.
#[derive(Clone, Copy)]
struct Pace {
    delay: Duration,
    chunks: usize,
}

/// `text` cut into `n` pieces of about the same length, on character boundaries (some empty
/// when it has fewer characters than `n`).
fn pieces(text: &str, n: usize) -> Vec<&str> {
    let bounds: Vec<usize> = text
        .char_indices()
        .map(|(i, _)| i)
        .chain([text.len()])
        .collect();
    let chars = bounds.len() - 1;
    (0..n)
        .map(|k| tutor::text::cut(text, bounds[k * chars / n]..bounds[(k + 1) * chars / n]))
        .collect()
}

async fn complete(request: Value, pace: Option<Pace>) -> Response {
    let text = answer(&request);
    if request["stream"].as_bool() != Some(true) {
        if let Some(pace) = pace {
            tokio::time::sleep(pace.delay * pace.chunks as u32).await;
        }
        return Json(json!({
            "id": "stand-in", "object": "chat.completion", "created": 0, "model": "stand-in",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        }))
        .into_response();
    }
    let chunk = |delta: Value, finish: Value| {
        let chunk = json!({"id": "stand-in", "object": "chat.completion.chunk", "created": 0,
            "model": "stand-in", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        format!("data: {chunk}\n\n")
    };
    let contents: Vec<&str> = match pace {
        Some(pace) => pieces(&text, pace.chunks),
        None => text.split_inclusive(' ').collect(),
    };
    // Each event with whether the model takes a while before it (the pieces, not the end).
    let mut events: Vec<(String, bool)> = contents
        .into_iter()
        .map(|piece| (chunk(json!({"content": piece}), Value::Null), true))
        .collect();
    events.push((chunk(json!({}), json!("stop")), false));
    events.push(("data: [DONE]\n\n".to_string(), false));
    let delay = pace.map_or(Duration::ZERO, |p| p.delay);
    let body = futures::stream::iter(events).then(move |(event, slow)| async move {
        if slow && !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        Ok::<_, std::io::Error>(event)
    });
    (
        [(header::CONTENT_TYPE, "text/event-stream")],
        Body::from_stream(body),
    )
        .into_response()
}
