//! Latch's domain: ids, the one error enum, TOTP maths, recovery codes, sealed secrets, the
//! storage port and the services over it.
//!
//! It must never depend on a runtime, a database, HTTP or configuration crates (architecture
//! §2): time comes from a [`clock::Clock`], storage through [`ports::Store`].

pub mod clock;
pub mod crypto;
mod error;
pub mod ids;
pub mod jwt;
pub mod model;
pub mod ports;
pub mod random;
pub mod recovery;
pub mod search;
pub mod service;
pub mod session;
pub mod totp;
pub mod validate;

pub use error::Error;
