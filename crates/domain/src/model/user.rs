use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};

use super::UserId;
use crate::validation::{Invalid, check_char_len};

/// A syntactically valid e-mail address in NFKC, lower case, so that uniqueness ignores case
/// and compatibility forms (`Alice@Example.com`, `ａｌｉｃｅ@example.com` and `alice@example.com`
/// are one account). Addresses carrying an invisible or formatting character (zero-width
/// characters, bidi controls, soft hyphens, …) are refused: they display as another address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

/// An address's confusable skeleton (Unicode TS #39): two addresses with the same skeleton look
/// alike (`аlice` with a Cyrillic `а`, `a1ice`, `alice`), and are one account.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EmailSkeleton(String);

impl EmailSkeleton {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Email {
    /// RFC 5321 caps a forward path at 256 octets including the angle brackets.
    pub const MAX_LEN: usize = 254;

    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let trimmed = raw.trim();
        if let Some(c) = trimmed
            .chars()
            .find(|&c| crate::validation::is_invisible(c))
        {
            return Err(Invalid::new(
                "value_error",
                format!(
                    "value is not a valid email address: it contains an invisible or formatting \
                     character (U+{:04X})",
                    u32::from(c)
                ),
            ));
        }
        let normalised = nfkc_lowercase(trimmed);
        if normalised.len() > Self::MAX_LEN {
            return Err(Invalid::too_long(Self::MAX_LEN));
        }
        let parsed = email_address::EmailAddress::parse_with_options(
            &normalised,
            email_address::Options::default()
                .without_display_text()
                .without_domain_literal(),
        )
        .map_err(|e| {
            Invalid::new(
                "value_error",
                format!("value is not a valid email address: {e}"),
            )
        })?;
        // A host without a dot ("user@localhost") is legal in RFC 5322 but never a real
        // mailbox for a public service; the reference gateway refused it too.
        if !parsed.domain().contains('.') {
            return Err(Invalid::new(
                "value_error",
                "value is not a valid email address: the domain must contain a dot",
            ));
        }
        Ok(Self(parsed.as_str().to_owned()))
    }

    /// Rebuilds an address that was validated before it was stored.
    pub fn from_trusted(stored: String) -> Self {
        Self(stored)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The UTS #39 skeleton of the address: what it looks like, whatever the characters.
    pub fn skeleton(&self) -> EmailSkeleton {
        EmailSkeleton(unicode_security::skeleton(&self.0).collect())
    }
}

/// NFKC, lower case, NFKC again (lowering can leave a string that is not NFKC).
fn nfkc_lowercase(text: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    text.nfkc()
        .collect::<String>()
        .to_lowercase()
        .nfkc()
        .collect()
}

/// A password as the user typed it. Never logged (`Debug` is redacted by `SecretString`).
#[derive(Debug, Clone)]
pub struct Password(SecretString);

impl Password {
    /// The contract's minimum (FastAPI schema `minLength: 8`).
    pub const MIN_CHARS: usize = 8;
    /// Hashing cost grows with length; the cap stops a megabyte "password" from being a cheap
    /// way to burn CPU. Long passphrases still fit, and nothing is ever truncated.
    pub const MAX_CHARS: usize = 1024;

    /// For a new password: the length rules, and not one of the most common passwords.
    pub fn parse(raw: String) -> Result<Self, Invalid> {
        check_char_len(&raw, Self::MIN_CHARS, Self::MAX_CHARS)?;
        // Eight spaces, tabs or zero-width characters are no secret, and some clients trim
        // them away before they ever reach a login form.
        if raw
            .chars()
            .all(|c| c.is_whitespace() || crate::validation::is_invisible(c))
        {
            return Err(Invalid::new(
                "value_error",
                "A password must contain characters other than spaces and control characters",
            ));
        }
        if is_common_password(&raw) {
            return Err(Invalid::new(
                "value_error",
                "This password is one of the most common ones; choose another",
            ));
        }
        Ok(Self(SecretString::from(raw)))
    }

    /// For login: any non-empty input up to the cap is checked against the stored hash, so a
    /// password set under an older, shorter minimum still works.
    pub fn for_login(raw: String) -> Result<Self, Invalid> {
        check_char_len(&raw, Self::MIN_CHARS, Self::MAX_CHARS)?;
        Ok(Self(SecretString::from(raw)))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

/// Passwords of eight characters or more that top every breach corpus (NIST SP 800-63B asks
/// verifiers to refuse them). A short list on purpose: it catches the guesses an attacker tries
/// first, without a data file.
const COMMON_PASSWORDS: &[&str] = &[
    "password",
    "password1",
    "password12",
    "password123",
    "passw0rd",
    "p@ssw0rd",
    "12345678",
    "123456789",
    "1234567890",
    "0123456789",
    "987654321",
    "123123123",
    "12341234",
    "11223344",
    "qwertyui",
    "qwertyuiop",
    "qwerty123",
    "qwerty12",
    "1q2w3e4r",
    "1q2w3e4r5t",
    "q1w2e3r4",
    "q1w2e3r4t5",
    "1qaz2wsx",
    "zaq12wsx",
    "123qweasd",
    "1234qwer",
    "asdfghjk",
    "asdfasdf",
    "abc12345",
    "abcd1234",
    "iloveyou",
    "sunshine",
    "princess",
    "football",
    "baseball",
    "welcome1",
    "welcome123",
    "trustno1",
    "superman",
    "starwars",
    "whatever",
    "computer",
    "michelle",
    "jennifer",
    "corvette",
    "mercedes",
    "letmein1",
    "monkey123",
    "dragon123",
    "changeme",
    "admin123",
    "administrator",
    "iloveyou1",
    "master123",
    "shadow123",
];

fn is_common_password(candidate: &str) -> bool {
    let lowered = candidate.to_lowercase();
    COMMON_PASSWORDS.contains(&lowered.as_str())
}

/// An optional display name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserName(String);

impl UserName {
    pub const MAX_CHARS: usize = 255;

    pub fn parse(raw: String) -> Result<Self, Invalid> {
        check_char_len(&raw, 0, Self::MAX_CHARS)?;
        crate::validation::check_no_nul(&raw)?;
        Ok(Self(raw))
    }

    pub fn from_trusted(stored: String) -> Self {
        Self(stored)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A stored password hash in PHC string format (`$argon2id$v=19$m=…`).
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(pub String);

impl std::fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordHash(..)")
    }
}

#[derive(Debug, Clone)]
pub struct User {
    pub id: UserId,
    pub email: Email,
    pub name: Option<UserName>,
    pub password_hash: PasswordHash,
    pub is_active: bool,
    /// Raised whenever the user's sign-ins end (logout, password change, signing out
    /// everywhere, disabling); access tokens issued under an older generation are refused.
    pub token_generation: i64,
    /// The user's share of the operator's rate limits.
    pub limit_multiplier: super::LimitMultiplier,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What registration stores.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub id: UserId,
    pub email: Email,
    pub name: Option<UserName>,
    pub password_hash: PasswordHash,
    pub created_at: DateTime<Utc>,
}

/// What deleting an account removed, reported back to the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AccountDeletion {
    /// The user's own marketplace sessions, moved into the shared pool: they serve other
    /// requests until their end, when they are closed on chain.
    pub sessions: u64,
    pub api_keys: u64,
    pub private_key: bool,
    pub automation_settings: bool,
    pub delegations: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_validated() {
        assert_eq!(
            Email::parse(" Alice@Example.COM ").unwrap().as_str(),
            "alice@example.com"
        );
        for bad in [
            "",
            "alice",
            "alice@",
            "@example.com",
            "a b@example.com",
            "alice@localhost",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} was accepted");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert_eq!(Email::parse(&long).unwrap_err().kind, "string_too_long");
    }

    #[test]
    fn emails_are_nfkc_normalised() {
        // Fullwidth letters and a compatibility ligature are the plain address.
        assert_eq!(
            Email::parse("ＡＤＡ@ﬁrm.example.com").unwrap().as_str(),
            "ada@firm.example.com"
        );
    }

    #[test]
    fn emails_with_invisible_or_formatting_characters_are_refused() {
        for sneaky in [
            "ad\u{200B}a@example.com",  // zero-width space
            "ad\u{200D}a@example.com",  // zero-width joiner
            "ad\u{2060}a@example.com",  // word joiner
            "ada\u{00AD}@example.com",  // soft hyphen
            "\u{202E}moc.elpmaxe@ada",  // right-to-left override
            "ada@exa\u{2066}mple.com",  // left-to-right isolate
            "ada\u{FEFF}@example.com",  // byte-order mark
            "ada\u{E0041}@example.com", // tag character
            "ad\u{0007}a@example.com",  // a control character
        ] {
            let refused = Email::parse(sneaky).unwrap_err();
            assert_eq!(refused.kind, "value_error", "{sneaky:?}");
            assert!(refused.message.contains("invisible"), "{refused:?}");
        }
    }

    #[test]
    fn look_alike_addresses_share_a_skeleton_and_others_do_not() {
        let skeleton = |s: &str| Email::parse(s).unwrap().skeleton();
        let plain = skeleton("alice@example.com");
        for look_alike in [
            "\u{0430}lice@example.com", // Cyrillic а
            "al\u{0456}ce@example.com", // Cyrillic і
            "alice@ex\u{0430}mple.com", // in the domain
            "a\u{217C}ice@example.com", // SMALL ROMAN NUMERAL FIFTY: NFKC makes it an l
            "alice@examp1e.com",        // digit one
        ] {
            assert_eq!(skeleton(look_alike), plain, "{look_alike:?}");
        }
        for other in [
            "alicia@example.com",
            "alice@example.org",
            "alíce@example.com",
        ] {
            assert_ne!(skeleton(other), plain, "{other:?}");
        }
    }

    #[test]
    fn passwords_of_only_whitespace_or_control_characters_are_refused() {
        for blank in [
            " ".repeat(8),
            "\t".repeat(12),
            "\u{3000}".repeat(8),
            "\u{200B}".repeat(9),
            " \u{0001}\u{0002}\u{0003}\u{0004}\u{0005}\u{0006} ".to_owned(),
        ] {
            assert_eq!(
                Password::parse(blank.clone()).unwrap_err().kind,
                "value_error",
                "{blank:?}"
            );
        }
        assert!(Password::parse("  spaced out  ".into()).is_ok());
    }

    #[test]
    fn passwords_are_counted_in_characters_and_capped() {
        assert_eq!(
            Password::parse("1234567".into()).unwrap_err().kind,
            "string_too_short"
        );
        assert!(Password::parse("12345679".into()).is_ok());
        // 8 characters, 16 bytes.
        assert!(Password::parse("éééééééé".into()).is_ok());
        assert!(Password::parse("correct horse battery staple".into()).is_ok());
        assert!(Password::parse("x".repeat(1024)).is_ok());
        assert_eq!(
            Password::parse("x".repeat(1025)).unwrap_err().kind,
            "string_too_long"
        );
    }

    #[test]
    fn the_most_common_passwords_are_refused_for_new_accounts_only() {
        for common in [
            "password",
            "Password1",
            "12345678",
            "qwertyuiop",
            "iloveyou",
        ] {
            assert_eq!(
                Password::parse(common.into()).unwrap_err().kind,
                "value_error"
            );
            assert!(Password::for_login(common.into()).is_ok(), "{common}");
        }
        assert!(Password::parse("password-but-longer".into()).is_ok());
    }

    #[test]
    fn debug_output_hides_secrets() {
        let p = Password::parse("hunter2hunter2".into()).unwrap();
        assert!(!format!("{p:?}").contains("hunter2"));
        let h = PasswordHash("$argon2id$secret".into());
        assert!(!format!("{h:?}").contains("secret"));
    }
}
