//! End-to-end tests through a real server on SQLite and on Postgres (one integration binary).

// Test code: a failed unwrap is a failed test (clippy.toml allows it only in #[test] fns).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod admin;
mod binary;
mod flows;
mod helpers;
mod inputs;
mod locks;
mod ops;
mod proxy;
mod races;
mod ratelimits;
mod search;
mod sessions;
