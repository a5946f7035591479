//! A fast OpenAI-compatible stand-in model for load tests that answers the way a good model
//! would: from the first passage of its system prompt, reworded a little ("Put simply, ...") and
//! cited `[1]`, so the tutor shows it after the same checks a real answer goes through (a fixed
//! answer unrelated to the lesson would be removed, and the load would measure the fallback).
//!
//! ```text
//! cargo run --release --example stand-in -- PORT
//! ```
//!
//! JSON, or with `"stream": true` a word per chunk. One worker thread, like a remote provider
//! that costs the tutor's machine little.

use axum::Json;
use axum::body::Body;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> anyhow::Result<()> {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("usage: stand-in PORT"))?;
    let app = axum::Router::new()
        .route(
            "/v1/models",
            get(|| async {
                Json(json!({"object": "list", "data": [{"id": "stand-in", "object": "model"}]}))
            }),
        )
        .route("/v1/chat/completions", post(complete));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
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

async fn complete(Json(request): Json<Value>) -> Response {
    let text = answer(&request);
    if request["stream"].as_bool() != Some(true) {
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
    let mut events: Vec<String> = text
        .split_inclusive(' ')
        .map(|word| chunk(json!({"content": word}), Value::Null))
        .collect();
    events.push(chunk(json!({}), json!("stop")));
    events.push("data: [DONE]\n\n".to_string());
    let body = futures::stream::iter(events.into_iter().map(Ok::<_, std::io::Error>));
    (
        [(header::CONTENT_TYPE, "text/event-stream")],
        Body::from_stream(body),
    )
        .into_response()
}
