//! `latch`: the server and its admin commands.

use anyhow::Context;
use clap::{Parser, Subcommand};
use domain::ids::Environment;
use server::settings::Settings;
use server::{Application, SystemClock, keys, telemetry};
use std::sync::Arc;

/// `latch --version`: the package version and the git commit it was built from.
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("LATCH_GIT_COMMIT"), ")");

#[derive(Parser)]
#[command(
    name = "latch",
    version = VERSION,
    about = "Self-hosted TOTP authentication speaking Stytch's API"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default command).
    Serve {
        /// Address to listen on (overrides server.listen).
        #[arg(long)]
        listen: Option<String>,
    },
    /// Exit 0 if the server configured here answers `/healthz` (for container health checks;
    /// the image has no curl).
    Healthcheck {
        /// The address to ask (default: server.listen, with 0.0.0.0 read as 127.0.0.1).
        #[arg(long)]
        addr: Option<String>,
    },
    /// Manage projects.
    Project {
        #[command(subcommand)]
        command: ProjectCommand,
    },
    /// Copy the SQLite database, consistently, while the server runs (`VACUUM INTO`).
    Backup {
        /// Where to write the copy (must not exist).
        path: std::path::PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Remove expired pending TOTPs and long-ended sessions now (the server also does it every
    /// retention.interval_secs).
    Purge {
        /// Only count what would be removed.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
    /// Look after one user of a project.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage the key ring that seals secrets at rest.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Subcommand)]
enum ProjectCommand {
    /// Create a project and print its id and secret (shown only this once).
    Create {
        /// The project's name, shown as the issuer in authenticator apps.
        #[arg(long)]
        name: String,
        /// Create a live project (ids and secrets carry `live`); default is test.
        #[arg(long)]
        live: bool,
        /// Print `{"project_id": …, "secret": …}`.
        #[arg(long)]
        json: bool,
    },
    /// List the projects with the ids of their working secrets.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Rename a project (the issuer new authenticator entries show).
    Rename {
        project: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Delete a project and every row of it: users, TOTPs, codes, sessions, keys, secrets.
    Delete {
        project: String,
        /// Required: the deletion cannot be undone.
        #[arg(long)]
        yes: bool,
        #[arg(long)]
        json: bool,
    },
    /// Add or revoke a project's secrets (a project may have several while an application moves).
    Secret {
        #[command(subcommand)]
        command: SecretCommand,
    },
}

#[derive(Subcommand)]
enum SecretCommand {
    /// Add a working secret, shown only this once.
    Add {
        project: String,
        #[arg(long)]
        json: bool,
    },
    /// Revoke one secret (never the last); other replicas stop accepting it within
    /// server.credentials_cache_secs.
    Revoke {
        project: String,
        secret_id: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Print the user (with --json, the same JSON as `GET /v1/users/{id}`).
    Show(UserArgs),
    /// Clear the user's lock and consecutive-failure counter.
    Unlock(UserArgs),
    /// Delete the user's TOTPs (a lost device); the sessions they minted end.
    ResetTotp(UserArgs),
}

impl UserCommand {
    fn args(&self) -> &UserArgs {
        match self {
            UserCommand::Show(a) | UserCommand::Unlock(a) | UserCommand::ResetTotp(a) => a,
        }
    }
}

#[derive(clap::Args)]
struct UserArgs {
    /// The project the user belongs to.
    #[arg(long)]
    project: String,
    /// A user id or external id.
    user: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Print a new random key to add to the configuration.
    Generate,
    /// Re-seal every value under keys.active, in batches, while the server runs (resumable: run
    /// it again to carry on). Afterwards `keys status` shows what an old key still seals.
    Rotate {
        /// Rows per batch.
        #[arg(long, default_value_t = 500)]
        batch: u64,
        #[arg(long)]
        json: bool,
    },
    /// Count the values each key seals (TOTP secrets, recovery codes and their indexes, signing
    /// keys), so an operator knows when an old key can leave the ring.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Add a new session-signing key to a project; JWTs signed by the previous key keep
    /// verifying (JWKS serves both) until they expire.
    RotateSigning {
        #[arg(long)]
        project: String,
        /// Print `{"kid": …}`.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("latch: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    if let Some(Command::Keys {
        command: KeysCommand::Generate,
    }) = &cli.command
    {
        let id = keys::new_key_id()?;
        let key = domain::crypto::KeyRing::generate_key()?;
        println!("# A new key. Add it to the ring and make it active, in config/<LATCH_ENV>.toml:");
        println!("[keys]\nactive = \"{id}\"\n[keys.ring]\n{id} = \"{key}\"");
        println!("# or as environment variables:");
        println!(
            "LATCH__KEYS__ACTIVE={id}\nLATCH__KEYS__RING__{}={key}",
            id.to_uppercase()
        );
        return Ok(());
    }
    let mut settings = Settings::load()?;
    if let Some(Command::Healthcheck { addr }) = &cli.command {
        return healthcheck(
            addr.as_deref().unwrap_or(&settings.server.listen),
            settings.server.tls(),
        );
    }
    telemetry::init(&settings);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match cli.command {
        None => runtime.block_on(serve(settings)),
        Some(Command::Serve { listen }) => {
            if let Some(l) = listen {
                l.parse::<std::net::SocketAddr>()
                    .with_context(|| format!("--listen {l:?} is not an address like 127.0.0.1:8080"))?;
                settings.server.listen = l;
            }
            runtime.block_on(serve(settings))
        }
        Some(Command::Keys {
            command: KeysCommand::RotateSigning { project, json },
        }) => runtime.block_on(async {
            let (latch, db) = server::services(&settings, Arc::new(SystemClock)).await?;
            let key = latch
                .rotate_signing_key(&project)
                .await
                .map_err(stytch)?;
            db.close().await?;
            if json {
                println!("{}", serde_json::json!({"project_id": project, "kid": key.kid}));
            } else {
                println!(
                    "new signing key {} for {project}; the previous key stays in JWKS",
                    key.kid
                );
            }
            Ok(())
        }),
        Some(Command::User { command }) => runtime.block_on(user_command(&settings, command)),
        Some(Command::Keys {
            command: KeysCommand::Rotate { batch, json },
        }) => runtime.block_on(async {
            let (latch, db, (active, _)) = server::services_with_ring(&settings, Arc::new(SystemClock)).await?;
            let moved = latch.rotate_keys(batch.clamp(1, 10_000)).await;
            db.close().await?;
            let moved = moved.map_err(stytch)?;
            let by_kind: serde_json::Map<String, serde_json::Value> = moved
                .iter()
                .map(|(k, n)| (k.as_str().to_owned(), (*n).into()))
                .collect();
            if json {
                println!("{}", serde_json::json!({"active": active, "resealed": by_kind}));
            } else {
                println!("re-sealed under {active}: {}", serde_json::Value::Object(by_kind));
            }
            Ok(())
        }),
        Some(Command::Keys {
            command: KeysCommand::Status { json },
        }) => runtime.block_on(async {
            let (_, db, (active, ids)) = server::services_with_ring(&settings, Arc::new(SystemClock)).await?;
            let usage = db.key_usage().await;
            db.close().await?;
            let usage = usage?;
            let keys: Vec<serde_json::Value> = ids
                .iter()
                .map(|id| {
                    let kinds = usage.get(id).cloned().unwrap_or_default();
                    serde_json::json!({
                        "key_id": id,
                        "active": *id == active,
                        "sealed": kinds.values().sum::<u64>(),
                        "by_kind": kinds,
                    })
                })
                .collect();
            if json {
                println!("{}", serde_json::json!({"active": active, "keys": keys}));
            } else {
                for k in &keys {
                    println!(
                        "{}{}  seals {} value(s) {}",
                        k["key_id"].as_str().unwrap_or(""),
                        if k["active"] == true { " (active)" } else { "" },
                        k["sealed"],
                        k["by_kind"]
                    );
                }
            }
            Ok(())
        }),
        Some(Command::Purge { dry_run, json }) => runtime.block_on(async {
            let (latch, db) = server::services(&settings, Arc::new(SystemClock)).await?;
            let counts = latch
                .purge(settings.retention.session_days * 86_400, dry_run)
                .await;
            db.close().await?;
            let c = counts.map_err(stytch)?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"dry_run": dry_run, "pending_totps": c.pending_totps,
                        "recovery_codes": c.recovery_codes, "sessions": c.sessions})
                );
            } else {
                println!(
                    "{} {} expired pending TOTP(s) with {} recovery code(s), and {} session(s) ended more than {} day(s) ago",
                    if dry_run { "would remove" } else { "removed" },
                    c.pending_totps,
                    c.recovery_codes,
                    c.sessions,
                    settings.retention.session_days
                );
            }
            Ok(())
        }),
        Some(Command::Backup { path, json }) => runtime.block_on(async {
            if path.exists() {
                anyhow::bail!("{} exists; the backup goes to a new file", path.display());
            }
            let (_, db) = server::services(&settings, Arc::new(SystemClock)).await?;
            let done = db.backup_sqlite(&path).await;
            db.close().await?;
            done.with_context(|| format!("backing up to {}", path.display()))?;
            let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            if json {
                println!("{}", serde_json::json!({"path": path, "bytes": bytes}));
            } else {
                println!("backed up to {} ({bytes} bytes)", path.display());
            }
            eprintln!(
                "latch: keep the key ring (keys.ring, or {}) with this copy: without it no TOTP in it can be read",
                settings.keys.file
            );
            Ok(())
        }),
        Some(Command::Project { command }) => runtime.block_on(project_command(&settings, command)),
        Some(Command::Keys {
            command: KeysCommand::Generate,
        })
        | Some(Command::Healthcheck { .. }) => Ok(()),
    }
}

/// The project commands other than create; each prints a line, or JSON with --json.
async fn project_command(settings: &Settings, command: ProjectCommand) -> anyhow::Result<()> {
    if let ProjectCommand::Delete { yes: false, .. } = command {
        anyhow::bail!("project delete removes every user, TOTP and session of the project: add --yes");
    }
    let (latch, db) = server::services(settings, Arc::new(SystemClock)).await?;
    let result = project_run(&latch, command).await;
    db.close().await?;
    let (json, text) = result.map_err(stytch)?;
    match json {
        Some(v) => println!("{v}"),
        None => println!("{text}"),
    }
    Ok(())
}

/// Runs one project command: (the JSON when --json was given, the text otherwise).
async fn project_run(
    latch: &domain::service::Latch,
    command: ProjectCommand,
) -> Result<(Option<serde_json::Value>, String), domain::Error> {
    use serde_json::json;
    let pick = |json: bool, v: serde_json::Value| json.then_some(v);
    Ok(match command {
        ProjectCommand::Create { name, live, json } => {
            let env = if live {
                Environment::Live
            } else {
                Environment::Test
            };
            let created = latch.create_project(&name, env).await?;
            (
                pick(
                    json,
                    json!({"project_id": created.project.id, "secret": created.secret}),
                ),
                format!(
                    "project_id: {}\nsecret:     {}\nThe secret is shown only this once; Latch stores only its hash.",
                    created.project.id, created.secret
                ),
            )
        }
        ProjectCommand::List { json } => {
            let projects = latch.list_projects().await?;
            let v = json!({"projects": projects.iter().map(|p| json!({
                "project_id": p.project.id,
                "name": p.project.name,
                "environment": p.project.env.as_str(),
                "created_at": p.created_at,
                "secret_ids": p.active_secrets.iter().map(|(id, _)| id).collect::<Vec<_>>(),
            })).collect::<Vec<_>>()});
            let text = projects
                .iter()
                .map(|p| {
                    format!(
                        "{}  {}  ({} working secret(s))",
                        p.project.id,
                        p.project.name,
                        p.active_secrets.len()
                    )
                })
                .collect::<Vec<_>>()
                .join("\n");
            (
                pick(json, v),
                if text.is_empty() {
                    "no projects".into()
                } else {
                    text
                },
            )
        }
        ProjectCommand::Rename { project, name, json } => {
            let p = latch.rename_project(&project, &name).await?;
            (
                pick(json, json!({"project_id": p.id, "name": p.name})),
                format!("{} is now named {:?}", p.id, p.name),
            )
        }
        ProjectCommand::Delete { project, json, .. } => {
            latch.delete_project(&project).await?;
            (
                pick(json, json!({"project_id": project, "deleted": true})),
                format!("deleted {project} and every row of it"),
            )
        }
        ProjectCommand::Secret {
            command: SecretCommand::Add { project, json },
        } => {
            let (secret_id, secret) = latch.add_secret(&project).await?;
            (
                pick(
                    json,
                    json!({"project_id": project, "secret_id": secret_id, "secret": secret}),
                ),
                format!("secret_id: {secret_id}\nsecret:    {secret}\nThe secret is shown only this once."),
            )
        }
        ProjectCommand::Secret {
            command:
                SecretCommand::Revoke {
                    project,
                    secret_id,
                    json,
                },
        } => match latch.revoke_secret(&project, &secret_id).await? {
            domain::model::SecretRevocation::Revoked => (
                pick(
                    json,
                    json!({"project_id": project, "secret_id": secret_id, "revoked": true}),
                ),
                format!("revoked {secret_id}"),
            ),
            domain::model::SecretRevocation::NotFound => {
                return Err(domain::Error::BadRequest(format!(
                    "{secret_id} is not a working secret of {project}"
                )));
            }
            domain::model::SecretRevocation::LastSecret => {
                return Err(domain::Error::BadRequest(format!(
                    "{secret_id} is the last working secret of {project}; add another first"
                )));
            }
        },
    })
}

/// A domain error as a command's failure: Stytch's message and error type.
fn stytch(e: domain::Error) -> anyhow::Error {
    anyhow::anyhow!("{} ({})", e.message(), e.error_type())
}

/// The JSON of `GET /v1/users/{id}` for `user`.
fn user_json(user: &domain::model::User) -> anyhow::Result<serde_json::Value> {
    Ok(serde_json::to_value(api::dto::GetUserResponse {
        status_code: 200,
        request_id: api::request_id::current(),
        user: api::dto::User::from(user),
    })?)
}

async fn user_command(settings: &Settings, command: UserCommand) -> anyhow::Result<()> {
    let (latch, db) = server::services(settings, Arc::new(SystemClock)).await?;
    let result = async {
        let args = command.args();
        let p = latch.project(&args.project).await?;
        let user = domain::ids::UserRef::parse(&args.user, p.env)?;
        Ok::<_, domain::Error>(match &command {
            UserCommand::Show(_) => (latch.get_user(&p, &user).await?, None),
            UserCommand::Unlock(_) => (latch.unlock_user(&p, &user).await?, None),
            UserCommand::ResetTotp(_) => {
                let (u, n) = latch.reset_totps(&p, &user).await?;
                (u, Some(n))
            }
        })
    }
    .await;
    db.close().await?;
    let (user, removed) = result.map_err(stytch)?;
    match (&command, command.args().json) {
        (UserCommand::ResetTotp(_), true) => println!(
            "{}",
            serde_json::json!({"user_id": user.id, "totps_removed": removed, "user": user_json(&user)?})
        ),
        (_, true) => println!("{}", user_json(&user)?),
        (UserCommand::Show(_), false) => println!(
            "{} status={} locked={} totps={} created_at={}",
            user.id,
            user.status.as_str(),
            user.lock.is_some(),
            user.totps.len(),
            user.created_at
        ),
        (UserCommand::Unlock(_), false) => println!("unlocked {}", user.id),
        (UserCommand::ResetTotp(_), false) => println!(
            "removed {} TOTP(s) of {}; the sessions they minted have ended",
            removed.unwrap_or(0),
            user.id
        ),
    }
    Ok(())
}

/// Asks `GET /healthz` over plain HTTP/1.1 with std alone (a TLS listener is checked for
/// accepting connections only).
fn healthcheck(listen: &str, tls: bool) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    let mut addr: std::net::SocketAddr = listen
        .parse()
        .with_context(|| format!("{listen:?} is not an address like 127.0.0.1:8080"))?;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let timeout = std::time::Duration::from_secs(2);
    let mut stream = std::net::TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("nothing answers on {addr}"))?;
    if tls {
        println!("latch at {addr} accepts connections (TLS)");
        return Ok(());
    }
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut head = [0u8; 64];
    let n = stream.read(&mut head)?;
    let status_line = String::from_utf8_lossy(&head[..n]);
    let status_line = status_line.lines().next().unwrap_or("");
    if status_line.starts_with("HTTP/1.1 200") {
        println!("latch at {addr} is healthy");
        Ok(())
    } else {
        anyhow::bail!("latch at {addr} answered {status_line:?}")
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let app = Application::build(&settings, Arc::new(SystemClock)).await?;
    if let Some(p) = &app.first_project {
        println!(
            "Latch created a first project for this empty database. Its secret is shown only this once:"
        );
        println!("  project_id: {}", p.project.id);
        println!("  secret:     {}", p.secret);
        println!(
            "Point a Stytch SDK at http://{} with these credentials.",
            settings.server.listen
        );
    }
    tracing::info!(
        listen = %settings.server.listen,
        port = app.port(),
        env = %settings.env,
        database = %server::redact(&settings.database.url),
        version = env!("CARGO_PKG_VERSION"),
        "Latch is serving"
    );
    app.run_until_stopped().await?;
    tracing::info!("Latch stopped");
    Ok(())
}
