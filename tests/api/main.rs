//! Integration tests: the real binary (or the real app in-process where a fault must be
//! injected) driven over real HTTP. One test binary; every test gets its own port and
//! data directory, so they run in parallel.

mod analytics;
mod as_of;
mod auth;
mod concurrency;
mod config;
mod crash;
mod disk;
mod edge;
mod faults;
mod helpers;
mod idempotency;
mod journey;
mod kafka;
mod notifications;
mod operations;
mod page;
mod problems;
mod replay;
mod simulate;
mod streams;
mod workflow;
mod writers;
