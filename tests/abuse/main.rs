//! Abuse tests of issues 11, 20, 21 and 22 ("Hardening", "Hardening II", the catalog's `events` frame, "Client
//! actions"): each reproduces an attack on a real gateway (real nats-server, real WebSocket clients, the binary where
//! start-up matters) and shows it refused within the documented limit.
//! One module per part; every wait is bounded and every test stops by itself.

#[path = "../common/mod.rs"]
mod common;

mod actions;
mod bytes;
mod catalog;
mod filters;
mod listeners;
mod rate;
mod secrets;
mod sessions;
mod transport;
mod users;
