//! Two `tutor serve` replicas behind HAProxy, started with `deploy/haproxy.cfg`, sharing
//! PostgreSQL (the conversation log, ratings, used nonces) and Redis (rate limits, recent answer
//! ids, used nonces). Each is the real server from Debian's packages, installed with apt-get
//! when missing and started here on free loopback ports in a temporary directory.

use crate::cli::listening;
use crate::helpers::{PATIENCE, eventually, eventually_blocking, eventually_true, sample_lessons};
use crate::lti::{Platform, login_at, post_launch_at};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tutor::conversation_log::{
    AnswerId, ConversationId, LogStore, PostgresStore, RatingUpdate, Record,
};

const LESSON: &str = "what-open-means";
/// The limit every caller gets: per minute, and at once.
const LIMIT: u32 = 400;

// ---------------------------------------------------------------------------------------------
// Programs and processes

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/usr/bin", "/sbin", "/usr/local/bin"])
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.is_file())
}

/// The newest PostgreSQL server's `bin` folder from Debian's packages.
fn postgres_bin() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Installs PostgreSQL, Redis and HAProxy from Debian's packages when any is missing.
fn ensure_installed() {
    // Two tests of this file start at once: one installs while the other waits (two apt-gets at
    // once fail on dpkg's lock).
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut missing = Vec::new();
    if postgres_bin().is_none() {
        missing.push("postgresql");
    }
    if find_program("redis-server").is_none() {
        missing.push("redis-server");
    }
    if find_program("haproxy").is_none() {
        missing.push("haproxy");
    }
    if missing.is_empty() {
        return;
    }
    let sudo: &[&str] = if is_root() { &[] } else { &["sudo"] };
    let apt = |args: &[&str]| {
        let (program, rest) = match sudo {
            [] => ("apt-get", args.to_vec()),
            _ => ("sudo", [&["apt-get"], args].concat()),
        };
        let status = Command::new(program)
            .args(rest)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .expect("apt-get runs");
        assert!(status.success(), "apt-get {args:?} failed: {status}");
    };
    apt(&["update"]);
    apt(&[
        &[
            "install",
            "-y",
            "--no-install-recommends",
            // Another program's apt-get (a browser test installing Chromium) may hold the lock.
            "-o",
            "DPkg::Lock::Timeout=300",
        ],
        missing.as_slice(),
    ]
    .concat());
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn wait_for_port(port: u16, what: &str) {
    assert!(
        eventually_blocking(PATIENCE, || std::net::TcpStream::connect((
            "127.0.0.1",
            port
        ))
        .is_ok()),
        "{what} never listened on {port}"
    );
}

/// A child process, ended (and waited for) when dropped.
struct Process {
    child: Option<Child>,
}

impl Process {
    fn new(child: Child) -> Process {
        Process { child: Some(child) }
    }

    fn signal(&mut self, signal: &str) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args([&format!("-{signal}"), &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Sends SIGTERM and waits for the exit status.
    fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("the process runs");
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success());
        child.wait().expect("exits")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.signal("KILL");
    }
}

fn log_file(path: &Path) -> Stdio {
    Stdio::from(std::fs::File::create(path).expect("log file"))
}

/// A PostgreSQL cluster of our own. As root, the server runs as the `postgres` user (it
/// refuses to run as root).
struct Postgres {
    bin: PathBuf,
    data: PathBuf,
    log: PathBuf,
    port: u16,
    process: Process,
}

impl Postgres {
    /// The program, run as the `postgres` user when the test runs as root (directly, not
    /// through a wrapper, so signals reach the server itself).
    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin.join(program));
        if is_root() {
            use std::os::unix::process::CommandExt;
            let id = |flag: &str| -> u32 {
                let out = Command::new("id")
                    .args([flag, "postgres"])
                    .output()
                    .expect("id runs");
                String::from_utf8_lossy(&out.stdout)
                    .trim()
                    .parse()
                    .expect("the postgres user exists")
            };
            command.uid(id("-u")).gid(id("-g"));
        }
        command
    }

    fn start(dir: &Path) -> Postgres {
        let bin = postgres_bin().expect("PostgreSQL is installed");
        let data = dir.join("pg");
        std::fs::create_dir_all(&data).expect("pg dir");
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(&data)
                .status()
                .expect("chown");
            assert!(status.success());
        }
        let mut postgres = Postgres {
            bin,
            log: dir.join("postgres.log"),
            data,
            port: free_port(),
            process: Process { child: None },
        };
        let initdb = postgres
            .command("initdb")
            .args([
                "-U",
                "tutor",
                "-A",
                "trust",
                "--no-sync",
                "-E",
                "UTF8",
                "-D",
            ])
            .arg(&postgres.data)
            .stdout(Stdio::null())
            .output()
            .expect("initdb runs");
        assert!(
            initdb.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&initdb.stderr)
        );
        postgres.run();
        postgres
    }

    fn run(&mut self) {
        let child = self
            .command("postgres")
            .arg("-D")
            .arg(&self.data)
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(&self.data)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ])
            .stdout(Stdio::null())
            .stderr(log_file(&self.log))
            .spawn()
            .expect("postgres starts");
        self.process = Process::new(child);
        wait_for_port(self.port, "postgres");
        // Accepting connections comes a moment after listening.
        assert!(
            eventually_blocking(PATIENCE, || tokio::task::block_in_place(|| {
                PostgresStore::open(&self.url()).is_ok()
            })),
            "postgres never became ready"
        );
    }

    /// A fast shutdown (SIGINT): connections are closed, the server exits.
    fn stop(&mut self) {
        self.process.signal("INT");
    }

    fn url(&self) -> String {
        format!("postgres://tutor@127.0.0.1:{}/postgres", self.port)
    }
}

struct Redis {
    dir: PathBuf,
    port: u16,
    process: Process,
}

impl Redis {
    fn start(dir: &Path) -> Redis {
        let mut redis = Redis {
            dir: dir.to_path_buf(),
            port: free_port(),
            process: Process { child: None },
        };
        redis.run();
        redis
    }

    fn run(&mut self) {
        let child = Command::new(find_program("redis-server").expect("redis-server"))
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(&self.dir)
            .stdout(log_file(&self.dir.join("redis.log")))
            .stderr(Stdio::null())
            .spawn()
            .expect("redis starts");
        self.process = Process::new(child);
        wait_for_port(self.port, "redis");
    }

    fn stop(&mut self) {
        self.process.signal("TERM");
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

/// The status of a plain GET, read off the response's first line (no async runtime here).
fn status_of(addr: &str, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// A `tutor serve` replica.
struct Replica {
    base: String,
    process: Process,
    log: Option<std::thread::JoinHandle<String>>,
}

impl Replica {
    fn start(config: &Path) -> Replica {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tutor"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .arg("serve")
            .arg("--config")
            .arg(config)
            .args(["--addr", "127.0.0.1:0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tutor serve starts");
        let (base, log) = listening(&mut child);
        let replica = Replica {
            base,
            process: Process::new(child),
            log: Some(log),
        };
        assert!(
            eventually_blocking(PATIENCE, || status_of(replica.addr(), "/readyz")
                == Some(200)),
            "the replica never became ready"
        );
        replica
    }

    fn addr(&self) -> &str {
        self.base.trim_start_matches("http://")
    }
}

/// HAProxy with the deployment's own configuration.
struct Haproxy {
    base: String,
    _process: Process,
}

impl Haproxy {
    fn start(dir: &Path, replicas: [&Replica; 2]) -> Haproxy {
        let config = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/haproxy.cfg");
        let port = free_port();
        let child = Command::new(find_program("haproxy").expect("haproxy"))
            .arg("-f")
            .arg(&config)
            .arg("-db")
            .env("TUTOR_LB_BIND", format!("127.0.0.1:{port}"))
            .env("TUTOR_REPLICA_A", replicas[0].addr())
            .env("TUTOR_REPLICA_B", replicas[1].addr())
            .stdout(log_file(&dir.join("haproxy.log")))
            .stderr(log_file(&dir.join("haproxy.err")))
            .spawn()
            .expect("haproxy starts");
        let haproxy = Haproxy {
            base: format!("http://127.0.0.1:{port}"),
            _process: Process::new(child),
        };
        wait_for_port(port, "haproxy");
        haproxy
    }
}

// ---------------------------------------------------------------------------------------------
// Requests

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// Which replica answered, as HAProxy says.
fn replica_of(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("x-tutor-replica")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// Asks a question at `base` with the `load` key; returns the status, the replica and the body.
async fn chat(base: &str, message: &str) -> (u16, String, Value) {
    let response = client()
        .post(format!("{base}/v1/chat"))
        .bearer_auth("load-secret")
        .json(&json!({"lesson_id": LESSON, "message": message}))
        .send()
        .await
        .expect("chat sent");
    let status = response.status().as_u16();
    let replica = replica_of(&response);
    let body = response.json().await.unwrap_or(Value::Null);
    (status, replica, body)
}

/// The sum of one metric's samples as a replica exposes it.
async fn metric(base: &str, name: &str) -> f64 {
    let text = client()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with([' ', '{']))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// What the shared log holds (the synchronous client runs off the async workers).
fn stored(postgres: &Postgres) -> Vec<Record> {
    tokio::task::block_in_place(|| {
        PostgresStore::open(&postgres.url())
            .expect("the log opens")
            .records(0, None)
            .expect("records")
    })
}

/// Waits until the log holds every id in `ids` (writers batch and may be retrying).
async fn wait_stored(postgres: &Postgres, ids: &[String]) -> Vec<Record> {
    let missing = |records: &[Record]| {
        ids.iter()
            .filter(|id| !records.iter().any(|r| &r.answer_id == *id))
            .count()
    };
    eventually(PATIENCE, async || {
        let records = stored(postgres);
        (missing(&records) == 0).then_some(records)
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "{} of {} answers never reached the log",
            missing(&stored(postgres)),
            ids.len()
        )
    })
}

// ---------------------------------------------------------------------------------------------
// The deployment

struct Deployment {
    dir: tempfile::TempDir,
    config: PathBuf,
    postgres: Postgres,
    redis: Redis,
    a: Replica,
    b: Replica,
    lb: Haproxy,
    platform: Platform,
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("dir");
    for entry in std::fs::read_dir(from)
        .expect("lists")
        .filter_map(Result::ok)
    {
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copies");
        }
    }
}

fn tutor(config: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tutor"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .expect("tutor runs")
}

async fn deploy() -> Deployment {
    ensure_installed();
    let dir = tempfile::tempdir().expect("temp dir");
    // The PostgreSQL server (another user, as root) must reach its folder inside.
    let _ = Command::new("chmod").arg("755").arg(dir.path()).status();
    let postgres = Postgres::start(dir.path());
    let redis = Redis::start(dir.path());
    let platform = Platform::start().await;
    let lessons = dir.path().join("lessons");
    copy_dir(&sample_lessons(), &lessons);
    let registration = platform.registration();
    let config = dir.path().join("tutor.toml");
    let digest = tutor::http::key_digest_hex;
    std::fs::write(
        &config,
        format!(
            r#"lessons = "{lessons}"
index = "{index}"
prompts = "{prompts}"
index_read_only = true
log = "{log}"
redis_url = "{redis}"

[limits]
per_minute = {LIMIT}
burst = {LIMIT}
client_ip_header = "x-forwarded-for"

[[keys]]
name = "limited"
sha256 = "{limited}"

[[keys]]
name = "load"
sha256 = "{load}"

[lti]
url = "{tool}"
keys_dir = "{keys}"

[[lti.platforms]]
issuer = "{issuer}"
client_id = "{client_id}"
auth_url = "{auth_url}"
jwks_url = "{jwks_url}"
deployments = ["{deployment}"]
"#,
            lessons = lessons.display(),
            index = dir.path().join("index").display(),
            prompts = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("prompts")
                .display(),
            log = postgres.url(),
            redis = redis.url(),
            limited = digest("limited-secret"),
            load = digest("load-secret"),
            tool = crate::lti::TOOL_URL,
            keys = dir.path().join("lti-keys").display(),
            issuer = registration.issuer,
            client_id = registration.client_id,
            auth_url = registration.auth_url,
            jwks_url = registration.jwks_url,
            deployment = registration.deployments[0],
        ),
    )
    .expect("config written");
    // The index is built once, as CI would, and opened read-only by both replicas.
    let built = tutor(&config, &["index"]);
    assert!(
        built.status.success(),
        "tutor index: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    let config_for_replicas = config.clone();
    let (a, b) = tokio::task::spawn_blocking(move || {
        // One after the other: the first generates the tool's LTI key, the second reads it.
        let a = Replica::start(&config_for_replicas);
        let b = Replica::start(&config_for_replicas);
        (a, b)
    })
    .await
    .expect("replicas start");
    let lb = Haproxy::start(dir.path(), [&a, &b]);
    // HAProxy sends learners to a replica once two health checks passed.
    let mut seen = std::collections::BTreeSet::new();
    let both = eventually_true(PATIENCE, async || {
        if let Ok(response) = client().get(format!("{}/readyz", lb.base)).send().await
            && response.status() == 200
        {
            seen.insert(replica_of(&response));
        }
        seen.len() == 2
    })
    .await;
    assert!(
        both,
        "the load balancer never sent requests to both replicas (saw {seen:?})"
    );
    Deployment {
        dir,
        config,
        postgres,
        redis,
        a,
        b,
        lb,
        platform,
    }
}

// ---------------------------------------------------------------------------------------------
// What the deployment must show

/// A limit of LIMIT per minute admits LIMIT requests in total, whichever replica counts them.
async fn the_rate_limit_holds_across_replicas(d: &Deployment) {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let base = d.lb.base.clone();
        tasks.push(tokio::spawn(async move {
            let client = client();
            let mut outcomes = Vec::new();
            for _ in 0..(LIMIT as usize * 3 / 2 / 8) {
                let response = client
                    .get(format!("{base}/v1/lessons"))
                    .bearer_auth("limited-secret")
                    .send()
                    .await
                    .expect("sent");
                let retry_after = response.headers().contains_key("retry-after");
                outcomes.push((
                    response.status().as_u16(),
                    replica_of(&response),
                    retry_after,
                ));
            }
            outcomes
        }));
    }
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.extend(task.await.expect("task"));
    }
    let admitted = outcomes.iter().filter(|(s, _, _)| *s == 200).count();
    let refused = outcomes.iter().filter(|(s, _, _)| *s == 429).count();
    assert_eq!(admitted + refused, outcomes.len(), "only 200s and 429s");
    assert!(
        outcomes.iter().all(|(s, _, retry)| *s != 429 || *retry),
        "every refusal says when to retry"
    );
    for replica in ["a", "b"] {
        assert!(
            outcomes.iter().any(|(s, r, _)| *s == 200 && r == replica),
            "replica {replica} admitted some"
        );
        assert!(
            outcomes.iter().any(|(s, r, _)| *s == 429 && r == replica),
            "replica {replica} refused some"
        );
    }
    // Each replica takes cells ahead for a caller this busy (at most 32 at a time, kept
    // 200 ms); cells it could not use in time are lost, never lent twice, and counted. Once the
    // leases expired, one more request at each replica has it count what its last lease left.
    tokio::time::sleep(tutor::shared::LEASE_FOR + Duration::from_millis(100)).await;
    let mut late_admitted = 0;
    let mut forgotten = 0.0;
    for replica in [&d.a, &d.b] {
        let response = client()
            .get(format!("{}/v1/lessons", replica.base))
            .bearer_auth("limited-secret")
            .send()
            .await
            .expect("sent");
        late_admitted += usize::from(response.status() == 200);
        forgotten += metric(&replica.base, "tutor_rate_limit_cells_forgotten_total").await;
    }
    let admitted = admitted + late_admitted;
    let elapsed = started.elapsed().as_secs_f64();
    // Every cell the shared bucket gave (its LIMIT, since it refused some, plus what refilled)
    // was used or forgotten; per-process buckets would have admitted twice the limit.
    let refilled = (elapsed * f64::from(LIMIT) / 60.0).ceil() as usize;
    let forgotten = forgotten as usize;
    assert!(
        admitted + forgotten >= LIMIT as usize,
        "admitted {admitted} and forgot {forgotten} of a shared limit of {LIMIT}"
    );
    assert!(
        admitted <= LIMIT as usize + refilled,
        "admitted {admitted} of {} in {elapsed:.1} s with a shared limit of {LIMIT}",
        outcomes.len() + 2
    );
    assert!(admitted > 0, "the shared limit admitted requests");
}

/// An answer given by one replica is rated through the other, and the rating reaches the
/// answer's record; an id no replica gave is not found.
async fn a_rating_reaches_the_answer_whichever_replica_takes_it(d: &Deployment) -> Vec<String> {
    let mut ids = Vec::new();
    for (asked, rated) in [(&d.a, &d.b), (&d.b, &d.a)] {
        let (status, _, body) = chat(&asked.base, "What does open weights mean?").await;
        assert_eq!(status, 200, "{body}");
        let id = body["answer_id"]
            .as_str()
            .expect("an answer id")
            .to_string();
        let response = client()
            .post(format!("{}/v1/feedback", rated.base))
            .bearer_auth("load-secret")
            .json(&json!({"answer_id": id, "rating": "down", "comment": "too short"}))
            .send()
            .await
            .expect("feedback sent");
        assert_eq!(response.status(), 200, "the other replica takes the rating");
        ids.push(id);
    }
    let unknown = client()
        .post(format!("{}/v1/feedback", d.b.base))
        .bearer_auth("load-secret")
        .json(&json!({"answer_id": "no-such-answer", "rating": "up"}))
        .send()
        .await
        .expect("feedback sent");
    assert_eq!(unknown.status(), 404);
    wait_stored(&d.postgres, &ids).await;
    let rated = eventually_true(PATIENCE, async || {
        let records = stored(&d.postgres);
        ids.iter().all(|id| {
            records.iter().any(|r| {
                &r.answer_id == id
                    && r.rating == Some(tutor::conversation_log::Rating::Down)
                    && r.comment.as_deref() == Some("too short")
            })
        })
    })
    .await;
    assert!(rated, "the ratings never reached the answers");
    ids
}

/// A launch accepted by one replica, replayed to the other with its cookie, is refused there.
async fn a_replayed_launch_is_refused_on_the_other_replica(d: &Deployment) {
    let login = login_at(&d.a.base).await;
    let id_token = d.platform.key.sign(&d.platform.resource_link(&login.nonce));
    let first = post_launch_at(&d.a.base, &login.state, Some(&login.cookie), &id_token).await;
    assert_eq!(first.status().as_u16(), 303, "the first launch is accepted");
    // The learner's session token, issued by replica A, works on replica B.
    let location = first.headers()[reqwest::header::LOCATION]
        .to_str()
        .expect("location")
        .to_string();
    let token = location
        .split_once("#session=")
        .map(|(_, t)| t.to_string())
        .expect("a session token");
    let (status, _, _) = {
        let response = client()
            .post(format!("{}/v1/chat", d.b.base))
            .bearer_auth(&token)
            .json(&json!({"lesson_id": LESSON, "message": "What does open weights mean?"}))
            .send()
            .await
            .expect("chat sent");
        (response.status().as_u16(), (), ())
    };
    assert_eq!(status, 200, "a session from one replica works on the other");
    let replay = post_launch_at(&d.b.base, &login.state, Some(&login.cookie), &id_token).await;
    let check = replay
        .headers()
        .get("x-tutor-lti-check")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert_eq!(
        (replay.status().as_u16(), check.as_str()),
        (401, "nonce"),
        "the replay is refused by its nonce"
    );
}

/// `tutor report` reads the shared log: the learners of both replicas.
async fn the_report_sees_the_learners_of_both(d: &Deployment, ids: &[String]) {
    let mut asked = ids.to_vec();
    for base in [&d.a.base, &d.b.base] {
        for message in ["Who may use open weights?", "What is a quantum router?"] {
            let (status, _, body) = chat(base, message).await;
            assert_eq!(status, 200);
            asked.push(body["answer_id"].as_str().expect("id").to_string());
        }
    }
    let records = wait_stored(&d.postgres, &asked).await;
    let output = tutor(
        &d.config,
        &["report", "--log", &d.postgres.url(), "--format", "json"],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).expect("JSON report");
    let lesson = report["lessons"]
        .as_array()
        .expect("lessons")
        .iter()
        .find(|l| l["lesson_id"] == LESSON)
        .expect("the lesson is in the report");
    let in_log = records.iter().filter(|r| r.lesson_id == LESSON).count();
    assert_eq!(lesson["asked"].as_u64(), Some(in_log as u64));
    assert!(
        in_log >= asked.len(),
        "{in_log} records for {} answers",
        asked.len()
    );
    assert!(lesson["thumbs_down"].as_u64() >= Some(2), "{lesson}");
}

/// With Redis stopped the tutor keeps answering (limits admit, counted); when Redis returns,
/// the replicas use it again.
async fn answers_go_on_while_redis_is_down(d: &mut Deployment) {
    d.redis.stop();
    for n in 0..10 {
        let (status, _, body) = chat(&d.lb.base, &format!("What does open mean here? ({n})")).await;
        assert_eq!(status, 200, "{body}");
    }
    let errors = metric(&d.a.base, "tutor_shared_state_errors_total").await
        + metric(&d.b.base, "tutor_shared_state_errors_total").await;
    assert!(errors > 0.0, "going on without Redis is counted");
    d.redis.run();
    let back = eventually_true(PATIENCE, async || {
        let before = metric(&d.a.base, "tutor_shared_state_errors_total").await
            + metric(&d.b.base, "tutor_shared_state_errors_total").await;
        for n in 0..6 {
            let (status, _, _) = chat(&d.lb.base, &format!("What does open mean? ({n})")).await;
            assert_eq!(status, 200);
        }
        let after = metric(&d.a.base, "tutor_shared_state_errors_total").await
            + metric(&d.b.base, "tutor_shared_state_errors_total").await;
        after == before
    })
    .await;
    assert!(back, "the replicas never used Redis again");
}

/// With PostgreSQL stopped the tutor keeps answering; the records wait in the writers' queues
/// and are all written when it returns, none dropped.
async fn answers_go_on_while_postgres_is_down(d: &mut Deployment) {
    d.postgres.stop();
    let mut ids = Vec::new();
    for n in 0..20 {
        let (status, _, body) = chat(&d.lb.base, &format!("Who may use open weights? ({n})")).await;
        assert_eq!(status, 200, "{body}");
        ids.push(body["answer_id"].as_str().expect("id").to_string());
    }
    // Rated on both replicas while the database is away: found through Redis (or the
    // replica's own memory), queued, and written with the answers.
    for (id, replica) in ids.iter().take(2).zip([&d.a, &d.b]) {
        let response = client()
            .post(format!("{}/v1/feedback", replica.base))
            .bearer_auth("load-secret")
            .json(&json!({"answer_id": id, "rating": "up"}))
            .send()
            .await
            .expect("feedback sent");
        assert_eq!(response.status(), 200, "a rating while PostgreSQL is down");
    }
    // Both writers find the database away, keep their batches and retry.
    let retrying = eventually_true(PATIENCE, async || {
        metric(&d.a.base, "tutor_log_write_retries_total").await > 0.0
            && metric(&d.b.base, "tutor_log_write_retries_total").await > 0.0
    })
    .await;
    assert!(retrying, "the writers retry while PostgreSQL is down");
    tokio::task::block_in_place(|| d.postgres.run());
    wait_stored(&d.postgres, &ids).await;
    let rated = eventually_true(PATIENCE, async || {
        let records = stored(&d.postgres);
        ids.iter().take(2).all(|id| {
            records.iter().any(|r| {
                &r.answer_id == id && r.rating == Some(tutor::conversation_log::Rating::Up)
            })
        })
    })
    .await;
    assert!(
        rated,
        "the ratings given during the outage never reached their answers"
    );
    for replica in [&d.a, &d.b] {
        assert_eq!(
            metric(&replica.base, "tutor_log_writes_dropped_total").await,
            0.0,
            "no record dropped"
        );
    }
    let retries = metric(&d.a.base, "tutor_log_write_retries_total").await
        + metric(&d.b.base, "tutor_log_write_retries_total").await;
    assert!(
        retries > 0.0,
        "the writers retried while the database was away"
    );
}

/// A new index version, built while the replicas answer, is picked up by both; no request
/// meanwhile sees a half-written index.
async fn a_new_index_version_reaches_both_replicas(d: &Deployment) {
    let path = d.dir.path().join("lessons").join(format!("{LESSON}.md"));
    let mut text = std::fs::read_to_string(&path).expect("lesson");
    text.push_str("\n\n## Zephyr licences\n\nA zephyr licence is a made-up licence used to check that a new index version reaches every replica.\n");
    std::fs::write(&path, text).expect("lesson edited");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let background = {
        let base = d.lb.base.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (status, _, _) = chat(&base, "What does open weights mean?").await;
                statuses.push(status);
            }
            statuses
        })
    };
    let built = tokio::task::block_in_place(|| tutor(&d.config, &["index"]));
    assert!(built.status.success());
    for replica in [&d.a, &d.b] {
        let served = eventually_true(PATIENCE, async || {
            let hits: Value = client()
                .get(format!("{}/v1/search", replica.base))
                .bearer_auth("load-secret")
                .query(&[("q", "zephyr licence"), ("lesson_id", LESSON)])
                .send()
                .await
                .expect("search")
                .json()
                .await
                .expect("hits");
            hits.to_string().contains("zephyr licence")
        })
        .await;
        assert!(served, "{} never served the new version", replica.base);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let statuses = background.await.expect("background load");
    assert!(!statuses.is_empty());
    assert!(
        statuses.iter().all(|s| *s == 200),
        "every answer during the rollout succeeded: {statuses:?}"
    );
}

/// Killing one replica mid-load loses no answer: the load balancer sends what it had in flight
/// there, and everything after, to the other.
async fn killing_a_replica_mid_load_loses_no_answer(d: &mut Deployment) {
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for worker in 0..4 {
        let base = d.lb.base.clone();
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            for n in 0..40 {
                let (status, replica, body) = chat(
                    &base,
                    &format!("What does open weights mean? ({worker}.{n})"),
                )
                .await;
                outcomes.push((status, replica, body));
                done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            outcomes
        }));
    }
    assert!(
        eventually_true(PATIENCE, async || done
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 30)
        .await,
        "the answers before the kill came back"
    );
    d.b.process.signal("KILL");
    assert!(!d.b.process.is_running());
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.extend(task.await.expect("worker"));
    }
    let failed: Vec<_> = outcomes.iter().filter(|(s, _, _)| *s != 200).collect();
    assert!(failed.is_empty(), "answers lost: {failed:?}");
    assert!(
        outcomes.iter().any(|(_, r, _)| r == "b"),
        "b answered before it died"
    );
    assert!(
        outcomes.iter().rev().take(20).all(|(_, r, _)| r == "a"),
        "after it died, a answered everything"
    );
}

/// A replica stopped with SIGTERM right after answering writes every record to PostgreSQL
/// before it exits: the log's queue is in flight, and a graceful stop finishes it.
async fn sigterm_right_after_answers_keeps_every_record_in_postgres(d: &mut Deployment) {
    let mut ids = Vec::new();
    for n in 0..10 {
        let (status, _, body) = chat(&d.a.base, &format!("What are open weights? ({n})")).await;
        assert_eq!(status, 200, "{body}");
        ids.push(body["answer_id"].as_str().expect("an id").to_string());
    }
    let status = tokio::task::block_in_place(|| d.a.process.terminate());
    assert!(status.success(), "{status}");
    let log = d.a.log.take().expect("the log").join().expect("log");
    // What the replica logged while PostgreSQL was down earlier is not the stop's business.
    let (_, stop) = log
        .split_once("shutting down")
        .expect("the replica logs its stop");
    assert!(stop.contains("conversation log written"), "{stop}");
    assert!(
        !stop.contains("ERROR"),
        "a graceful stop logs no error: {stop}"
    );
    // No waiting: the records are there when the process has exited.
    let records = stored(&d.postgres);
    let missing: Vec<_> = ids
        .iter()
        .filter(|id| !records.iter().any(|r| &r.answer_id == *id))
        .collect();
    assert!(missing.is_empty(), "lost on SIGTERM: {missing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_behind_haproxy_share_limits_ratings_nonces_and_the_log() {
    let _cores = crate::helpers::CORES.lock().await;
    let mut d = deploy().await;
    the_rate_limit_holds_across_replicas(&d).await;
    let rated = a_rating_reaches_the_answer_whichever_replica_takes_it(&d).await;
    a_replayed_launch_is_refused_on_the_other_replica(&d).await;
    the_report_sees_the_learners_of_both(&d, &rated).await;
    answers_go_on_while_redis_is_down(&mut d).await;
    answers_go_on_while_postgres_is_down(&mut d).await;
    a_new_index_version_reaches_both_replicas(&d).await;
    killing_a_replica_mid_load_loses_no_answer(&mut d).await;
    sigterm_right_after_answers_keeps_every_record_in_postgres(&mut d).await;
}

/// The PostgreSQL store keeps the same promises as the SQLite one: records replace by id and
/// keep their rating, a rating before its record waits for it, nonces are used once, old
/// records go.
#[test]
fn both_stores_keep_the_same_promises() {
    ensure_installed();
    let dir = tempfile::tempdir().expect("temp dir");
    let _ = Command::new("chmod").arg("755").arg(dir.path()).status();
    let postgres = Postgres::start(dir.path());
    let sqlite =
        tutor::conversation_log::SqliteStore::open(&dir.path().join("log.sqlite")).expect("sqlite");
    let shared = PostgresStore::open(&postgres.url()).expect("postgres");
    // Opening again (another replica starting) applies nothing twice.
    let again = PostgresStore::open(&postgres.url()).expect("reopens");
    for store in [&sqlite as &dyn LogStore, &shared as &dyn LogStore] {
        store_promises(store);
    }
    assert_eq!(again.records(0, None).expect("records").len(), 3);
}

fn record(id: &str, time: u64, lesson: &str) -> Record {
    Record {
        answer_id: AnswerId::parse(id).expect("an id"),
        time,
        lesson_id: lesson.to_string(),
        question: "What is a tokenizer?".to_string(),
        answer: "It splits text [1].".to_string(),
        refused: false,
        refusal_reason: None,
        cited: vec![format!("{lesson}#part-1"), format!("{lesson}#part-2")],
        backend: "extractive".to_string(),
        latency_ms: 3,
        conversation_id: ConversationId::parse("c1").ok(),
        rating: None,
        comment: None,
        verification: Some(r#"{"sentences":1}"#.to_string()),
        kind: None,
        outcome: None,
    }
}

fn store_promises(store: &dyn LogStore) {
    let now = tutor::conversation_log::now();
    let down = |id: &str| RatingUpdate {
        answer_id: AnswerId::parse(id).expect("an id"),
        rating: tutor::conversation_log::Rating::Down,
        comment: Some("wrong".to_string()),
    };
    store
        .append(&[record("a1", now, "l1"), record("a2", now, "l2")])
        .expect("appends");
    assert!(store.rate(&down("a1")).expect("rates"), "a stored answer");
    // Rated before its record arrives (another replica's writer is behind).
    assert!(!store.rate(&down("a3")).expect("rates"), "not stored yet");
    store
        .append(&[record("a3", now, "l1"), record("a1", now, "l1")])
        .expect("appends");
    let records = store.records(0, None).expect("records");
    assert_eq!(records.len(), 3);
    for id in ["a1", "a3"] {
        let r = records.iter().find(|r| r.answer_id == id).expect("stored");
        assert_eq!(
            (r.rating, r.comment.as_deref()),
            (Some(tutor::conversation_log::Rating::Down), Some("wrong")),
            "{id} keeps its rating"
        );
    }
    assert_eq!(records[0].cited.len(), 2);
    assert_eq!(store.records(0, Some("l2")).expect("records").len(), 1);
    assert_eq!(
        store
            .lesson_of(&AnswerId::parse("a2").expect("id"))
            .expect("lookup")
            .as_deref(),
        Some("l2")
    );
    assert_eq!(
        store
            .lesson_of(&AnswerId::parse("zz").expect("id"))
            .expect("lookup"),
        None
    );
    assert!(store.first_use_of_nonce("n1", now + 600).expect("nonce"));
    assert!(!store.first_use_of_nonce("n1", now + 600).expect("nonce"));
    // An expired nonce may be forgotten (and so used again).
    assert!(store.first_use_of_nonce("n2", now - 1).expect("nonce"));
    assert!(store.first_use_of_nonce("n2", now + 600).expect("nonce"));
    store.append(&[record("old", 5, "l1")]).expect("appends");
    assert_eq!(store.prune(now - 10).expect("prunes"), 1);
    assert!(
        store
            .lesson_of(&AnswerId::parse("old").expect("id"))
            .expect("lookup")
            .is_none()
    );
}
