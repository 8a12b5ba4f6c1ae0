//! The benchmark's ceilings (issue 8), not part of the served API: the same actix-web server
//! and the same sea-orm pool as `latch`, answering
//! - `GET /noop`: a fixed JSON body, no I/O (the HTTP ceiling);
//! - `GET /pk/{id}`: one primary-key lookup in its own `bench_kv` table (the database ceiling).
//!
//! `latch-baseline --database URL --listen ADDR [--rows N] [--max-connections N]`; started and
//! stopped by `cargo xtask bench`. The pool defaults to the size `latch` picks for the same
//! URL (`store::default_pool_size`: 16 on Postgres, 4 on SQLite).

use actix_web::{App, HttpResponse, HttpServer, web};
use anyhow::Context;
use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};
use std::time::Duration;
use store::{Db, PoolSettings};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

async fn noop() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(r#"{"status_code":200}"#)
}

async fn pk(db: web::Data<Db>, id: web::Path<String>) -> HttpResponse {
    let conn = db.connection();
    let backend = conn.get_database_backend();
    let sql = match backend {
        DatabaseBackend::Postgres => "SELECT v FROM bench_kv WHERE id = $1",
        _ => "SELECT v FROM bench_kv WHERE id = ?",
    };
    let stmt = Statement::from_sql_and_values(backend, sql, [id.into_inner().into()]);
    match conn.query_one_raw(stmt).await {
        Ok(Some(row)) => match row.try_get::<String>("", "v") {
            Ok(v) => HttpResponse::Ok().json(serde_json::json!({"status_code": 200, "v": v})),
            Err(e) => HttpResponse::InternalServerError().body(e.to_string()),
        },
        Ok(None) => HttpResponse::NotFound().finish(),
        Err(e) => HttpResponse::ServiceUnavailable().body(e.to_string()),
    }
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let url = arg("--database").context("--database URL")?;
    let listen = arg("--listen").unwrap_or_else(|| "127.0.0.1:8089".into());
    let rows: u32 = arg("--rows").and_then(|r| r.parse().ok()).unwrap_or(10_000);
    // The pool `latch` gets on the same URL unless told otherwise, so a ceiling is measured
    // with as many database connections as the routes it is compared with.
    let max_connections = arg("--max-connections")
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| store::default_pool_size(&url));
    let db = Db::connect(
        &url,
        &PoolSettings {
            max_connections,
            acquire_timeout: Duration::from_secs(10),
            schema: None,
        },
    )
    .await?;
    let conn = db.connection();
    conn.execute_unprepared("DROP TABLE IF EXISTS bench_kv").await?;
    conn.execute_unprepared("CREATE TABLE bench_kv (id VARCHAR(64) PRIMARY KEY, v VARCHAR(64) NOT NULL)")
        .await?;
    for chunk in (0..rows).collect::<Vec<_>>().chunks(500) {
        let values: Vec<String> = chunk.iter().map(|i| format!("('k{i}', 'value {i}')")).collect();
        conn.execute_unprepared(&format!(
            "INSERT INTO bench_kv (id, v) VALUES {}",
            values.join(",")
        ))
        .await?;
    }
    eprintln!("latch-baseline: {rows} rows; listening on {listen}");
    let data = web::Data::new(db);
    HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/noop", web::get().to(noop))
            .route("/pk/{id}", web::get().to(pk))
    })
    .bind(&listen)?
    .run()
    .await?;
    Ok(())
}
