//! Logs: readable lines locally, JSON in production, always on stderr (stdout is for command
//! output). Each line of a request carries its request id through the request span.

use crate::settings::Settings;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; later calls (tests building several apps) are no-ops.
pub fn init(s: &Settings) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .or_else(|| EnvFilter::try_new(&s.log.level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if s.log.format == "json" {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder
            .compact()
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init()
    };
}
