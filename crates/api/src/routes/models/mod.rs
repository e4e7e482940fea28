pub mod get_all_models;
pub mod get_rated_bids;
pub mod list_models;
