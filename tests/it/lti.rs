//! LTI 1.3 against a fake platform: its own RSA key, its JWKS on 127.0.0.1, freshly signed
//! id_tokens. The full flow (login → redirect → launch → lesson page → a question answered
//! with the session token), each rejection with its reason, and deep linking whose response
//! verifies against the tool's published keys.

use crate::helpers::{App, spawn_app_with};
use axum::Json;
use axum::extract::State;
use axum::routing::get;
use base64::Engine;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tutor::config::ApiKey;
use tutor::http::{Keys, key_digest_hex};
use tutor::lti::{Lti, LtiSettings, Registration};

pub(crate) const TOOL_URL: &str = "https://tutor.test";
pub(crate) const ISSUER: &str = "https://lms.test";
pub(crate) const CLIENT_ID: &str = "tutor-client";
pub(crate) const DEPLOYMENT: &str = "deployment-1";
const LESSON: &str = "what-open-means";
const LTI: &str = "https://purl.imsglobal.org/spec/lti/claim/";

/// A platform key pair, made with nothing of the tool's but a temp PEM file.
pub(crate) struct PlatformKey {
    kid: String,
    pem: Vec<u8>,
    encoding: EncodingKey,
    jwk: Value,
}

impl PlatformKey {
    fn new(kid: &str) -> PlatformKey {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = tutor::lti::keys::generate(dir.path()).expect("RSA key");
        let pem = std::fs::read(path).expect("PEM");
        let encoding = EncodingKey::from_rsa_pem(&pem).expect("RSA PEM");
        let mut jwk = serde_json::to_value(
            Jwk::from_encoding_key(&encoding, Algorithm::RS256).expect("public part"),
        )
        .expect("JWK JSON");
        jwk["kid"] = json!(kid);
        jwk["use"] = json!("sig");
        PlatformKey {
            kid: kid.to_string(),
            pem,
            encoding,
            jwk,
        }
    }

    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("signed")
    }
}

/// The fake platform: serves its JWK set and counts how often it is fetched.
pub(crate) struct Platform {
    base: String,
    keys: Arc<Mutex<Vec<Value>>>,
    fetches: Arc<AtomicUsize>,
    pub key: PlatformKey,
}

type PlatformState = (Arc<Mutex<Vec<Value>>>, Arc<AtomicUsize>);

async fn serve_jwks(State((keys, fetches)): State<PlatformState>) -> Json<Value> {
    fetches.fetch_add(1, Ordering::SeqCst);
    let keys = keys.lock().expect("keys").clone();
    Json(json!({ "keys": keys }))
}

impl Platform {
    pub async fn start() -> Platform {
        let key = PlatformKey::new("platform-key-1");
        let keys = Arc::new(Mutex::new(vec![
            // A key of another kind must not hide the RSA one.
            json!({"kty": "EC", "crv": "P-256", "kid": "ec-key", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}),
            key.jwk.clone(),
        ]));
        let fetches = Arc::new(AtomicUsize::new(0));
        let app = axum::Router::new()
            .route("/jwks", get(serve_jwks))
            .with_state((keys.clone(), fetches.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind platform");
        let addr = listener.local_addr().expect("platform addr");
        tokio::spawn(async move { axum::serve(listener, app).await.expect("platform serves") });
        Platform {
            base: format!("http://{addr}"),
            keys,
            fetches,
            key,
        }
    }

    pub fn registration(&self) -> Registration {
        Registration {
            name: Some("Test LMS".to_string()),
            issuer: ISSUER.to_string(),
            client_id: CLIENT_ID.to_string(),
            auth_url: format!("{}/auth", self.base),
            jwks_url: format!("{}/jwks", self.base),
            deployments: vec![DEPLOYMENT.to_string()],
        }
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    /// The claims of a deep-linking request with `nonce` and these settings.
    fn deep_linking(&self, nonce: &str, settings: Value) -> Value {
        let mut claims = self.resource_link(nonce);
        let map = claims.as_object_mut().expect("claims");
        map.remove(&format!("{LTI}resource_link"));
        map.remove(&format!("{LTI}custom"));
        map.insert(format!("{LTI}message_type"), json!("LtiDeepLinkingRequest"));
        map.insert(
            "https://purl.imsglobal.org/spec/lti-dl/claim/deep_linking_settings".to_string(),
            settings,
        );
        claims
    }

    /// The claims of a valid resource link launch with `nonce`.
    pub fn resource_link(&self, nonce: &str) -> Value {
        let now = jsonwebtoken::get_current_timestamp();
        json!({
            "iss": ISSUER,
            "aud": CLIENT_ID,
            "azp": CLIENT_ID,
            "sub": "learner-42",
            "iat": now,
            "exp": now + 300,
            "nonce": nonce,
            format!("{LTI}message_type"): "LtiResourceLinkRequest",
            format!("{LTI}version"): "1.3.0",
            format!("{LTI}deployment_id"): DEPLOYMENT,
            format!("{LTI}target_link_uri"): format!("{TOOL_URL}/lti/launch"),
            format!("{LTI}resource_link"): {"id": "link-1", "title": "Open models"},
            format!("{LTI}roles"): ["http://purl.imsglobal.org/vocab/lis/v2/membership#Learner"],
            format!("{LTI}custom"): {"lesson_id": LESSON},
            format!("{LTI}context"): {"id": "course-1", "title": "AI Literacy"},
        })
    }
}

/// The tutor with LTI for `platform`, API keys required (so only the session token lets the
/// widget in).
async fn tool(platform: &Platform) -> (App, tempfile::TempDir) {
    let keys_dir = tempfile::tempdir().expect("keys dir");
    let settings = LtiSettings {
        url: TOOL_URL.to_string(),
        keys_dir: keys_dir.path().to_path_buf(),
        session_minutes: 30,
        platforms: vec![platform.registration()],
    };
    let lti = Lti::new(settings).expect("LTI tool");
    let keys = Keys::new(&[ApiKey {
        name: "lms-backend".to_string(),
        // A key that looks like a JWT must still work as a key.
        sha256: key_digest_hex("server.secret.key"),
        origins: None,
    }])
    .expect("keys");
    let app = spawn_app_with(
        None,
        |c| c,
        move |state| state.with_keys(keys).with_lti(Some(lti)),
    )
    .await;
    (app, keys_dir)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

fn form(pairs: &[(&str, &str)]) -> String {
    let mut url = reqwest::Url::parse("http://form.invalid/").expect("url");
    url.query_pairs_mut().extend_pairs(pairs);
    url.query().unwrap_or_default().to_string()
}

/// A login that went through: the state, the nonce sent to the platform, the cookie set.
pub(crate) struct Login {
    pub state: String,
    pub nonce: String,
    pub cookie: String,
}

async fn login(app: &App) -> Login {
    login_at(&app.base).await
}

/// Logs in at the tool whose base URL is `base`.
pub(crate) async fn login_at(base: &str) -> Login {
    let response = client()
        .get(format!("{base}/lti/login"))
        .query(&[
            ("iss", ISSUER),
            ("login_hint", "user-42"),
            ("target_link_uri", &format!("{TOOL_URL}/lti/launch")),
            ("lti_message_hint", "hint-7"),
            ("client_id", CLIENT_ID),
            ("lti_deployment_id", DEPLOYMENT),
        ])
        .send()
        .await
        .expect("login sent");
    assert_eq!(response.status().as_u16(), 302, "login redirects");
    let location = location_of(&response);
    let set_cookie = response.headers()[reqwest::header::SET_COOKIE]
        .to_str()
        .expect("cookie")
        .to_string();
    let url = reqwest::Url::parse(&location).expect("redirect URL");
    let param = |name: &str| {
        url.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
            .unwrap_or_else(|| panic!("redirect lacks {name}: {location}"))
    };
    assert_eq!(
        (url.host_str(), url.path()),
        (Some("127.0.0.1"), "/auth"),
        "to the platform's auth URL"
    );
    assert_eq!(param("scope"), "openid");
    assert_eq!(param("response_type"), "id_token");
    assert_eq!(param("response_mode"), "form_post");
    assert_eq!(param("prompt"), "none");
    assert_eq!(param("client_id"), CLIENT_ID);
    assert_eq!(param("redirect_uri"), format!("{TOOL_URL}/lti/launch"));
    assert_eq!(param("login_hint"), "user-42");
    assert_eq!(param("lti_message_hint"), "hint-7");
    let state = param("state");
    let nonce = param("nonce");
    assert!(state.len() >= 32 && nonce.len() >= 32 && state != nonce);
    for attribute in ["SameSite=None", "Secure", "HttpOnly"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    let cookie = set_cookie
        .split(';')
        .next()
        .expect("cookie pair")
        .to_string();
    assert!(cookie.starts_with("__Host-tutor_lti_"), "{cookie}");
    assert!(
        !cookie.contains(&nonce),
        "the cookie is its own secret, not the nonce: {cookie}"
    );
    assert!(
        set_cookie.contains("Path=/;"),
        "__Host- cookies live at /: {set_cookie}"
    );
    Login {
        state,
        nonce,
        cookie,
    }
}

/// Posts a launch as the platform's auto-submitted form does.
async fn post_launch(
    app: &App,
    state: &str,
    cookie: Option<&str>,
    id_token: &str,
) -> reqwest::Response {
    post_launch_at(&app.base, state, cookie, id_token).await
}

/// Posts a launch to the tool whose base URL is `base`.
pub(crate) async fn post_launch_at(
    base: &str,
    state: &str,
    cookie: Option<&str>,
    id_token: &str,
) -> reqwest::Response {
    let mut request = client()
        .post(format!("{base}/lti/launch"))
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(form(&[("id_token", id_token), ("state", state)]));
    if let Some(cookie) = cookie {
        request = request.header(reqwest::header::COOKIE, cookie);
    }
    request.send().await.expect("launch sent")
}

/// Posts a launch and follows its redirect, as a browser would; returns the status, the failed
/// check (if any) and the page.
async fn launch(
    app: &App,
    state: &str,
    cookie: Option<&str>,
    id_token: &str,
) -> (u16, String, String) {
    let mut response = post_launch(app, state, cookie, id_token).await;
    if response.status() == reqwest::StatusCode::SEE_OTHER {
        let location = location_of(&response);
        response = client()
            .get(format!("{}{location}", app.base))
            .send()
            .await
            .expect("redirect followed");
    }
    let status = response.status().as_u16();
    let check = response
        .headers()
        .get("x-tutor-lti-check")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (status, check, response.text().await.expect("page"))
}

/// Where a redirect points.
fn location_of(response: &reqwest::Response) -> String {
    response.headers()[reqwest::header::LOCATION]
        .to_str()
        .expect("location")
        .to_string()
}

fn attribute(html: &str, name: &str) -> Option<String> {
    let (_, from) = html.split_once(&format!("{name}=\""))?;
    let (value, _) = from.split_once('"')?;
    // Undo the template's HTML escaping, as a browser would.
    Some(
        value
            .replace("&#x2f;", "/")
            .replace("&quot;", "\"")
            .replace("&amp;", "&"),
    )
}

#[tokio::test]
async fn a_resource_link_launch_opens_the_lesson_and_its_token_answers_questions() {
    let platform = Platform::start().await;
    let (app, _keys) = tool(&platform).await;
    let login = login(&app).await;
    let id_token = platform.key.sign(&platform.resource_link(&login.nonce));
    // The launch redirects (post/redirect/get) to the lesson page, the token in the fragment.
    let launched = post_launch(&app, &login.state, Some(&login.cookie), &id_token).await;
    assert_eq!(launched.status().as_u16(), 303);
    let location = location_of(&launched);
    let cleared = launched.headers()[reqwest::header::SET_COOKIE]
        .to_str()
        .expect("cookie")
        .to_string();
    assert!(
        cleared.contains("Max-Age=0")
            && login
                .cookie
                .starts_with(cleared.split('=').next().unwrap_or("-")),
        "the spent state cookie is cleared: {cleared}"
    );
    let (path, fragment) = location.split_once('#').expect("a fragment");
    assert_eq!(path, format!("/lti/lessons/{LESSON}"));
    let token = fragment
        .strip_prefix("session=")
        .expect("the session token")
        .to_string();
    // The page is a GET: reloading it is harmless.
    for _ in 0..2 {
        let response = client()
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .expect("page");
        assert_eq!(response.status().as_u16(), 200);
        assert_eq!(
            response.headers()[reqwest::header::CACHE_CONTROL],
            "no-store"
        );
    }
    let (status, check, _) = launch(&app, &login.state, Some(&login.cookie), &id_token).await;
    assert_eq!(check, "nonce", "the same launch posted again is a replay");
    assert_eq!(status, 401);
    let page = client()
        .get(format!("{}{path}", app.base))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("text");
    assert!(
        page.contains("What Open Means for AI Models"),
        "the lesson page"
    );
    assert!(page.contains(&format!("data-lesson=\"{LESSON}\"")));
    assert!(
        !page.contains("All lessons"),
        "no links out of the LMS frame"
    );
    assert!(
        page.contains("location.hash") && page.contains("dataset.token"),
        "the page hands the fragment's token to the widget"
    );

    let ask = |token: Option<String>, lesson: &'static str| {
        let app_base = app.base.clone();
        async move {
            let mut request = reqwest::Client::new()
                .post(format!("{app_base}/v1/chat"))
                .json(&json!({"lesson_id": lesson, "message": "What does open weights mean?"}));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.expect("chat sent");
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.expect("JSON"))
        }
    };
    let (status, answer) = ask(Some(token.clone()), LESSON).await;
    assert_eq!(status, 200, "{answer}");
    assert!(
        !answer["answer"].as_str().unwrap_or("").is_empty(),
        "{answer}"
    );
    assert!(
        answer["citations"]
            .as_array()
            .is_some_and(|c| !c.is_empty()),
        "{answer}"
    );

    let (status, body) = ask(None, LESSON).await;
    assert_eq!(status, 401, "keys are required without a session: {body}");
    let (status, body) = ask(Some("server.secret.key".to_string()), "hybrid-routing").await;
    assert_eq!(
        status, 200,
        "server keys work beside sessions, for any lesson: {body}"
    );
    let (status, body) = ask(Some(token.clone()), "hybrid-routing").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );
    let mut tampered = token.clone();
    tampered.push('x');
    let (status, body) = ask(Some(tampered), LESSON).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("session")),
        "a bad session says so: {body}"
    );

    // Everything a session can call stays within its lesson.
    let get = |path: String, bearer: String| {
        let base = app.base.clone();
        async move {
            let response = reqwest::Client::new()
                .get(format!("{base}{path}"))
                .bearer_auth(bearer)
                .send()
                .await
                .expect("sent");
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.expect("JSON"))
        }
    };
    let (status, body) = get(
        "/v1/search?q=routing&lesson_id=hybrid-routing".to_string(),
        token.clone(),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );
    let (status, body) = get("/v1/search?q=open%20weights".to_string(), token.clone()).await;
    assert_eq!(status, 200, "{body}");
    let hits = body["hits"].as_array().expect("hits");
    assert!(!hits.is_empty());
    assert!(hits.iter().all(|h| h["lesson_id"] == LESSON), "{body}");
    let (status, body) = get("/v1/lessons/hybrid-routing".to_string(), token.clone()).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );
    let (status, body) = get(format!("/v1/lessons/{LESSON}"), token.clone()).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = get("/v1/lessons".to_string(), token.clone()).await;
    assert_eq!(status, 200, "{body}");
    let listed: Vec<&str> = body["lessons"]
        .as_array()
        .expect("lessons")
        .iter()
        .filter_map(|l| l["id"].as_str())
        .collect();
    assert_eq!(listed, vec![LESSON]);
    let (status, server_lists) =
        get("/v1/lessons".to_string(), "server.secret.key".to_string()).await;
    assert_eq!(status, 200);
    assert!(server_lists["lessons"].as_array().expect("lessons").len() > 1);

    // Feedback: on its own lesson's answer, yes; on another lesson's, no.
    let (_, other) = ask(Some("server.secret.key".to_string()), "hybrid-routing").await;
    let rate = |answer_id: Value| {
        let base = app.base.clone();
        let token = token.clone();
        async move {
            let response = reqwest::Client::new()
                .post(format!("{base}/v1/feedback"))
                .bearer_auth(token)
                .json(&json!({"answer_id": answer_id, "rating": "down"}))
                .send()
                .await
                .expect("sent");
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.expect("JSON"))
        }
    };
    let (status, body) = rate(other["answer_id"].clone()).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );
    let (status, body) = rate(answer["answer_id"].clone()).await;
    assert_eq!(status, 200, "{body}");
}

/// A change to a valid launch's claims.
type ClaimChange = Box<dyn Fn(&mut Value)>;

#[tokio::test]
async fn every_failed_check_is_refused_with_its_reason() {
    let platform = Platform::start().await;
    let (app, _keys) = tool(&platform).await;

    // Wrong state: the cookie belongs to another login.
    let first = login(&app).await;
    let second = login(&app).await;
    let token = platform.key.sign(&platform.resource_link(&first.nonce));
    let (status, check, page) = launch(&app, &first.state, Some(&second.cookie), &token).await;
    assert_eq!((status, check.as_str()), (401, "state"), "{page}");
    assert!(page.contains("This lesson could not be opened"));
    // No cookie at all (a browser that blocks it in the course page's frame): the page offers
    // to start the same login in a window of its own, and that login works.
    let (status, check, page) = launch(&app, &first.state, None, &token).await;
    assert_eq!((status, check.as_str()), (401, "state"));
    let restart = attribute(&page, "class=\"button\" href").expect("a link to start again");
    let restart = reqwest::Url::parse(&restart).expect("URL");
    assert_eq!(restart.path(), "/lti/login");
    let again = client()
        .get(format!(
            "{}/lti/login?{}",
            app.base,
            restart.query().unwrap_or("")
        ))
        .send()
        .await
        .expect("login again");
    assert_eq!(
        again.status().as_u16(),
        302,
        "the restarted login redirects to the platform"
    );
    assert!(page.contains("new window"));
    // A state this tool never issued.
    let (_, check, _) = launch(&app, "forged-state", Some(&first.cookie), &token).await;
    assert_eq!(check, "state");

    // Replayed nonce: the same launch posted twice.
    let (status, check, _) = launch(&app, &first.state, Some(&first.cookie), &token).await;
    assert_eq!((status, check.as_str()), (200, ""));
    let (status, check, page) = launch(&app, &first.state, Some(&first.cookie), &token).await;
    assert_eq!((status, check.as_str()), (401, "nonce"), "{page}");
    assert!(page.contains("already used"));

    // A claim changed from a valid launch, signed properly, must fail `check`.
    let cases: Vec<(&str, ClaimChange)> = vec![
        (
            "expired",
            Box::new(|c: &mut Value| {
                let now = jsonwebtoken::get_current_timestamp();
                c["iat"] = json!(now - 3600);
                c["exp"] = json!(now - 600);
            }),
        ),
        (
            "issued_at",
            Box::new(|c: &mut Value| {
                // Still unexpired, but older than any login may last: a replay.
                let now = jsonwebtoken::get_current_timestamp();
                c["iat"] = json!(now - 1800);
                c["exp"] = json!(now + 600);
            }),
        ),
        (
            "audience",
            Box::new(|c: &mut Value| {
                c["aud"] = json!("someone-else");
                c["azp"] = json!("someone-else");
            }),
        ),
        (
            "deployment",
            Box::new(|c: &mut Value| {
                c[format!("{LTI}deployment_id")] = json!("deployment-9");
            }),
        ),
        (
            "version",
            Box::new(|c: &mut Value| {
                c[format!("{LTI}version")] = json!("1.1");
            }),
        ),
        (
            "claims",
            Box::new(|c: &mut Value| {
                c.as_object_mut()
                    .expect("claims")
                    .remove(&format!("{LTI}resource_link"));
            }),
        ),
        (
            "message_type",
            Box::new(|c: &mut Value| {
                c[format!("{LTI}message_type")] = json!("LtiSubmissionReviewRequest");
            }),
        ),
        (
            "issuer",
            Box::new(|c: &mut Value| {
                c["iss"] = json!("https://elsewhere.test");
            }),
        ),
        (
            "target_link_uri",
            Box::new(|c: &mut Value| {
                c[format!("{LTI}target_link_uri")] = json!("https://evil.example/lti/launch");
            }),
        ),
        (
            "target_link_uri",
            Box::new(|c: &mut Value| {
                // A page of the tool, but not the one the login named.
                c[format!("{LTI}target_link_uri")] = json!(format!("{TOOL_URL}/lti/lessons/x"));
            }),
        ),
    ];
    for (expected, change) in cases {
        let login = login(&app).await;
        let mut claims = platform.resource_link(&login.nonce);
        change(&mut claims);
        let token = platform.key.sign(&claims);
        let (status, check, page) = launch(&app, &login.state, Some(&login.cookie), &token).await;
        assert_eq!(check, expected, "{page}");
        assert!(status == 401 || status == 400, "{expected}: {status}");
        assert!(page.contains(expected), "the page names the check");
    }

    // The nonce of another login.
    let login_a = login(&app).await;
    let token = platform.key.sign(&platform.resource_link("made-up-nonce"));
    let (_, check, _) = launch(&app, &login_a.state, Some(&login_a.cookie), &token).await;
    assert_eq!(check, "nonce");

    // Operators see launches by outcome.
    let metrics = reqwest::get(format!("{}/metrics", app.base))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for outcome in ["resource_link", "state", "nonce", "expired", "audience"] {
        assert!(
            metrics.contains(&format!(
                "tutor_lti_launches_total{{outcome=\"{outcome}\"}}"
            )),
            "{outcome} counted"
        );
    }
}

#[tokio::test]
async fn forged_algorithms_and_unknown_keys_are_refused() {
    let platform = Platform::start().await;
    let (app, _keys) = tool(&platform).await;
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());

    // alg: none, unsigned.
    let login_none = login(&app).await;
    let claims = platform.resource_link(&login_none.nonce);
    let unsigned = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT", "kid": platform.key.kid})),
        b64(&claims)
    );
    let (status, check, page) =
        launch(&app, &login_none.state, Some(&login_none.cookie), &unsigned).await;
    assert_eq!((status, check.as_str()), (401, "algorithm"), "{page}");

    // HS256, "signed" with the platform's public key as the secret.
    let login_hs = login(&app).await;
    let public_pem = {
        use aws_lc_rs::encoding::AsDer;
        use aws_lc_rs::signature::KeyPair;
        let private = pem::parse(&platform.key.pem).expect("pem");
        let pair = aws_lc_rs::rsa::KeyPair::from_pkcs8(private.contents()).expect("pkcs8");
        let public = pair.public_key().as_der().expect("public der");
        pem::encode(&pem::Pem::new("PUBLIC KEY", public.as_ref().to_vec())).into_bytes()
    };
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(platform.key.kid.clone());
    let hs = jsonwebtoken::encode(
        &header,
        &platform.resource_link(&login_hs.nonce),
        &EncodingKey::from_secret(&public_pem),
    )
    .expect("HS256 token");
    let (status, check, _) = launch(&app, &login_hs.state, Some(&login_hs.cookie), &hs).await;
    assert_eq!((status, check.as_str()), (401, "algorithm"));

    // No kid.
    let login_nokid = login(&app).await;
    let nokid = jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        &platform.resource_link(&login_nokid.nonce),
        &platform.key.encoding,
    )
    .expect("token");
    let (_, check, _) = launch(&app, &login_nokid.state, Some(&login_nokid.cookie), &nokid).await;
    assert_eq!(check, "kid");

    // A valid launch fetches the key set once.
    let ok = login(&app).await;
    let token = platform.key.sign(&platform.resource_link(&ok.nonce));
    let (status, _, _) = launch(&app, &ok.state, Some(&ok.cookie), &token).await;
    assert_eq!(status, 200);
    assert_eq!(platform.fetches(), 1, "keys are fetched once and cached");

    // An unknown kid (signed by a key the platform never published) refetches once, then fails.
    let stranger = PlatformKey::new("not-published");
    let login_unknown = login(&app).await;
    let token = stranger.sign(&platform.resource_link(&login_unknown.nonce));
    let (status, check, page) = launch(
        &app,
        &login_unknown.state,
        Some(&login_unknown.cookie),
        &token,
    )
    .await;
    assert_eq!((status, check.as_str()), (401, "key"), "{page}");
    assert_eq!(platform.fetches(), 2, "one refetch for the unknown kid");
    let again = login(&app).await;
    let token = stranger.sign(&platform.resource_link(&again.nonce));
    let (_, check, _) = launch(&app, &again.state, Some(&again.cookie), &token).await;
    assert_eq!(check, "key");
    assert_eq!(
        platform.fetches(),
        2,
        "no second refetch within the cooldown"
    );

    // A token signed with the right kid but another key fails the signature check.
    let impostor = PlatformKey::new(&platform.key.kid);
    let login_sig = login(&app).await;
    let token = impostor.sign(&platform.resource_link(&login_sig.nonce));
    let (_, check, _) = launch(&app, &login_sig.state, Some(&login_sig.cookie), &token).await;
    assert_eq!(check, "signature");
}

#[tokio::test]
async fn a_platform_key_rotation_is_picked_up_by_one_refetch() {
    let platform = Platform::start().await;
    let (app, _keys) = tool(&platform).await;
    let first = login(&app).await;
    let token = platform.key.sign(&platform.resource_link(&first.nonce));
    assert_eq!(
        launch(&app, &first.state, Some(&first.cookie), &token)
            .await
            .0,
        200
    );

    let rotated = PlatformKey::new("platform-key-2");
    platform
        .keys
        .lock()
        .expect("keys")
        .push(rotated.jwk.clone());
    let second = login(&app).await;
    let token = rotated.sign(&platform.resource_link(&second.nonce));
    let (status, check, page) = launch(&app, &second.state, Some(&second.cookie), &token).await;
    assert_eq!((status, check.as_str()), (200, ""), "{page}");
    assert_eq!(platform.fetches(), 2);
}

#[tokio::test]
async fn logins_from_unknown_platforms_or_deployments_are_refused() {
    let platform = Platform::start().await;
    let (app, _keys) = tool(&platform).await;
    let target = format!("{TOOL_URL}/lti/launch");
    for (query, expected) in [
        (
            vec![
                ("iss", "https://unknown.test"),
                ("login_hint", "u"),
                ("target_link_uri", target.as_str()),
            ],
            "issuer",
        ),
        (
            vec![
                ("iss", ISSUER),
                ("login_hint", "u"),
                ("target_link_uri", target.as_str()),
                ("lti_deployment_id", "nope"),
            ],
            "deployment",
        ),
        (
            vec![("iss", ISSUER), ("target_link_uri", target.as_str())],
            "login",
        ),
        (
            vec![
                ("iss", ISSUER),
                ("login_hint", "u"),
                ("target_link_uri", "https://evil.test/"),
            ],
            "login",
        ),
    ] {
        let response = client()
            .post(format!("{}/lti/login", app.base))
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(form(&query))
            .send()
            .await
            .expect("login sent");
        assert_eq!(
            response
                .headers()
                .get("x-tutor-lti-check")
                .and_then(|v| v.to_str().ok()),
            Some(expected)
        );
        assert!(
            response
                .headers()
                .get(reqwest::header::SET_COOKIE)
                .is_none()
        );
        assert!(
            response
                .text()
                .await
                .expect("page")
                .contains("could not be opened")
        );
    }
}

#[tokio::test]
async fn deep_linking_returns_a_signed_link_that_verifies_against_the_tool_jwks() {
    let platform = Platform::start().await;
    let (app, _keys) = tool(&platform).await;
    let login = login(&app).await;
    let claims = platform.deep_linking(
        &login.nonce,
        json!({
            "deep_link_return_url": "https://lms.test/deep-link-return?course=1",
            "accept_types": ["ltiResourceLink"],
            "accept_presentation_document_targets": ["iframe", "window"],
            "data": "opaque-platform-data",
        }),
    );
    let token = platform.key.sign(&claims);
    let (status, check, picker) = launch(&app, &login.state, Some(&login.cookie), &token).await;
    assert_eq!((status, check.as_str()), (200, ""), "{picker}");
    assert!(picker.contains("Choose a lesson"));
    assert!(
        picker.contains(&format!("value=\"{LESSON}\"")),
        "every lesson is offered"
    );
    let context = attribute(&picker, "name=\"context\" value").expect("picker context");

    let pick = |context: String, lesson: &'static str| {
        let base = app.base.clone();
        async move {
            let response = client()
                .post(format!("{base}/lti/deep-link"))
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(form(&[("context", &context), ("lesson", lesson)]))
                .send()
                .await
                .expect("pick sent");
            (
                response.status().as_u16(),
                response.text().await.expect("page"),
            )
        }
    };
    let (status, _) = pick(context.clone(), "no-such-lesson").await;
    assert_eq!(status, 404);
    let (status, _) = pick(format!("{context}x"), LESSON).await;
    assert_eq!(status, 401, "a forged context is refused");
    let (status, page) = pick(context, LESSON).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(
        attribute(&page, "action").as_deref(),
        Some("https://lms.test/deep-link-return?course=1"),
        "the form posts to the platform's return URL"
    );
    let jwt = attribute(&page, "name=\"JWT\" value").expect("the response JWT");

    // Verify it the way a platform would: with the tool's published keys.
    let jwks: JwkSet = reqwest::get(format!("{}/.well-known/jwks.json", app.base))
        .await
        .expect("jwks")
        .json()
        .await
        .expect("JWK set");
    let header = jsonwebtoken::decode_header(&jwt).expect("header");
    assert_eq!(header.alg, Algorithm::RS256);
    let kid = header.kid.expect("kid");
    let jwk = jwks.find(&kid).expect("the signing key is published");
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[ISSUER]);
    validation.set_issuer(&[CLIENT_ID]);
    let claims = jsonwebtoken::decode::<Value>(
        &jwt,
        &DecodingKey::from_jwk(jwk).expect("decoding key"),
        &validation,
    )
    .expect("the response verifies")
    .claims;
    assert_eq!(
        claims[format!("{LTI}message_type")],
        "LtiDeepLinkingResponse"
    );
    assert_eq!(claims[format!("{LTI}version")], "1.3.0");
    assert_eq!(claims[format!("{LTI}deployment_id")], DEPLOYMENT);
    assert_eq!(
        claims["https://purl.imsglobal.org/spec/lti-dl/claim/data"],
        "opaque-platform-data"
    );
    let item = &claims["https://purl.imsglobal.org/spec/lti-dl/claim/content_items"][0];
    assert_eq!(item["type"], "ltiResourceLink");
    assert_eq!(item["custom"]["lesson_id"], LESSON);
    assert_eq!(
        item["url"],
        format!("{TOOL_URL}/lti/launch?lesson={LESSON}"),
        "the lesson is in the link too, for platforms that drop custom parameters"
    );
    assert_eq!(item["title"], "What Open Means for AI Models");
}

#[tokio::test]
async fn without_lti_configured_the_routes_say_so_and_the_key_set_is_empty() {
    let app = spawn_app_with(None, |c| c, |s| s).await;
    let response = client()
        .get(format!(
            "{}/lti/login?iss=x&login_hint=y&target_link_uri=z",
            app.base
        ))
        .send()
        .await
        .expect("login");
    assert_eq!(response.status().as_u16(), 404);
    assert!(
        response
            .text()
            .await
            .expect("page")
            .contains("not configured")
    );
    let set: Value = reqwest::get(format!("{}/.well-known/jwks.json", app.base))
        .await
        .expect("jwks")
        .json()
        .await
        .expect("JSON");
    assert_eq!(set, json!({"keys": []}));
    // Someone opening the launch URL in a browser is told where launches come from.
    let response = client()
        .get(format!("{}/lti/launch", app.base))
        .send()
        .await
        .expect("page");
    assert_eq!(response.status().as_u16(), 200);
    assert!(
        response
            .text()
            .await
            .expect("text")
            .contains("from your course")
    );
}

#[tokio::test]
async fn a_deep_linking_return_url_that_is_not_https_is_refused() {
    let platform = Platform::start().await;
    let (app, _keys) = tool(&platform).await;
    for url in [
        "javascript:alert(document.domain)",
        "http://lms.test/return",
    ] {
        let login = login(&app).await;
        let claims = platform.deep_linking(
            &login.nonce,
            json!({"deep_link_return_url": url, "accept_types": ["ltiResourceLink"]}),
        );
        let token = platform.key.sign(&claims);
        let (status, check, page) = launch(&app, &login.state, Some(&login.cookie), &token).await;
        assert_eq!((status, check.as_str()), (400, "claims"), "{url}: {page}");
    }
}

#[tokio::test]
async fn deep_linking_echoes_platform_data_that_is_a_json_object_unchanged() {
    let platform = Platform::start().await;
    let (app, _keys) = tool(&platform).await;
    let login = login(&app).await;
    let data = json!({"course": 17, "return": {"tab": "content"}, "tags": ["a", "b"]});
    let claims = platform.deep_linking(
        &login.nonce,
        json!({
            "deep_link_return_url": "https://lms.test/deep-link-return",
            "accept_types": ["ltiResourceLink"],
            "data": data,
        }),
    );
    let token = platform.key.sign(&claims);
    let (status, _, picker) = launch(&app, &login.state, Some(&login.cookie), &token).await;
    assert_eq!(status, 200, "{picker}");
    let context = attribute(&picker, "name=\"context\" value").expect("picker context");
    let response = client()
        .post(format!("{}/lti/deep-link", app.base))
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(form(&[("context", &context), ("lesson", LESSON)]))
        .send()
        .await
        .expect("pick sent");
    assert_eq!(response.status(), 200);
    let page = response.text().await.expect("page");
    let jwt = attribute(&page, "name=\"JWT\" value").expect("the response JWT");
    let payload = jwt.split('.').nth(1).expect("payload");
    use base64::Engine as _;
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .expect("base64"),
    )
    .expect("claims");
    assert_eq!(
        claims["https://purl.imsglobal.org/spec/lti-dl/claim/data"], data,
        "the platform's data comes back exactly as sent"
    );
}

#[tokio::test]
async fn a_captured_id_token_cannot_be_redeemed_through_another_login() {
    let platform = Platform::start().await;
    let (app, _keys) = tool(&platform).await;
    // The victim's login and the token the platform issued for it (captured, unspent).
    let victim = login(&app).await;
    let captured = platform.key.sign(&platform.resource_link(&victim.nonce));
    // The attacker's own login, with the captured token and a cookie made from its nonce.
    let attacker = login(&app).await;
    let cookie_name = attacker.cookie.split('=').next().expect("cookie name");
    let forged_cookie = format!("{cookie_name}={}", victim.nonce);
    let (status, check, page) =
        launch(&app, &attacker.state, Some(&forged_cookie), &captured).await;
    assert_eq!((status, check.as_str()), (401, "state"), "{page}");
    // With the attacker's real cookie, the token's nonce is not the one that login issued.
    let (status, check, page) =
        launch(&app, &attacker.state, Some(&attacker.cookie), &captured).await;
    assert_eq!((status, check.as_str()), (401, "nonce"), "{page}");
    // The victim's own browser still can.
    let (status, check, page) = launch(&app, &victim.state, Some(&victim.cookie), &captured).await;
    assert_eq!((status, check.as_str()), (200, ""), "{page}");
}

#[tokio::test]
async fn a_hint_only_launch_turns_every_answer_into_a_hint() {
    let platform = Platform::start().await;
    let (app, _keys) = tool(&platform).await;
    let login = login(&app).await;
    let mut claims = platform.resource_link(&login.nonce);
    claims[format!("{LTI}custom")] = json!({"lesson_id": LESSON, "tutor_mode": "hint-only"});
    let id_token = platform.key.sign(&claims);
    let launched = post_launch(&app, &login.state, Some(&login.cookie), &id_token).await;
    assert_eq!(launched.status().as_u16(), 303);
    let location = location_of(&launched);
    let token = location
        .split_once("#session=")
        .expect("the session token")
        .1
        .to_string();
    let chat = |body: Value| {
        let request = client()
            .post(format!("{}/v1/chat", app.base))
            .bearer_auth(&token)
            .json(&body);
        async move {
            let response = request.send().await.expect("chat sent");
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.expect("JSON"))
        }
    };
    // An ordinary question: a hint, saying why.
    let (status, hint) =
        chat(json!({"lesson_id": LESSON, "message": "What does open weights mean?"})).await;
    assert_eq!(status, 200, "{hint}");
    assert_eq!(hint["kind"], "hint", "{hint}");
    assert_eq!(hint["hint"], "assessment");
    assert!(
        hint["answer"]
            .as_str()
            .is_some_and(|a| a.contains("assessment")),
        "{hint}"
    );
    assert!(
        hint["citations"].as_array().is_some_and(|c| c.len() == 1),
        "{hint}"
    );
    // A wrong reply to a quiz question is graded without the answer being quoted.
    let (_, asked) = chat(json!({"lesson_id": LESSON, "mode": "quiz"})).await;
    let item = asked["quiz"]["item_id"]
        .as_str()
        .expect("an item")
        .to_string();
    let (_, graded) = chat(
        json!({"lesson_id": LESSON, "mode": "quiz", "quiz_item": item, "message": "no idea at all"}),
    )
    .await;
    assert_eq!(graded["grade"], "not_yet", "{graded}");
    assert!(
        !graded["answer"]
            .as_str()
            .is_some_and(|a| a.contains("The lesson says")),
        "nothing is quoted during an assessment: {graded}"
    );
}
