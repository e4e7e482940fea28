pub mod get_automation_settings;
pub mod update_automation_settings;
