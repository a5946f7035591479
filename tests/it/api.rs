//! The HTTP contract of API.md with the extractive answerer: answers, refusals, lessons,
//! search, and one JSON error shape for every kind of bad input.

use crate::helpers::spawn_app;
use serde_json::{Value, json};

fn assert_error(status: u16, body: &Value, want_status: u16, want_code: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["error"]["code"], want_code, "{body}");
    let message = body["error"]["message"].as_str().expect("a message");
    assert!(message.len() > 10, "{body}");
}

#[tokio::test]
async fn an_in_lesson_question_is_answered_from_the_right_section_with_valid_citations() {
    let app = spawn_app(None).await;
    let (status, body) = app
        .chat(json!({"lesson_id": "choosing-a-deployment", "message": "What is the trade-off of self-hosting a model?"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["refused"], false);
    assert_eq!(body["backend"], "extractive");
    let answer = body["answer"].as_str().expect("answer");
    let citations = body["citations"].as_array().expect("citations");
    assert!(!citations.is_empty());
    for citation in citations {
        let n = citation["n"].as_u64().expect("n");
        assert!(answer.contains(&format!("[{n}]")), "{answer}");
        assert!(
            citation["passage_id"]
                .as_str()
                .expect("id")
                .starts_with("choosing-a-deployment#")
        );
        // Every word of an extractive answer comes from the cited passages.
        assert!(!citation["text"].as_str().expect("text").is_empty());
    }
    assert!(
        citations
            .iter()
            .any(|c| c["text"].as_str().expect("text").contains("Self-host")),
        "{body}"
    );
}

#[tokio::test]
async fn an_off_topic_question_is_refused_with_no_citations() {
    let app = spawn_app(None).await;
    let (status, body) = app
        .chat(json!({"lesson_id": "what-open-means", "message": "How long should I boil an egg?"}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["refused"], true);
    assert_eq!(body["citations"], json!([]));
    assert!(
        body["answer"]
            .as_str()
            .expect("answer")
            .contains("doesn't cover")
    );
}

#[tokio::test]
async fn a_question_another_lesson_answers_is_refused_with_a_pointer_to_it() {
    let app = spawn_app(None).await;
    let (status, body) = app
        .chat(
            json!({"lesson_id": "what-open-means", "message": "What does the EU AI Act require?"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["refused"], true);
    assert_eq!(body["related_lesson"]["id"], "the-policy-layer", "{body}");
    assert!(
        body["answer"]
            .as_str()
            .expect("answer")
            .contains("The Policy Layer"),
        "{body}"
    );
}

#[tokio::test]
async fn a_follow_up_uses_the_history_to_find_its_section() {
    let app = spawn_app(None).await;
    let (_, first) = app
        .chat(json!({"lesson_id": "hybrid-routing", "message": "What are fallbacks for?"}))
        .await;
    assert_eq!(first["refused"], false, "{first}");
    let (status, body) = app
        .chat(json!({
            "lesson_id": "hybrid-routing",
            "message": "and how do I test it?",
            "history": [
                {"role": "user", "content": "What are fallbacks for?"},
                {"role": "assistant", "content": first["answer"]},
            ],
        }))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["refused"], false, "{body}");
}

#[tokio::test]
async fn streaming_sends_citations_then_deltas_then_done() {
    let app = spawn_app(None).await;
    let (status, events) = app
        .chat_stream(json!({"lesson_id": "the-case-for-openness", "message": "Why does openness help reproducibility?", "stream": true}))
        .await;
    assert_eq!(status, 200);
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.last(), Some(&"done"));
    assert!(
        names[..names.len() - 1]
            .iter()
            .all(|n| *n == "delta" || *n == "citations"),
        "{names:?}"
    );
    assert!(names.contains(&"delta"), "{names:?}");
    crate::helpers::assert_citations_precede_markers(&events);
    let streamed: String = events
        .iter()
        .filter(|(n, _)| n == "delta")
        .map(|(_, d)| d["text"].as_str().expect("text"))
        .collect();
    let done = &events.last().expect("done").1;
    assert_eq!(streamed, done["answer"].as_str().expect("answer"));
    assert_eq!(done["refused"], false);
}

#[tokio::test]
async fn a_refusal_streams_as_one_delta_and_done() {
    let app = spawn_app(None).await;
    let (status, events) = app
        .chat_stream(
            json!({"lesson_id": "the-policy-layer", "message": "Who painted the Mona Lisa?"}),
        )
        .await;
    assert_eq!(status, 200);
    let done = &events.last().expect("done").1;
    assert_eq!(done["refused"], true);
    assert_eq!(events.iter().filter(|(n, _)| n == "delta").count(), 1);
}

#[tokio::test]
async fn free_text_with_query_syntax_never_errors() {
    let app = spawn_app(None).await;
    for message in [
        "\"open weights\" AND (licenses OR NOT) : C++ [1] ~2 ^3 *",
        "🚀🚀🚀",
        "日本語の質問です",
        "title:foo body:\"bar",
        "?",
    ] {
        let (status, body) = app
            .chat(json!({"lesson_id": "what-open-means", "message": message}))
            .await;
        assert_eq!(status, 200, "{message}: {body}");
        let response = app
            .client
            .get(format!("{}/v1/search", app.base))
            .query(&[("q", message), ("lesson_id", "what-open-means")])
            .send()
            .await
            .expect("search");
        assert_eq!(response.status(), 200, "{message}");
    }
}

#[tokio::test]
async fn lessons_are_listed_with_their_sections() {
    let app = spawn_app(None).await;
    let (status, body) = app.get_json("/v1/lessons").await;
    assert_eq!(status, 200);
    let lessons = body["lessons"].as_array().expect("lessons");
    assert!(lessons.len() >= 6);
    for lesson in lessons {
        assert!(lesson["title"].is_string() && lesson["summary"].is_string());
        assert!(!lesson["sections"].as_array().expect("sections").is_empty());
    }
    let (status, one) = app.get_json("/v1/lessons/hybrid-routing").await;
    assert_eq!(status, 200);
    assert!(
        one["sections"]
            .as_array()
            .expect("sections")
            .iter()
            .any(|s| s["id"] == "fallbacks-and-failover")
    );
}

#[tokio::test]
async fn search_ranks_passages_of_one_lesson_or_all() {
    let app = spawn_app(None).await;
    let (status, body) = app
        .get_json("/v1/search?q=export+controls+on+weights&k=3")
        .await;
    assert_eq!(status, 200);
    let hits = body["hits"].as_array().expect("hits");
    assert!(!hits.is_empty() && hits.len() <= 3);
    assert_eq!(hits[0]["lesson_id"], "the-policy-layer", "{body}");
    let scores: Vec<f64> = hits
        .iter()
        .map(|h| h["score"].as_f64().expect("score"))
        .collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]));
}

#[tokio::test]
async fn every_bad_request_gets_the_json_error_shape_and_never_a_5xx() {
    let app = spawn_app(None).await;
    let post = |body: String| {
        let client = app.client.clone();
        let url = format!("{}/v1/chat", app.base);
        async move {
            let response = client
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .expect("sent");
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.expect("JSON error body"),
            )
        }
    };
    let long = "a".repeat(4001);
    let history: Vec<Value> = (0..21)
        .map(|_| json!({"role": "user", "content": "hi"}))
        .collect();
    let cases: Vec<(String, u16, &str)> = vec![
        ("{not json".to_string(), 400, "invalid_request"),
        ("".to_string(), 400, "invalid_request"),
        ("[]".to_string(), 400, "invalid_request"),
        (json!({"lesson_id": "what-open-means"}).to_string(), 400, "invalid_request"),
        (json!({"lesson_id": 7, "message": "hi"}).to_string(), 400, "invalid_request"),
        (json!({"lesson_id": "what-open-means", "message": "hi", "history": [{"role": "system", "content": "x"}]}).to_string(), 400, "invalid_request"),
        (json!({"lesson_id": "what-open-means", "message": "hi", "stream": "yes"}).to_string(), 400, "invalid_request"),
        (json!({"lesson_id": "what-open-means", "message": "   "}).to_string(), 422, "invalid_message"),
        (json!({"lesson_id": "what-open-means", "message": long}).to_string(), 422, "invalid_message"),
        (json!({"lesson_id": "what-open-means", "message": "hi", "history": history}).to_string(), 422, "invalid_message"),
        (json!({"lesson_id": "no-such-lesson", "message": "hi"}).to_string(), 404, "lesson_not_found"),
        (format!("{{\"lesson_id\": \"x\", \"message\": \"{}\"}}", "b".repeat(70_000)), 413, "payload_too_large"),
    ];
    for (body, status, code) in cases {
        let (got_status, got) = post(body).await;
        assert_error(got_status, &got, status, code);
    }
    let get = |path: &str| {
        let client = app.client.clone();
        let url = format!("{}{path}", app.base);
        async move {
            let response = client.get(url).send().await.expect("sent");
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.expect("JSON error body"),
            )
        }
    };
    for (path, status, code) in [
        ("/v1/lessons/nope", 404, "lesson_not_found"),
        ("/v1/nothing-here", 404, "not_found"),
        ("/v1/search", 400, "invalid_request"),
        ("/v1/search?q=open&k=0", 400, "invalid_request"),
        ("/v1/search?q=open&k=many", 400, "invalid_request"),
        ("/v1/search?q=open&lesson_id=nope", 404, "lesson_not_found"),
        ("/v1/chat", 405, "method_not_allowed"),
    ] {
        let (got_status, got) = get(path).await;
        assert_error(got_status, &got, status, code);
    }
}

#[tokio::test]
async fn browsers_from_other_origins_are_refused_clearly_unless_allowed() {
    let app = spawn_app(None).await;
    let body = json!({"lesson_id": "what-open-means", "message": "What is a fully open release?"});
    let send = |origin: &'static str| {
        app.client
            .post(format!("{}/v1/chat", app.base))
            .header("origin", origin)
            .json(&body)
            .send()
    };
    let refused = send("http://evil.example").await.expect("sent");
    assert_eq!(refused.status(), 403);
    assert_eq!(
        refused.headers()["access-control-allow-origin"],
        "http://evil.example"
    );
    let refused: Value = refused.json().await.expect("json");
    assert_eq!(refused["error"]["code"], "origin_not_allowed");
    let allowed = send("http://allowed.example").await.expect("sent");
    assert_eq!(allowed.status(), 200);
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "http://allowed.example"
    );
    let same_origin = app
        .client
        .post(format!("{}/v1/chat", app.base))
        .header("origin", app.base.clone())
        .json(&body)
        .send()
        .await
        .expect("sent");
    assert_eq!(same_origin.status(), 200);
    let preflight = app
        .client
        .request(reqwest::Method::OPTIONS, format!("{}/v1/chat", app.base))
        .header("origin", "http://allowed.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .expect("sent");
    assert!(preflight.status().is_success());
    assert!(
        preflight
            .headers()
            .contains_key("access-control-allow-methods")
    );
}

#[tokio::test]
async fn only_the_api_answers_other_origins_and_metrics_never_do() {
    let app = spawn_app(None).await;
    let get = |path: &'static str| {
        app.client
            .get(format!("{}{path}", app.base))
            .header("origin", "http://evil.example")
            .send()
    };
    let metrics = get("/metrics").await.expect("sent");
    assert!(
        !metrics
            .headers()
            .contains_key("access-control-allow-origin"),
        "a page on another site cannot read the metrics"
    );
    let preflight = app
        .client
        .request(reqwest::Method::OPTIONS, format!("{}/metrics", app.base))
        .header("origin", "http://evil.example")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .expect("sent");
    assert!(
        !preflight
            .headers()
            .contains_key("access-control-allow-origin")
    );
    for page in ["/", "/openapi.json", "/lessons/what-open-means"] {
        let response = get(page).await.expect("sent");
        assert!(
            !response
                .headers()
                .contains_key("access-control-allow-origin"),
            "{page}"
        );
    }
    // The tool's public key set is public.
    let jwks = get("/.well-known/jwks.json").await.expect("sent");
    assert_eq!(
        jwks.headers()["access-control-allow-origin"],
        "http://evil.example"
    );
}

#[tokio::test]
async fn a_rebound_host_name_is_refused_even_with_its_own_origin() {
    let app = spawn_app(None).await;
    let port = app.base.rsplit(':').next().expect("port").to_string();
    let evil = format!("evil.example:{port}");
    let body = json!({"lesson_id": "what-open-means", "message": "What is a fully open release?"});
    let rebound = app
        .client
        .post(format!("{}/v1/chat", app.base))
        .header("host", evil.clone())
        .header("origin", format!("http://{evil}"))
        .json(&body)
        .send()
        .await
        .expect("sent");
    assert_eq!(rebound.status(), 421);
    let error: Value = rebound.json().await.expect("json");
    assert_eq!(error["error"]["code"], "misdirected_request");
    for page in ["/", "/metrics", "/v1/lessons"] {
        let response = app
            .client
            .get(format!("{}{page}", app.base))
            .header("host", evil.clone())
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), 421, "{page}");
    }
    // Probes may name the machine however they like.
    let probe = app
        .client
        .get(format!("{}/healthz", app.base))
        .header("host", evil.clone())
        .send()
        .await
        .expect("sent");
    assert_eq!(probe.status(), 200);
    // The names of a loopback address still work.
    for host in [format!("localhost:{port}"), format!("127.0.0.1:{port}")] {
        let response = app
            .client
            .post(format!("{}/v1/chat", app.base))
            .header("host", host.clone())
            .json(&body)
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), 200, "{host}");
    }
}

#[tokio::test]
async fn readiness_waits_for_the_index_and_health_does_not() {
    let state = tutor::http::AppState::new(Vec::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(tutor::http::serve(listener, state, std::future::pending()));
    let client = reqwest::Client::new();
    let health = client
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .expect("sent");
    assert_eq!(health.status(), 200);
    let ready = client
        .get(format!("http://{addr}/readyz"))
        .send()
        .await
        .expect("sent");
    assert_eq!(ready.status(), 503);
    assert_eq!(ready.headers()["retry-after"], "1");
    let chat = client
        .post(format!("http://{addr}/v1/chat"))
        .json(&json!({"lesson_id": "x", "message": "hi"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(chat.status(), 503);
    let app = spawn_app(None).await;
    let ready = app
        .client
        .get(format!("{}/readyz", app.base))
        .send()
        .await
        .expect("sent");
    assert_eq!(ready.status(), 200);
}

#[tokio::test]
async fn lesson_pages_carry_the_widget_and_section_anchors() {
    let app = spawn_app(None).await;
    let page = app
        .client
        .get(format!("{}/lessons/hybrid-routing", app.base))
        .send()
        .await
        .expect("get");
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("html");
    assert!(html.contains(r#"data-lesson="hybrid-routing""#));
    assert!(html.contains(r#"id="fallbacks-and-failover""#));
    let catalog = app
        .client
        .get(format!("{}/", app.base))
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("html");
    assert!(catalog.contains("/lessons/what-open-means"));
    let widget = app
        .client
        .get(format!("{}/widget.js", app.base))
        .send()
        .await
        .expect("get");
    assert_eq!(widget.status(), 200);
    assert!(
        widget.headers()["content-type"]
            .to_str()
            .expect("type")
            .contains("javascript")
    );
    // An unknown lesson page is an HTML page, pointing to the lessons whose ids are closest.
    let missing = app
        .client
        .get(format!("{}/lessons/hybrid-routes", app.base))
        .send()
        .await
        .expect("get");
    assert_eq!(missing.status(), 404);
    assert!(
        missing.headers()["content-type"]
            .to_str()
            .expect("type")
            .starts_with("text/html")
    );
    let page = missing.text().await.expect("page");
    assert!(page.contains("<code>hybrid-routes</code>"), "{page}");
    let first_link = page
        .split("href=\"/lessons/")
        .nth(1)
        .and_then(|rest| rest.split('"').next());
    assert_eq!(first_link, Some("hybrid-routing"), "{page}");
    assert!(page.contains("href=\"/\""), "a way back to the catalog");
    // The icon, under both names browsers use.
    for path in ["/favicon.ico", "/favicon.svg"] {
        let icon = app
            .client
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .expect("get");
        assert_eq!(icon.status(), 200, "{path}");
        assert_eq!(icon.headers()["content-type"], "image/svg+xml");
        assert!(icon.text().await.expect("svg").starts_with("<svg"));
    }
}
