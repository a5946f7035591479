//! Service metrics (the `metrics` facade, rendered in Prometheus text format at `GET /metrics`
//! by metrics-exporter-prometheus): requests by route and status, latencies, gate decisions and
//! refusals by reason, model calls, errors and tokens by backend, streams in flight, dropped log
//! writes.
//!
//! A leaf: it knows no other module of the tutor; callers hand it `&'static str` labels.
//!
//! Label values are always bounded: route templates (never raw paths), configured backend
//! names, fixed reason words. No question text and no lesson id from user input.

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

/// Latency buckets, in seconds: from a fast retrieval to a slow model.
const BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder once; later calls return the same handle.
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".to_string()), BUCKETS)
                .ok()?;
            match builder.install_recorder() {
                Ok(handle) => {
                    // Histograms buffer samples until upkeep folds them in: run it often, or
                    // memory grows between scrapes.
                    let upkeep = handle.clone();
                    let _ = std::thread::Builder::new()
                        .name("metrics-upkeep".to_string())
                        .spawn(move || {
                            loop {
                                std::thread::sleep(std::time::Duration::from_secs(5));
                                upkeep.run_upkeep();
                            }
                        });
                    Some(handle)
                }
                Err(error) => {
                    tracing::warn!(%error, "metrics recorder not installed");
                    None
                }
            }
        })
        .as_ref()
}

/// The Prometheus text exposition of every metric.
pub fn render() -> String {
    match install() {
        Some(handle) => {
            handle.run_upkeep();
            handle.render()
        }
        None => String::new(),
    }
}

/// Longest request-supplied value written into a log line, in characters.
const LOGGED_VALUE_CHARS: usize = 200;

/// A value that came from a request (an issuer, an error text, a lesson id, a question), made
/// safe to put in a log line: every control character (C0, DEL, C1), the Unicode line and
/// paragraph separators and the bidirectional overrides are written as `\u{..}`, so a value
/// can neither start a forged line nor send terminal escapes; and it is cut to 200 characters.
pub fn untrusted(value: &str) -> String {
    let mut out = String::with_capacity(value.len().min(LOGGED_VALUE_CHARS * 2));
    for (i, c) in value.chars().enumerate() {
        if i == LOGGED_VALUE_CHARS {
            out.push('…');
            break;
        }
        if c.is_control()
            || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// One HTTP request, by route template, method and status.
pub fn request(route: &str, method: &str, status: u16, seconds: f64) {
    let labels = [
        ("route", route.to_string()),
        ("method", method.to_string()),
        ("status", status.to_string()),
    ];
    counter!("tutor_http_requests_total", &labels).increment(1);
    histogram!("tutor_http_request_duration_seconds", "route" => route.to_string()).record(seconds);
}

/// Time spent retrieving and gating one question.
pub fn retrieval(seconds: f64) {
    histogram!("tutor_retrieval_seconds").record(seconds);
}

/// The gate's decision.
pub fn gate(answered: bool, reason: &'static str) {
    let decision = if answered { "answer" } else { "refuse" };
    counter!("tutor_gate_decisions_total", "decision" => decision, "reason" => reason).increment(1);
}

/// A refusal, by why: the gate's reasons, or the model's (`model_not_in_lesson`,
/// `model_repeated_rules`).
pub fn refusal(reason: &'static str) {
    counter!("tutor_refusals_total", "reason" => reason).increment(1);
}

/// A hint, a quiz question or a graded reply (`kind`), with the hint's reason or the grade
/// (`detail`).
pub fn quiz(kind: &'static str, detail: &'static str) {
    counter!("tutor_quiz_replies_total", "kind" => kind, "detail" => detail).increment(1);
}

/// A reply to small talk (`kind`: greeting, thanks, goodbye, help).
pub fn small_talk(kind: &'static str) {
    counter!("tutor_small_talk_total", "kind" => kind).increment(1);
}

/// A question in another language than the lesson's (`language`: its ISO code, from a fixed
/// set).
pub fn other_language(language: &'static str) {
    counter!("tutor_other_language_total", "language" => language).increment(1);
}

/// A translation for a question in another language: `step` is `question` or `answer`;
/// `outcome` is `ok`, `cached`, `failed` or `unfaithful`.
pub fn translation(step: &'static str, outcome: &'static str) {
    counter!("tutor_translations_total", "step" => step, "outcome" => outcome).increment(1);
}

/// A failed model call: `timeout` when the provider did not answer in time, else `error`.
pub fn model_failure(backend: &str, outcome: &'static str) {
    model_call(backend, outcome);
}

/// One sentence of a model's answer judged by the verifier: its verdict (`supported`,
/// `corrected`, `neutral`, `unsupported`) and, when removed, why (`number`, `name`, `words`,
/// `polarity`, `leak`, `second_opinion`; else `none`).
pub fn verdict(verdict: &'static str, reason: &'static str) {
    counter!("tutor_verified_sentences_total", "verdict" => verdict, "reason" => reason)
        .increment(1);
}

/// A second-opinion call to the verifier model and how it ended (`ok`, `error`, `timeout`).
pub fn second_opinion(outcome: &'static str) {
    counter!("tutor_second_opinions_total", "outcome" => outcome).increment(1);
}

/// An answer whose every sentence was removed, answered by the embedded answerer instead.
pub fn fallback() {
    counter!("tutor_verification_fallbacks_total").increment(1);
}

/// A model call and how it ended (`ok`, `error`, `timeout`).
pub fn model_call(backend: &str, outcome: &'static str) {
    counter!("tutor_model_calls_total", "backend" => backend.to_string(), "outcome" => outcome)
        .increment(1);
}

/// Time to a model's first words.
pub fn model_first_token(backend: &str, seconds: f64) {
    histogram!("tutor_model_first_token_seconds", "backend" => backend.to_string()).record(seconds);
}

/// A model's whole answer time.
pub fn model_total(backend: &str, seconds: f64) {
    histogram!("tutor_model_seconds", "backend" => backend.to_string()).record(seconds);
}

/// Tokens (estimated at four characters a token) sent to and received from a model.
pub fn model_tokens(backend: &str, prompt: u64, completion: u64) {
    counter!("tutor_model_tokens_total", "backend" => backend.to_string(), "kind" => "prompt")
        .increment(prompt);
    counter!("tutor_model_tokens_total", "backend" => backend.to_string(), "kind" => "completion")
        .increment(completion);
}

/// A learner's rating of an answer (`up` or `down`).
pub fn feedback(rating: &'static str) {
    counter!("tutor_feedback_total", "rating" => rating).increment(1);
}

/// A panic caught where it would have cut a request short (`answer`, `stream`, `blocking`,
/// `request`): the learner got `500 internal` or an `error` event instead of a closed connection.
pub fn panicked(at: &'static str) {
    counter!("tutor_panics_total", "at" => at).increment(1);
}

/// The message a panic carried, for the log.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// A conversation-log record dropped because the writer's queue was full.
pub fn log_dropped() {
    counter!("tutor_log_writes_dropped_total").increment(1);
}

/// A conversation-log write retried because the database was unreachable.
pub fn log_retry() {
    counter!("tutor_log_write_retries_total").increment(1);
}

/// A call to the shared Redis that failed or timed out (`op`: `rate_limit`, `answer`,
/// `nonce`); the tutor went on without it.
pub fn shared_state_error(op: &'static str) {
    counter!("tutor_shared_state_errors_total", "op" => op).increment(1);
}

/// Rate-limit cells a replica took from Redis ahead of need and let expire unused: the shared
/// bucket admitted that many fewer requests than its limit (never more). Counted when the
/// expired lease is next looked at, so the last lease of a caller that went quiet is counted
/// only if it asks again.
pub fn rate_cells_forgotten(cells: u32) {
    if cells > 0 {
        counter!("tutor_rate_limit_cells_forgotten_total").increment(u64::from(cells));
    }
}

/// An LTI launch: `resource_link`, `deep_linking`, or the check that refused it.
pub fn lti_launch(outcome: &'static str) {
    counter!("tutor_lti_launches_total", "outcome" => outcome).increment(1);
}

/// Counts a stream in flight from creation to drop (finished, failed or abandoned).
pub struct StreamInFlight;

impl StreamInFlight {
    /// Starts counting one stream.
    pub fn start() -> StreamInFlight {
        gauge!("tutor_streams_in_flight").increment(1.0);
        StreamInFlight
    }
}

impl Drop for StreamInFlight {
    fn drop(&mut self) {
        gauge!("tutor_streams_in_flight").decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::untrusted;

    #[test]
    fn untrusted_values_cannot_break_a_log_line_or_drive_a_terminal() {
        let mut hostile: String = (0u32..0x20)
            .chain(0x7f..0xa0)
            .filter_map(char::from_u32)
            .collect();
        hostile.push_str("\u{2028}\u{2029}\u{202e}\u{2066}");
        let logged = untrusted(&format!("x{hostile}\nFORGED-LINE"));
        assert!(
            logged.chars().all(|c| !c.is_control()
                && !matches!(c, '\u{2028}' | '\u{2029}' | '\u{202e}' | '\u{2066}')),
            "{logged:?}"
        );
        assert!(logged.starts_with("x\\u{0}\\u{1}"), "{logged}");
        assert!(logged.contains("\\u{1b}"), "{logged}");
        assert!(logged.contains("\\u{a}FORGED-LINE"), "{logged}");
        assert!(logged.contains("\\u{85}"), "{logged}");
        assert_eq!(
            untrusted("https://lms.example.edu"),
            "https://lms.example.edu"
        );
        assert_eq!(untrusted(&"a".repeat(500)).chars().count(), 201);
    }
}
