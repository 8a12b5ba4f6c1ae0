//! The shipped `latch` binary on its embedded defaults: first-start banner on stdout, logs on
//! stderr with request ids, a private generated key file, and no secret in clear in any log
//! line or in the database files (spec §5.18, §5.19; R-N-3, R-OTP-7).

use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn spawn_logger(
    stream: impl Read + Send + 'static,
    sink: Arc<Mutex<Vec<String>>>,
    tx: std::sync::mpsc::Sender<String>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line.clone());
            let _ = tx.send(line);
        }
    });
}

fn wait_for(rx: &std::sync::mpsc::Receiver<String>, pred: impl Fn(&str) -> bool) -> String {
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the server printed what it should");
        if pred(&line) {
            return line;
        }
    }
}

fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split(key).nth(1).unwrap().split_whitespace().next().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_runs_on_defaults_and_never_shows_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_latch"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .current_dir(dir.path())
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env("RUST_LOG", "debug")
        .env("LATCH_ENV", "local")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (out, err) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(Vec::new())));
    let (out_tx, out_rx) = std::sync::mpsc::channel();
    let (err_tx, err_rx) = std::sync::mpsc::channel();
    spawn_logger(child.stdout.take().unwrap(), out.clone(), out_tx);
    spawn_logger(child.stderr.take().unwrap(), err.clone(), err_tx);

    let project_id = field(&wait_for(&out_rx, |l| l.contains("project_id:")), "project_id:").to_owned();
    let secret = field(&wait_for(&out_rx, |l| l.contains("secret:")), "secret:").to_owned();
    let serving = wait_for(&err_rx, |l| l.contains("Latch is serving"));
    let port = field(&serving, "port=").to_owned();
    let base = format!("http://127.0.0.1:{port}");
    let c = reqwest::Client::new();
    let post = |path: &str, body: Value| {
        c.post(format!("{base}{path}"))
            .basic_auth(&project_id, Some(&secret))
            .json(&body)
            .send()
    };

    let user: Value = post("/v1/users", json!({"email": "bin@example.com"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let uid = user["user_id"].as_str().unwrap().to_owned();
    let totp: Value = post("/v1/totps", json!({"user_id": uid}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let totp_secret = totp["secret"].as_str().unwrap().to_owned();
    let raw_secret = data_encoding::BASE32_NOPAD
        .decode(totp_secret.as_bytes())
        .unwrap();
    let codes: Vec<String> = totp["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    let step = (chrono::Utc::now().timestamp() / 30) as u64;
    let code = domain::totp::code_at_step(&raw_secret, step, 30, 6).unwrap();
    let r = post(
        "/v1/totps/authenticate",
        json!({"user_id": uid, "totp_code": code}),
    )
    .await
    .unwrap();
    let rid = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(r.status(), 200);
    let r = post(
        "/v1/totps/recover",
        json!({"user_id": uid, "recovery_code": codes[0]}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let r = post("/v1/totps/recovery_codes", json!({"user_id": uid}))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A wrong secret and a wrong code are logged as refusals, without the values.
    let r = c
        .post(format!("{base}/v1/totps"))
        .basic_auth(&project_id, Some("secret-test-guess"))
        .json(&json!({}));
    assert_eq!(r.send().await.unwrap().status(), 401);

    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "latch exited with {status}");
    std::thread::sleep(Duration::from_millis(200));

    let stdout = out.lock().unwrap().join("\n");
    let stderr = err.lock().unwrap().join("\n");
    // The banner went to stdout once; logs to stderr carry the request id.
    assert_eq!(stdout.matches(&secret).count(), 1, "{stdout}");
    assert!(stderr.contains(&rid), "request id {rid} missing from logs");
    assert!(stderr.contains("request finished"));
    // Nothing secret in any log line, even at debug.
    let code_display: Vec<&str> = codes.iter().map(String::as_str).collect();
    let normalised: Vec<String> = codes.iter().map(|c| c.replace('-', "")).collect();
    for s in [&secret, &totp_secret, &code]
        .into_iter()
        .chain(
            code_display
                .iter()
                .copied()
                .map(|c| c.to_owned())
                .collect::<Vec<_>>()
                .iter(),
        )
        .chain(normalised.iter())
    {
        assert!(!stderr.contains(s.as_str()), "a secret value appears in the logs");
    }
    // The generated key file is private.
    let keys = dir.path().join("data/keys.toml");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&keys).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    assert!(stderr.contains("generated a new key ring"));
    // The database files hold no secret in clear: not the TOTP secret (base32 or raw), not a
    // recovery code, not the project secret.
    let mut bytes = Vec::new();
    for f in ["latch.db", "latch.db-wal"] {
        if let Ok(b) = std::fs::read(dir.path().join("data").join(f)) {
            bytes.extend(b);
        }
    }
    assert!(bytes.len() > 4096);
    let contains = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    assert!(!contains(totp_secret.as_bytes()));
    assert!(!contains(&raw_secret));
    assert!(!contains(secret.as_bytes()));
    for (c, n) in codes.iter().zip(&normalised) {
        assert!(!contains(c.as_bytes()) && !contains(n.as_bytes()));
    }
    assert!(contains(uid.as_bytes()), "the check reads the right files");
}

#[test]
fn project_create_prints_credentials_once_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_latch"))
        .args(["project", "create", "--name", "Shop", "--live", "--json"])
        .current_dir(dir.path())
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["project_id"].as_str().unwrap().starts_with("project-live-"));
    assert!(v["secret"].as_str().unwrap().starts_with("secret-live-"));
    let pid = v["project_id"].as_str().unwrap();
    let rotate = |pid: &str| {
        Command::new(env!("CARGO_BIN_EXE_latch"))
            .args(["keys", "rotate-signing", "--project", pid, "--json"])
            .current_dir(dir.path())
            .env_remove("DATABASE_URL")
            .output()
            .unwrap()
    };
    let out = rotate(pid);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let k: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(k["kid"].as_str().unwrap().starts_with("jwk-live-"));
    let unknown = rotate("project-test-00000000-0000-0000-0000-000000000000");
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("Project could not be found"));
    let bad = Command::new(env!("CARGO_BIN_EXE_latch"))
        .args(["serve"])
        .current_dir(dir.path())
        .env("LATCH__TOTP__SKEW_STEPS", "9")
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("totp.skew_steps"));
}

/// Starts the binary on a fresh SQLite folder; returns it with its credentials, port and logs.
struct Running {
    child: std::process::Child,
    project_id: String,
    secret: String,
    port: String,
    stderr: Arc<Mutex<Vec<String>>>,
    err_rx: std::sync::mpsc::Receiver<String>,
}

fn start_binary(dir: &std::path::Path, env: &[(&str, &str)]) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_latch"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .current_dir(dir)
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env("LATCH_ENV", "local")
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (out, stderr) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(Vec::new())));
    let (out_tx, out_rx) = std::sync::mpsc::channel();
    let (err_tx, err_rx) = std::sync::mpsc::channel();
    spawn_logger(child.stdout.take().unwrap(), out, out_tx);
    spawn_logger(child.stderr.take().unwrap(), stderr.clone(), err_tx);
    let project_id = field(&wait_for(&out_rx, |l| l.contains("project_id:")), "project_id:").to_owned();
    let secret = field(&wait_for(&out_rx, |l| l.contains("secret:")), "secret:").to_owned();
    let port = field(&wait_for(&err_rx, |l| l.contains("Latch is serving")), "port=").to_owned();
    Running {
        child,
        project_id,
        secret,
        port,
        stderr,
        err_rx,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_load_answers_every_accepted_request_then_exits() {
    let dir = tempfile::tempdir().unwrap();
    // One database connection, so requests queue in the server and are in flight at the signal.
    let mut s = start_binary(
        dir.path(),
        &[
            ("LATCH__DATABASE__MAX_CONNECTIONS", "1"),
            ("LATCH__DATABASE__ACQUIRE_TIMEOUT_SECS", "30"),
            ("LATCH__SERVER__SHUTDOWN_TIMEOUT_SECS", "30"),
        ],
    );
    let addr = format!("127.0.0.1:{}", s.port);
    let auth = data_encoding::BASE64.encode(format!("{}:{}", s.project_id, s.secret).as_bytes());
    // Every connection is made (so the server has it) before any request is written; each
    // carries one request and `Connection: close`.
    let n = 200;
    let mut conns = Vec::new();
    for _ in 0..n {
        conns.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let requests: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(i, mut conn)| {
            let body = json!({"email": format!("load{i}@example.com")}).to_string();
            let req = format!(
                "POST /v1/users HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Basic {auth}\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let done = done.clone();
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                conn.write_all(req.as_bytes()).await.unwrap();
                let mut answer = String::new();
                let read = conn.read_to_string(&mut answer).await;
                done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                (read.map(|_| answer), std::time::Instant::now())
            })
        })
        .collect();
    // Signal once the server is busy: a few answered, the rest accepted and queued.
    while done.load(std::sync::atomic::Ordering::SeqCst) < 10 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let signalled = std::time::Instant::now();
    let kill = Command::new("kill")
        .args(["-TERM", &s.child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let mut after_signal = 0;
    for r in futures::future::join_all(requests).await {
        let (answer, at) = r.unwrap();
        let answer = answer.expect("the connection was answered, not reset");
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "every accepted request is answered: {answer:?}"
        );
        after_signal += usize::from(at > signalled);
    }
    assert!(
        after_signal > 0,
        "some requests were still in flight at the signal"
    );
    let exit = s.child.wait().unwrap();
    assert!(exit.success(), "a graceful stop exits 0: {exit:?}");
    wait_for(&s.err_rx, |l| l.contains("Latch stopped"));
    assert!(
        std::net::TcpStream::connect(format!("127.0.0.1:{}", s.port)).is_err(),
        "nothing listens afterwards"
    );
    let log = s.stderr.lock().unwrap().join("\n");
    assert!(!log.contains("panicked"), "{log}");
    eprintln!("{after_signal} of {n} requests were answered after SIGTERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_reports_health_readiness_and_its_version() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = start_binary(dir.path(), &[]);
    let base = format!("http://127.0.0.1:{}", s.port);
    let ready: Value = reqwest::get(format!("{base}/readyz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "ready", "{ready}");
    assert_eq!(ready["checks"]["database"]["ok"], true);
    let check = |addr: &str| {
        Command::new(env!("CARGO_BIN_EXE_latch"))
            .args(["healthcheck", "--addr", addr])
            .current_dir(dir.path())
            .env_remove("DATABASE_URL")
            .output()
            .unwrap()
    };
    let ok = check(&format!("0.0.0.0:{}", s.port));
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    s.child.kill().unwrap();
    s.child.wait().unwrap();
    let down = check(&format!("127.0.0.1:{}", s.port));
    assert!(!down.status.success(), "a stopped server is unhealthy");
    assert!(String::from_utf8_lossy(&down.stderr).contains("nothing answers"));
    let v = Command::new(env!("CARGO_BIN_EXE_latch"))
        .arg("--version")
        .output()
        .unwrap();
    let v = String::from_utf8_lossy(&v.stdout).to_string();
    assert!(
        v.starts_with(&format!("latch {} (", env!("CARGO_PKG_VERSION"))),
        "{v}"
    );
    assert!(!v.contains("(unknown)"), "the git commit is recorded: {v}");
}
