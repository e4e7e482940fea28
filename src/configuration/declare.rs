//! The `settings!` macro: one declaration per setting generates the `Settings` struct, its
//! `Default`, and the table ([`Spec`]) that parsing, validation, the command-line flags,
//! README's settings table and `morpheus-gateway config` are all made from.
//!
//! A declaration reads
//!
//! ```text
//! /// One line for README (and the field's rustdoc).
//! name: Type = default
//!     [, env = "VAR"]          // default: MORPHEUS_ + NAME
//!     [, cli = "flag"]         // also a global `--flag` on the command line
//!     [, range = LO ..= HI]    // numbers (or optional numbers) only
//!     [, check = path::to_fn]  // fn(&Type) -> Result<(), String>, after parsing
//!     [, shown = path::to_fn]  // fn(&Type) -> Option<String>, instead of the plain value
//!     [, default_doc = "…"]    // README's default column, when the value alone misleads
//! ;
//! ```
//!
//! with the optional parts in that order. Whether a setting is secret follows from its type
//! (`SecretString`): a secret is never shown, only whether it is set.

use super::types::SettingType;

/// One declared setting, as the loader and the renderers see it.
pub struct Spec<S> {
    /// The setting's name: the struct field and the key in the TOML file.
    pub name: &'static str,
    /// The environment variable that sets it.
    pub env: String,
    /// The command-line flag (without `--`) that sets it, if any.
    pub cli: Option<&'static str>,
    /// The one-line description.
    pub doc: String,
    /// What the values look like, for README ("whole number 1–3600", "`normal` or `full`").
    pub kind: String,
    pub secret: bool,
    /// A switch on the command line (`--flag`, no value).
    pub switch: bool,
    /// How README shows the default.
    pub default_text: String,
    /// Parses a value and stores it.
    pub(super) apply: fn(&mut S, Raw<'_>) -> Result<(), String>,
    /// Checks the stored value (bounds, `check`).
    pub(super) validate: fn(&S) -> Result<(), String>,
    /// The stored value for display (`None` when unset); secrets show as `<redacted>`.
    pub(super) show: fn(&S) -> Option<String>,
}

/// A value before parsing: text (environment, command line) or a TOML value (the file).
#[derive(Clone, Copy)]
pub enum Raw<'a> {
    Text(&'a str),
    Toml(&'a toml::Value),
}

impl<S> Spec<S> {
    /// The stored value as shown to an operator (`None` when unset).
    pub fn show(&self, settings: &S) -> Option<String> {
        (self.show)(settings)
    }

    /// Checks the stored value.
    ///
    /// # Errors
    /// The reason, without the value when the setting is secret.
    pub fn validate(&self, settings: &S) -> Result<(), String> {
        (self.validate)(settings)
    }
}

/// Parses a raw value as `T`.
pub(super) fn parse<T: SettingType>(raw: Raw<'_>) -> Result<T, String> {
    match raw {
        Raw::Text(text) => T::parse(text),
        Raw::Toml(value) => T::from_toml(value),
    }
}

/// The kind column: the type's description, with its bounds.
pub(super) fn kind<T: SettingType>(range: Option<(String, String)>) -> String {
    match range {
        Some((lo, hi)) => format!("{} {lo}–{hi}", T::kind()),
        None => T::kind(),
    }
}

/// Joins the lines of a doc comment into one.
pub(super) fn doc_line(lines: &[&str]) -> String {
    lines
        .iter()
        .map(|line| line.trim())
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

macro_rules! settings {
    (
        $(
            $(#[doc = $doc:literal])+
            $name:ident : $ty:ty = $default:expr
            $(, env = $env:literal)?
            $(, cli = $cli:literal)?
            $(, range = $lo:literal ..= $hi:literal)?
            $(, check = $check:path)?
            $(, shown = $shown:path)?
            $(, default_doc = $default_doc:literal)?
            ;
        )*
    ) => {
        /// The gateway's settings. Declared once, in `src/configuration.rs`; build one with
        /// `Settings { field: …, ..Settings::default() }` or load it with [`load`].
        #[derive(Debug, Clone)]
        pub struct Settings {
            $( $(#[doc = $doc])+ pub $name: $ty, )*
        }

        impl Default for Settings {
            fn default() -> Self {
                Self { $( $name: $default, )* }
            }
        }

        /// Every setting, in declaration order.
        pub fn specs() -> &'static [$crate::configuration::declare::Spec<Settings>] {
            use $crate::configuration::declare::{self as d, Spec};
            use $crate::configuration::types::SettingType as _;
            static SPECS: std::sync::LazyLock<Vec<Spec<Settings>>> = std::sync::LazyLock::new(|| {
                let defaults = Settings::default();
                vec![$({
                    #[allow(unused_variables)]
                    let range: Option<(String, String)> = None;
                    $( let range = Some(($lo.to_string(), $hi.to_string())); )?
                    #[allow(unused_mut, unused_assignments)]
                    let mut env = format!("MORPHEUS_{}", stringify!($name).to_uppercase());
                    $( env = $env.to_owned(); )?
                    #[allow(unused_mut, unused_assignments)]
                    let mut cli: Option<&'static str> = None;
                    $( cli = Some($cli); )?
                    let show: fn(&Settings) -> Option<String> = |s| {
                        #[allow(unused_variables)]
                        let shown = s.$name.show();
                        $( let shown = $shown(&s.$name); )?
                        shown
                    };
                    #[allow(unused_mut, unused_assignments)]
                    let mut default_text = show(&defaults).unwrap_or_else(|| "unset".to_owned());
                    $( default_text = $default_doc.to_owned(); )?
                    Spec {
                        name: stringify!($name),
                        env,
                        cli,
                        doc: d::doc_line(&[$($doc),+]),
                        kind: d::kind::<$ty>(range),
                        secret: <$ty as $crate::configuration::types::SettingType>::SECRET,
                        switch: <$ty as $crate::configuration::types::SettingType>::SWITCH,
                        default_text,
                        apply: |s, raw| {
                            s.$name = d::parse::<$ty>(raw)?;
                            Ok(())
                        },
                        validate: |s| {
                            #[allow(unused_variables)]
                            let value = &s.$name;
                            $( $crate::configuration::types::check_range(value, $lo, $hi)?; )?
                            $( $check(value)?; )?
                            Ok(())
                        },
                        show,
                    }
                }),*]
            });
            &SPECS
        }
    };
}

pub(crate) use settings;
