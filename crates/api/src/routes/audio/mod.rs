pub mod create_speech;
pub mod create_transcription;
mod media_relay;
mod upload_form;

pub use upload_form::remove_stale_spools;
