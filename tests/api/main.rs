//! The integration suite: one binary, every test against a freshly spawned server and database.
//! Run on SQLite by default and on PostgreSQL with `MORPHEUS_TEST_DATABASE_URL`.

mod accounts;
mod admin;
mod api_keys;
mod automation;
mod background;
mod chat;
mod chat_admission;
mod client_addresses;
mod configuration;
mod contract;
mod contract_diff;
mod delegations;
mod deploy;
mod durability;
mod errors;
mod helpers;
mod log_capture;
mod market;
mod models;
mod observability;
mod private_files;
mod process;
mod raw_http;
mod replicas;
mod secrets_in_logs;
mod sessions;
mod shutdown;
mod slow_body_attack;
mod slow_clients;
mod streams;
mod system;
mod tokens;
mod traces;
mod upstream_faults;
mod wallet;
