pub mod get_metrics;
pub mod health_check;
pub mod readiness_check;
pub mod root;
