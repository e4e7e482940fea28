//! The composition root: configuration, secrets, wiring of adapters into services, and the
//! HTTP server. Business rules live in `morpheus-domain`, handlers in `morpheus-api`, SQL in
//! `morpheus-storage`.

pub mod admin;
pub mod background;
pub mod cli;
pub mod configuration;
pub mod cors;
pub mod marketplace;
pub mod open_files;
pub mod output;
pub mod pricing;
pub mod providers;
pub mod reload;
pub mod secrets;
pub mod spec;
pub mod startup;
pub mod supervisor;
pub mod telemetry;
