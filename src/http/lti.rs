//! The LTI 1.3 routes: OIDC login initiation, launch, the deep-linking picker's answer, and
//! the tool's public keys. The checks live in [`crate::lti`]; this module turns their outcomes
//! into redirects, cookies and pages (every refusal is a readable page that names the failed
//! check, in the `X-Tutor-Lti-Check` header too, and a log line).

use super::{AppState, pages};
use crate::lti::{Check, Launch, LoginRequest, Lti, Rejection, STATE_TTL, state_cookie_name};
use axum::Json;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::context;
use serde::Deserialize;
use std::sync::Arc;

/// What the platform posts to the launch URL.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct LaunchForm {
    /// The signed LTI message.
    #[serde(default)]
    id_token: String,
    /// The `state` of the login this launch finishes.
    #[serde(default)]
    state: String,
    /// Set instead of `id_token` when the platform refused the login.
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

/// The lesson picker's choice.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct PickForm {
    /// The picker's signed context.
    context: String,
    /// The chosen lesson's id.
    lesson: String,
}

/// Why a refusal happened, as a page.
fn refusal(rejection: &Rejection, issuer: Option<&str>, state: &AppState) -> Response {
    tracing::warn!(
        check = rejection.check.as_str(),
        issuer = %crate::telemetry::untrusted(issuer.unwrap_or("-")),
        reason = %crate::telemetry::untrusted(&rejection.message),
        "LTI launch rejected"
    );
    crate::telemetry::lti_launch(rejection.check.as_str());
    let status = match rejection.check {
        Check::Login | Check::Claims => StatusCode::BAD_REQUEST,
        Check::Lesson | Check::NotConfigured => StatusCode::NOT_FOUND,
        Check::PlatformKeys => StatusCode::BAD_GATEWAY,
        _ => StatusCode::UNAUTHORIZED,
    };
    let advice = match rejection.check {
        Check::State if rejection.restart.is_some() => {
            "Open the lesson in a window of its own with the link below; it signs you in again through your course."
        }
        Check::State | Check::Nonce | Check::Expired | Check::Picker => {
            "Go back to your course and open the activity again. If this keeps happening, your browser may be blocking this tool's cookies: try opening the activity in a new window."
        }
        Check::Lesson => {
            "Ask your instructor to edit the activity and choose a lesson that exists in this tutor."
        }
        _ => {
            "Please tell your instructor or LMS administrator; the tool's log names the failed check."
        }
    };
    let mut response = pages::render(
        state,
        "lti-message.html",
        context! {
            title => "This lesson could not be opened",
            message => sentence(&rejection.message),
            check => rejection.check.as_str(),
            advice => advice,
            restart => rejection.restart,
        },
    );
    *response.status_mut() = status;
    if let Ok(value) = HeaderValue::from_str(rejection.check.as_str()) {
        response.headers_mut().insert("x-tutor-lti-check", value);
    }
    no_store(&mut response);
    response
}

/// `message` with a capital first letter and a full stop, for the page.
fn sentence(message: &str) -> String {
    let mut chars = message.chars();
    let mut text: String = chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default();
    if !text.ends_with('.') {
        text.push('.');
    }
    text
}

fn no_store(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

fn not_configured() -> Rejection {
    Rejection::new(
        Check::NotConfigured,
        "LTI is not configured on this tutor (add [lti] to tutor.toml)",
    )
}

fn form_error(error: &FormRejection) -> Rejection {
    Rejection::new(
        Check::Login,
        format!("the request's form cannot be read: {}", error.body_text()),
    )
}

/// The tool and the request's form, or why there are none.
fn tool_and_form<T>(
    state: &AppState,
    form: Result<Form<T>, FormRejection>,
) -> Result<(Arc<Lti>, T), Rejection> {
    let lti = state.lti.clone().ok_or_else(not_configured)?;
    let Form(form) = form.map_err(|e| form_error(&e))?;
    Ok((lti, form))
}

/// A token the tool could not sign: a server fault, logged, never the platform's.
fn signing_failed(what: &str, error: &str) -> Response {
    tracing::error!(%error, "cannot sign {what}");
    StatusCode::INTERNAL_SERVER_ERROR.into_response()
}

/// The state cookie's value for `state`, if the browser sent it.
fn state_cookie(headers: &HeaderMap, state: &str) -> Option<String> {
    let name = state_cookie_name(state);
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// `Set-Cookie` for a login's state. `SameSite=None; Secure` because the launch is a
/// cross-site POST from the platform; `Partitioned` so browsers that block third-party cookies
/// in iframes still keep it for this one embedding; named per state, so two launches in one
/// browser (two activities on one course page) do not overwrite each other.
fn set_state_cookie(state: &str, value: &str, max_age: u64) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "{}={value}; Path=/; Max-Age={max_age}; HttpOnly; Secure; SameSite=None; Partitioned",
        state_cookie_name(state)
    ))
    .ok()
}

/// OIDC login initiation: the platform sends the browser here first.
#[utoipa::path(method(get, post), path = "/lti/login", tag = "lti",
    request_body(content = LoginRequest, content_type = "application/x-www-form-urlencoded", description = "As a form (POST) or query (GET)"),
    responses(
        (status = 302, description = "To the platform's auth URL, with state and nonce; sets the state cookie"),
        (status = 400, content_type = "text/html", description = "A page naming what is wrong"),
        (status = 401, content_type = "text/html", description = "Unknown platform or deployment"),
    ))]
pub async fn login(
    State(state): State<AppState>,
    form: Result<Form<LoginRequest>, FormRejection>,
) -> Response {
    let (lti, request) = match tool_and_form(&state, form) {
        Ok(parts) => parts,
        Err(rejection) => return refusal(&rejection, None, &state),
    };
    match lti.login(&request) {
        Ok(redirect) => {
            let mut response = Redirect::to(&redirect.url).into_response();
            // `Redirect::to` answers 303; OIDC examples use 302, which every platform accepts.
            *response.status_mut() = StatusCode::FOUND;
            if let Some(cookie) =
                set_state_cookie(&redirect.state, &redirect.cookie, STATE_TTL.as_secs())
            {
                response.headers_mut().append(header::SET_COOKIE, cookie);
            }
            no_store(&mut response);
            response
        }
        Err(rejection) => refusal(&rejection, Some(&request.iss), &state),
    }
}

/// The launch: the platform posts the signed `id_token` here (the OIDC redirect URI).
#[utoipa::path(post, path = "/lti/launch", tag = "lti",
    request_body(content = LaunchForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "A resource link: to `/lti/lessons/{id}`, the session token in the fragment"),
        (status = 200, content_type = "text/html", description = "A deep-linking request: the lesson picker"),
        (status = 400, content_type = "text/html", description = "Malformed launch; the page and `X-Tutor-Lti-Check` name the failed check"),
        (status = 401, content_type = "text/html", description = "A failed check (state, algorithm, kid, issuer, audience, key, signature, expired, issued_at, nonce, deployment, version, message_type)"),
        (status = 404, content_type = "text/html", description = "The link's lesson is not in the catalog"),
    ))]
pub async fn launch(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<LaunchForm>, FormRejection>,
) -> Response {
    let (lti, form) = match tool_and_form(&state, form) {
        Ok(parts) => parts,
        Err(rejection) => return refusal(&rejection, None, &state),
    };
    if let Some(error) = &form.error {
        let rejection = Rejection::new(
            Check::Platform,
            format!(
                "the platform did not sign you in: {error}{}",
                form.error_description
                    .as_deref()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default()
            ),
        );
        return refusal(&rejection, None, &state);
    }
    if form.id_token.is_empty() {
        let rejection = Rejection::new(Check::Claims, "the launch carries no id_token");
        return refusal(&rejection, None, &state);
    }
    let cookie = state_cookie(&headers, &form.state);
    let launched = lti
        .launch(&form.state, &form.id_token, cookie.as_deref())
        .await;
    let mut response = match launched {
        Ok(Launch::ResourceLink(launch)) => {
            let Some(lesson_id) = launch.lesson_id.clone() else {
                let rejection = Rejection::new(
                    Check::Lesson,
                    "this link does not say which lesson to open (no `lesson_id` custom parameter)",
                );
                return refusal(&rejection, Some(&launch.issuer), &state);
            };
            let known = state
                .tutor()
                .map(|t| t.retriever().catalog().get(&lesson_id).is_some());
            match known {
                Ok(true) => {}
                Ok(false) => {
                    let rejection = Rejection::new(
                        Check::Lesson,
                        format!(
                            "this link opens lesson `{lesson_id}`, which is not in this tutor's catalog"
                        ),
                    );
                    return refusal(&rejection, Some(&launch.issuer), &state);
                }
                Err(error) => return error.into_response(),
            }
            let token = match lti.session_token(&launch, &lesson_id) {
                Ok(token) => token,
                Err(error) => return signing_failed("an LTI session", &error),
            };
            tracing::info!(
                platform = %crate::telemetry::untrusted(&launch.platform),
                lesson = %crate::telemetry::untrusted(&lesson_id),
                "LTI launch"
            );
            crate::telemetry::lti_launch("resource_link");
            // Post/redirect/get: the lesson page is a GET a reload repeats harmlessly. The token
            // rides in the fragment, which browsers never send to a server nor in a Referer.
            let mut response =
                Redirect::to(&format!("/lti/lessons/{lesson_id}#session={token}")).into_response();
            *response.status_mut() = StatusCode::SEE_OTHER;
            response
        }
        Ok(Launch::DeepLinking(context)) => {
            let token = match lti.picker_token(&context) {
                Ok(token) => token,
                Err(error) => return signing_failed("the lesson picker", &error),
            };
            let tutor = match state.tutor() {
                Ok(tutor) => tutor,
                Err(error) => return error.into_response(),
            };
            let lessons: Vec<minijinja::Value> = tutor
                .retriever()
                .catalog()
                .lessons
                .iter()
                .map(|l| context! { id => l.id, title => l.title, summary => l.summary, track => l.track })
                .collect();
            crate::telemetry::lti_launch("deep_linking");
            pages::render(
                &state,
                "lti-picker.html",
                context! { context => token, lessons => lessons, course => context.context_title },
            )
        }
        Err(rejection) => {
            let issuer = crate::lti::claimed_issuer(&form.id_token);
            return refusal(&rejection, issuer.as_deref(), &state);
        }
    };
    // The state is spent: forget it.
    if let Some(cookie) = set_state_cookie(&form.state, "", 0) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    no_store(&mut response);
    response
}

/// The lesson page a launch redirects to: the lesson and its tutor, standing alone in the
/// course page's frame; its widget takes the session token from the URL's fragment.
#[utoipa::path(get, path = "/lti/lessons/{id}", tag = "lti", params(("id" = String, Path, description = "Lesson id")),
    responses((status = 200, content_type = "text/html", description = "The lesson page"), (status = 404, description = "Unknown lesson")))]
pub async fn lesson(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let mut response = pages::lesson_page(&state, &id, true);
    no_store(&mut response);
    response
}

/// The launch URL opened directly (a bookmark, an administrator checking the address): a page
/// saying where launches come from.
#[utoipa::path(get, path = "/lti/launch", tag = "lti",
    responses((status = 200, content_type = "text/html", description = "A page saying that launches are posted by the LMS")))]
pub async fn launch_page(State(state): State<AppState>) -> Response {
    pages::render(
        &state,
        "lti-message.html",
        context! {
            title => "Open this lesson from your course",
            message => "This address receives launches from a learning platform (LTI 1.3); it cannot be opened on its own.",
            advice => "Go to your course in the LMS and open the activity there.",
        },
    )
}

/// The deep-linking picker's choice, returned to the platform as a signed
/// `LtiDeepLinkingResponse` in an auto-submitting form.
#[utoipa::path(post, path = "/lti/deep-link", tag = "lti",
    request_body(content = PickForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, content_type = "text/html", description = "A form that posts the `JWT` to the platform's return URL"),
        (status = 401, content_type = "text/html", description = "The picker's context is expired or not valid"),
        (status = 404, content_type = "text/html", description = "Unknown lesson"),
    ))]
pub async fn deep_link(
    State(state): State<AppState>,
    form: Result<Form<PickForm>, FormRejection>,
) -> Response {
    let (lti, form) = match tool_and_form(&state, form) {
        Ok(parts) => parts,
        Err(rejection) => return refusal(&rejection, None, &state),
    };
    let context = match lti.picker_context(&form.context) {
        Ok(context) => context,
        Err(rejection) => return refusal(&rejection, None, &state),
    };
    let tutor = match state.tutor() {
        Ok(tutor) => tutor,
        Err(error) => return error.into_response(),
    };
    let Some(lesson) = tutor.retriever().catalog().get(&form.lesson) else {
        let rejection = Rejection::new(
            Check::Lesson,
            format!("lesson `{}` is not in this tutor's catalog", form.lesson),
        );
        return refusal(&rejection, Some(&context.platform), &state);
    };
    let jwt = match lti.deep_link_response(&context, &lesson.id, &lesson.title) {
        Ok(jwt) => jwt,
        Err(error) => return signing_failed("the deep-linking response", &error),
    };
    tracing::info!(
        platform = %crate::telemetry::untrusted(&context.platform),
        lesson = %lesson.id,
        "LTI deep link chosen"
    );
    let mut response = pages::render(
        &state,
        "lti-return.html",
        context! { return_url => context.return_url, jwt => jwt, title => lesson.title },
    );
    no_store(&mut response);
    response
}

/// The tool's public keys, for platforms to verify what it signs.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "lti",
    responses((status = 200, content_type = "application/json", description = "A JWK set (`kid`, `alg: RS256`, `use: sig`); empty when LTI is not configured")))]
pub async fn jwks(State(state): State<AppState>) -> Response {
    let set = state.lti.as_ref().map_or_else(
        || serde_json::json!({ "keys": [] }),
        |lti| lti.jwks().clone(),
    );
    let mut response = Json(set).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}
