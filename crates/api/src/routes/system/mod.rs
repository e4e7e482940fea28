pub mod health_check;
pub mod root;
