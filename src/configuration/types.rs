//! How each type of setting is read from text (environment, command line) or TOML, described
//! in README, and shown.

use std::fmt::Display;
use std::path::PathBuf;

use secrecy::SecretString;

/// A type a setting can have.
pub trait SettingType: Sized {
    /// A secret: never shown, only whether it is set.
    const SECRET: bool = false;
    /// On the command line a flag without a value.
    const SWITCH: bool = false;

    /// What the values look like, for README.
    fn kind() -> String;

    /// Reads the text of an environment variable or a command-line flag.
    ///
    /// # Errors
    /// Why the text is not a value of this type (secrets are never quoted).
    fn parse(text: &str) -> Result<Self, String>;

    /// Reads a value of the TOML file. Strings are read as text, so `workers = "4"` works too.
    ///
    /// # Errors
    /// Why the value is not of this type.
    fn from_toml(value: &toml::Value) -> Result<Self, String> {
        match value {
            toml::Value::String(text) => Self::parse(text),
            toml::Value::Integer(n) => Self::parse(&n.to_string()),
            toml::Value::Float(x) => Self::parse(&x.to_string()),
            toml::Value::Boolean(b) => Self::parse(&b.to_string()),
            other => Err(format!(
                "expected {}, found a {}",
                Self::kind(),
                other.type_str()
            )),
        }
    }

    /// The value as an operator reads it; `None` when unset.
    fn show(&self) -> Option<String>;
}

macro_rules! whole_numbers {
    ($($t:ty),*) => {$(
        impl SettingType for $t {
            fn kind() -> String {
                "whole number".to_owned()
            }
            fn parse(text: &str) -> Result<Self, String> {
                let text = text.trim().replace('_', "");
                text.parse().map_err(|_| format!("{text:?} is not a whole number"))
            }
            fn show(&self) -> Option<String> {
                Some(self.to_string())
            }
        }
        impl Ranged for $t {
            type Bound = $t;
            fn bounded(&self) -> Option<&$t> {
                Some(self)
            }
        }
    )*};
}

whole_numbers!(u8, u16, u32, u64, usize, i64);

impl SettingType for bool {
    const SWITCH: bool = true;
    fn kind() -> String {
        "`true` or `false`".to_owned()
    }
    fn parse(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(format!("{text:?} is not true or false")),
        }
    }
    fn show(&self) -> Option<String> {
        Some(self.to_string())
    }
}

impl SettingType for String {
    fn kind() -> String {
        "text".to_owned()
    }
    fn parse(text: &str) -> Result<Self, String> {
        Ok(text.to_owned())
    }
    fn show(&self) -> Option<String> {
        Some(self.clone())
    }
}

impl SettingType for PathBuf {
    fn kind() -> String {
        "path".to_owned()
    }
    fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("the path is empty".to_owned());
        }
        Ok(PathBuf::from(text))
    }
    fn show(&self) -> Option<String> {
        Some(self.display().to_string())
    }
}

impl SettingType for SecretString {
    const SECRET: bool = true;
    fn kind() -> String {
        "secret text".to_owned()
    }
    fn parse(text: &str) -> Result<Self, String> {
        Ok(SecretString::from(text))
    }
    fn from_toml(value: &toml::Value) -> Result<Self, String> {
        // Not `to_string` on other values: a secret is never echoed, even in an error.
        match value {
            toml::Value::String(text) => Self::parse(text),
            toml::Value::Integer(n) => Self::parse(&n.to_string()),
            other => Err(format!(
                "expected secret text, found a {}",
                other.type_str()
            )),
        }
    }
    fn show(&self) -> Option<String> {
        Some("<redacted>".to_owned())
    }
}

/// Unset when absent, or empty in the environment (`MORPHEUS_X=` unsets X).
impl<T: SettingType> SettingType for Option<T> {
    const SECRET: bool = T::SECRET;
    fn kind() -> String {
        T::kind()
    }
    fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            Ok(None)
        } else {
            T::parse(text).map(Some)
        }
    }
    fn from_toml(value: &toml::Value) -> Result<Self, String> {
        T::from_toml(value).map(Some)
    }
    fn show(&self) -> Option<String> {
        self.as_ref().and_then(T::show)
    }
}

/// A setting that is one of a few words (`development` or `production`).
macro_rules! choice_setting {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $word:literal),+ $(,)? } default $default:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $(
                $(#[$vmeta])*
                $variant,
            )+
        }

        impl Default for $name {
            fn default() -> Self {
                $name::$default
            }
        }

        impl $crate::configuration::types::SettingType for $name {
            fn kind() -> String {
                [$(concat!("`", $word, "`")),+].join(" or ")
            }
            fn parse(text: &str) -> Result<Self, String> {
                match text.trim().to_ascii_lowercase().as_str() {
                    $($word => Ok($name::$variant),)+
                    _ => Err(format!("{text:?} is not one of {}", Self::kind().replace('`', ""))),
                }
            }
            fn show(&self) -> Option<String> {
                Some(match self { $($name::$variant => $word,)+ }.to_owned())
            }
        }
    };
}

pub(crate) use choice_setting;

/// A number with bounds, or an optional one (unset is always within them).
pub trait Ranged {
    type Bound: PartialOrd + Display;
    fn bounded(&self) -> Option<&Self::Bound>;
}

impl<T: Ranged> Ranged for Option<T> {
    type Bound = T::Bound;
    fn bounded(&self) -> Option<&T::Bound> {
        self.as_ref().and_then(T::bounded)
    }
}

/// # Errors
/// When the value lies outside `lo..=hi`.
pub fn check_range<T: Ranged>(value: &T, lo: T::Bound, hi: T::Bound) -> Result<(), String> {
    match value.bounded() {
        Some(v) if *v < lo || *v > hi => Err(format!("{v} is outside {lo}..={hi}")),
        _ => Ok(()),
    }
}
