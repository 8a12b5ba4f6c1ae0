//! End-to-end tests through a real server on SQLite and on Postgres (one integration binary).

mod binary;
mod flows;
mod helpers;
mod inputs;
mod locks;
mod races;
