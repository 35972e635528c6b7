//! The Outpost hub: accepts agents over QUIC, keeps their sessions, stores endpoints in SQLite and
//! serves the admin HTTPS API.
#![warn(missing_docs)]

pub mod store;
