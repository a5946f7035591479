//! The HTTP surface of API.md: router, shared state, middleware (request ids, CORS and origin
//! checks, compression), and `serve`. The only module that knows axum, status codes and wire
//! JSON.

mod api;
mod compat;
mod error;
mod guard;
mod lti;
mod pages;
pub mod server;

pub use error::{ApiError, ErrorCode};
pub use guard::{Caller, HostAllowlist, Keys, key_digest_hex};

use crate::chat::Tutor;
use crate::config::RateLimits;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::net::TcpListener;
use tower_governor::GovernorLayer;
use tower_governor::governor::GovernorConfigBuilder;
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Largest request body accepted.
pub const BODY_LIMIT: usize = 64 * 1024;

/// What every handler shares: one pointer, so the extractors and layers that take it per
/// request copy one reference count rather than a dozen.
#[derive(Clone)]
pub struct AppState(Arc<StateFields>);

impl std::ops::Deref for AppState {
    type Target = StateFields;
    fn deref(&self) -> &StateFields {
        &self.0
    }
}

/// The fields of [`AppState`].
#[derive(Clone)]
pub struct StateFields {
    /// `None` until the index is loaded; swapped whole when lessons are reloaded, so a request
    /// keeps the tutor it started with.
    tutor: Arc<RwLock<Option<Arc<Tutor>>>>,
    /// Origins allowed to call the API from a browser (`*` for any).
    cors_origins: Arc<Vec<String>>,
    /// Serve widget and page assets from this folder instead of the built-in copies.
    dev_assets: Option<Arc<std::path::PathBuf>>,
    /// API keys; empty means the API is open.
    keys: Arc<Keys>,
    /// Rate limits, when configured.
    limits: Option<RateLimits>,
    /// Redis shared by replicas: rate-limit buckets live there when it is configured.
    shared: Option<Arc<crate::shared::Shared>>,
    /// LTI 1.3, when configured.
    lti: Option<Arc<crate::lti::Lti>>,
    /// Host names requests may name besides those `serve` derives from its listener.
    allowed_hosts: Arc<Vec<String>>,
    /// Set by [`serve`] from its listener: the `Host` names it answers to (`None`: any).
    hosts: Option<Arc<HostAllowlist>>,
    /// `/metrics` is served on its own listener ([`metrics_router`]), not with the API.
    metrics_elsewhere: bool,
    /// How many times the watcher has compared the files it follows with what is served
    /// (shown by `/readyz`: a watcher that stopped looking shows as a number that stands still).
    reload_checks: Arc<std::sync::atomic::AtomicU64>,
}

impl AppState {
    /// State with no tutor yet (`/readyz` answers 503 until [`AppState::set_tutor`]).
    pub fn new(cors_origins: Vec<String>) -> AppState {
        crate::telemetry::install();
        AppState(Arc::new(StateFields {
            tutor: Arc::new(RwLock::new(None)),
            cors_origins: Arc::new(cors_origins),
            dev_assets: std::env::var_os("TUTOR_DEV_ASSETS").map(|p| Arc::new(p.into())),
            keys: Arc::new(Keys::default()),
            limits: None,
            shared: None,
            lti: None,
            allowed_hosts: Arc::new(Vec::new()),
            hosts: None,
            metrics_elsewhere: false,
            reload_checks: Arc::default(),
        }))
    }

    /// The fields, to change while building (copied only if already shared).
    fn fields(&mut self) -> &mut StateFields {
        Arc::make_mut(&mut self.0)
    }

    /// Host names requests may be addressed to, besides the loopback names when listening on
    /// loopback and the LTI URL's host.
    pub fn with_allowed_hosts(mut self, hosts: Vec<String>) -> AppState {
        self.fields().allowed_hosts = Arc::new(hosts);
        self
    }

    /// Leaves `/metrics` out of the API's router (it is served by [`metrics_router`]).
    pub fn with_metrics_elsewhere(mut self, elsewhere: bool) -> AppState {
        self.fields().metrics_elsewhere = elsewhere;
        self
    }

    /// Accepts LTI launches (and the session tokens they issue).
    pub fn with_lti(mut self, lti: Option<crate::lti::Lti>) -> AppState {
        self.fields().lti = lti.map(Arc::new);
        self
    }

    /// Requires one of `keys` on the API (none: the API stays open).
    pub fn with_keys(mut self, keys: Keys) -> AppState {
        self.fields().keys = Arc::new(keys);
        self
    }

    /// Rate-limits the API.
    pub fn with_limits(mut self, limits: Option<RateLimits>) -> AppState {
        self.fields().limits = limits;
        self
    }

    /// Counts rate limits in Redis, shared by every replica (instead of per process).
    pub fn with_shared(mut self, shared: Option<Arc<crate::shared::Shared>>) -> AppState {
        self.fields().shared = shared;
        self
    }

    /// State serving `tutor` at once.
    pub fn with_tutor(tutor: Tutor, cors_origins: Vec<String>) -> AppState {
        let state = AppState::new(cors_origins);
        state.set_tutor(tutor);
        state
    }

    /// Makes `tutor` the one new requests use.
    pub fn set_tutor(&self, tutor: Tutor) {
        let mut slot = self.tutor.write().unwrap_or_else(|e| e.into_inner());
        *slot = Some(Arc::new(tutor));
    }

    /// Counts one look of the watcher at what it follows, whatever it found.
    pub fn reload_checked(&self) {
        self.reload_checks
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// How many times the watcher has looked since start.
    pub fn reload_checks(&self) -> u64 {
        self.reload_checks
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The tutor in force, or 503 while loading.
    pub fn tutor(&self) -> Result<Arc<Tutor>, ApiError> {
        self.tutor
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(ApiError::not_ready)
    }

    fn origin_allowed(&self, origin: &str) -> bool {
        self.cors_origins
            .iter()
            .any(|o| o == "*" || o.eq_ignore_ascii_case(origin))
            || self.keys.allows_origin(origin)
    }
}

/// True for the routes a page on another site may read: the API and the OpenAI-compatible
/// facade (which a widget calls) and the tool's public key set.
fn cross_origin_route(path: &str) -> bool {
    path.starts_with("/v1/") || path == "/.well-known/jwks.json"
}

/// CORS for [`cross_origin_route`]s only; everything else (pages, `/metrics`, the LTI endpoints)
/// sends no CORS headers, so no other site's script can read it. On the API, preflights succeed
/// for every origin so that a page from an origin that is not allowed gets a readable
/// `403 origin_not_allowed` from `check_origin`, not an opaque network error; the check on the
/// real request is what protects the API.
fn api_cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(|_, request| {
            cross_origin_route(request.uri.path())
        }))
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            header::ACCEPT,
            HeaderName::from_static("x-tutor-key"),
        ])
        .expose_headers([header::RETRY_AFTER, HeaderName::from_static("x-request-id")])
        .max_age(Duration::from_secs(600))
}

/// The whole application. Pages, assets, `/metrics` and the LTI endpoints send no CORS
/// headers: no other site's script can read them (the tool's public key set excepted).
pub fn router(state: AppState) -> Router {
    let (routes, spec) = documented_routes(&state).split_for_parts();
    if let Ok(json) = spec.to_pretty_json() {
        let _ = pages::OPENAPI_JSON.set(json);
    }
    // The widget with its words in every language, checked now rather than on a page.
    pages::built_in_widget();
    routes
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .with_state(state.clone())
        .layer(middleware::from_fn(track))
        // A body (an LTI form, say) that stalls between two pieces is dropped; JSON bodies
        // meet the shorter whole-body deadline of `read_json` first, which answers 408.
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            server::BODY_READ_TIMEOUT + Duration::from_secs(5),
        ))
        // Outermost of the routing layers, so preflights are answered before method routing.
        .layer(api_cors())
        .layer(middleware::from_fn_with_state(state, check_host))
        .layer(CompressionLayer::new())
        // Inside the request's span and its id: a panic anywhere below answers `500 internal`
        // in the API's error shape, with the id, instead of closing the connection.
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request| {
                    let id = request
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-");
                    tracing::info_span!(
                        "request",
                        id = %crate::telemetry::untrusted(id),
                        method = %crate::telemetry::untrusted(request.method().as_str()),
                        path = %crate::telemetry::untrusted(request.uri().path())
                    )
                })
                .on_failure(log_failure),
        )
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}

/// The answer to a request whose handler panicked (the chat paths catch their own first, to log
/// the learner's turn as failed).
fn panicked(panic: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    let message = crate::telemetry::panic_message(panic.as_ref());
    crate::telemetry::panicked("request");
    tracing::error!(
        panic = %crate::telemetry::untrusted(message),
        "a panic stopped this request"
    );
    ApiError::new(ErrorCode::Internal, "the tutor failed unexpectedly").into_response()
}

/// A failed response in the log: a 503 is an expected state (`/readyz` while the lessons load,
/// or the model queue full, which is counted) and goes to debug; any other failure is an error.
fn log_failure(
    failure: tower_http::classify::ServerErrorsFailureClass,
    latency: Duration,
    _span: &tracing::Span,
) {
    use tower_http::classify::ServerErrorsFailureClass;
    let latency_ms = latency.as_millis();
    match failure {
        ServerErrorsFailureClass::StatusCode(code)
            if code == axum::http::StatusCode::SERVICE_UNAVAILABLE =>
        {
            tracing::debug!(status = code.as_u16(), latency_ms, "unavailable for now");
        }
        other => tracing::error!(classification = %other, latency_ms, "response failed"),
    }
}

/// The OpenAPI document's frame; the paths come from the routes themselves.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "tutor",
        description = "A grounded lesson tutor: answers learners' questions using only what the lesson says, with citations. Every error is `{\"error\": {\"code\", \"message\"}}` (OpenAI's shape on the OpenAI-compatible routes)."
    ),
    components(schemas(error::ErrorBody))
)]
struct ApiDoc;

/// Every route, each registered with its OpenAPI description, so the router and the document
/// cannot drift apart.
pub fn documented_routes(state: &AppState) -> OpenApiRouter<AppState> {
    let api = OpenApiRouter::new()
        .routes(routes!(api::chat))
        .routes(routes!(api::lessons))
        .routes(routes!(api::lesson))
        .routes(routes!(api::search))
        .routes(routes!(api::feedback));
    let compat = OpenApiRouter::new()
        .routes(routes!(compat::models))
        .routes(routes!(compat::model))
        .routes(routes!(compat::completions));
    let compat = guarded(compat, state).route_layer(middleware::from_fn(compat::openai_errors));
    let mut routes = OpenApiRouter::with_openapi(<ApiDoc as utoipa::OpenApi>::openapi())
        .merge(guarded(api, state))
        .merge(compat)
        .routes(routes!(lti::jwks))
        .routes(routes!(api::healthz))
        .routes(routes!(api::readyz))
        .routes(routes!(pages::catalog))
        .routes(routes!(pages::lesson))
        .routes(routes!(pages::widget))
        .routes(routes!(pages::stylesheet))
        .routes(routes!(pages::favicon))
        .route("/favicon.ico", axum::routing::get(pages::favicon))
        .routes(routes!(pages::openapi_json))
        .routes(routes!(pages::docs))
        .routes(routes!(lti::login))
        .routes(routes!(lti::launch, lti::launch_page))
        .routes(routes!(lti::deep_link))
        .routes(routes!(lti::lesson));
    if !state.metrics_elsewhere {
        routes = routes.routes(routes!(api::metrics));
    }
    routes
}

/// `/metrics` alone, for its own listener (`metrics_addr`), e.g. on an address only the
/// monitoring network reaches.
pub fn metrics_router() -> Router {
    Router::new().route("/metrics", axum::routing::get(api::metrics))
}

/// Connections the metrics listener holds at once: scrapers, not learners.
const METRICS_CONNECTIONS: usize = 64;

/// Serves [`metrics_router`] on its own listener through the same connection loop as the API
/// (head and write timeouts, a connection cap), until `shutdown` resolves.
pub async fn serve_metrics(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = server::Limits {
        max_connections: METRICS_CONNECTIONS,
        ..server::Limits::default()
    };
    server::serve(listener, metrics_router(), limits, shutdown).await
}

/// Refuses requests addressed to a name this tutor does not answer to (DNS rebinding), with
/// `421 misdirected_request`.
async fn check_host(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(hosts) = &state.hosts else {
        return next.run(request).await;
    };
    // Probes address the machine however they like, and these answers reveal nothing.
    if matches!(request.uri().path(), "/healthz" | "/readyz") {
        return next.run(request).await;
    }
    let host = request
        .headers()
        .get(header::HOST)
        .map(|h| h.to_str().unwrap_or("\u{fffd}"))
        .or_else(|| request.uri().authority().map(|a| a.as_str()));
    match host {
        Some(host) if !hosts.allows(host) => ApiError::new(
            ErrorCode::MisdirectedRequest,
            format!(
                "this tutor does not answer to the host `{}`; add it to `allowed_hosts` in tutor.toml if it should",
                crate::telemetry::untrusted(host)
            ),
        )
        .into_response(),
        _ => next.run(request).await,
    }
}

/// Wraps API routes in, from the outside in: the origin check, keys, then rate limits (in
/// Redis when it is configured, else per process).
fn guarded(routes: OpenApiRouter<AppState>, state: &AppState) -> OpenApiRouter<AppState> {
    let routes = match (&state.limits, &state.shared) {
        (Some(limits), Some(shared)) => routes.route_layer(middleware::from_fn_with_state(
            Arc::new(guard::SharedLimiter::new(limits, shared.clone())),
            guard::shared_rate_limit,
        )),
        (Some(limits), None) => {
            let config = GovernorConfigBuilder::default()
                .key_extractor(guard::CallerKey::new(limits))
                .period(Duration::from_secs(60) / limits.per_minute.max(1))
                .burst_size(limits.burst.max(1))
                .finish()
                .map(Arc::new);
            match config {
                Some(config) => routes
                    .route_layer(GovernorLayer::new(config).error_handler(guard::rate_limited)),
                None => routes,
            }
        }
        (None, _) => routes,
    };
    routes
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            guard::authenticate,
        ))
        .route_layer(middleware::from_fn_with_state(state.clone(), check_origin))
}

/// Counts every request by route template (never the raw path), method and status.
async fn track(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_string();
    // Clients may send any method token: only the standard ones get their own series.
    let method = match *request.method() {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    };
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    crate::telemetry::request(
        &route,
        method,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// Refuses, clearly, browser requests from origins that are neither the tutor's own nor
/// listed in `TUTOR_CORS_ORIGINS`. Requests without an `Origin` (servers, curl) pass.
async fn check_origin(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(origin) = request
        .headers()
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .map(|o| o.trim_end_matches('/').to_string())
    else {
        return next.run(request).await;
    };
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let same_origin = origin
        .split_once("://")
        .is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(host));
    if same_origin || state.origin_allowed(&origin) {
        return next.run(request).await;
    }
    let mut response = ApiError::new(
        ErrorCode::OriginNotAllowed,
        format!("pages from {origin} may not use this tutor; add the origin to TUTOR_CORS_ORIGINS"),
    )
    .into_response();
    // Let the page's script read the refusal instead of seeing an opaque network error.
    if let Ok(value) = HeaderValue::from_str(&origin) {
        response
            .headers_mut()
            .insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
    }
    response
}

/// Serves the router on `listener` until `shutdown` resolves, then lets in-flight requests
/// finish.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, state, server::Limits::default(), shutdown).await
}

/// [`serve`] with other connection limits.
pub async fn serve_with(
    listener: TcpListener,
    mut state: AppState,
    limits: server::Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut also = Vec::new();
    if let Some(lti) = &state.lti
        && let Ok(url) = reqwest::Url::parse(lti.settings().base_url())
        && let Some(host) = url.host_str()
    {
        also.push(host.to_string());
    }
    state.fields().hosts =
        HostAllowlist::new(listener.local_addr()?, &state.allowed_hosts, &also).map(Arc::new);
    server::serve(listener, router(state), limits, shutdown).await
}
