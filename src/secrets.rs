//! The three server secrets: the JWT signing key, the API-key pepper and the wallet master key.
//!
//! In production they must be configured. In development, any that is missing is generated
//! once and kept in `<data_dir>/secrets.json` (mode 0600, in a directory the gateway creates
//! with mode 0700), so tokens and keys survive restarts.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::Path;

use anyhow::Context;
use morpheus_storage::private_files::{create_private_dir_all, private_file_options};
use ring::rand::{SecureRandom, SystemRandom};
use secrecy::{ExposeSecret, SecretString};

use crate::configuration::{Environment, Settings};

/// Secrets in usable form. `Debug` shows nothing.
pub struct Secrets {
    pub jwt_secret: Vec<u8>,
    /// Retired JWT keys: they only verify tokens issued before the rotation.
    pub jwt_previous_secrets: Vec<Vec<u8>>,
    pub api_key_pepper: Vec<u8>,
    pub wallet_master_key: Vec<u8>,
    /// Retired wallet master keys, kept to open what they sealed.
    pub wallet_previous_master_keys: Vec<Vec<u8>>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets(..)")
    }
}

const JWT: &str = "jwt_secret";
const PEPPER: &str = "api_key_pepper";
const MASTER: &str = "wallet_master_key";

impl Secrets {
    /// # Errors
    /// In production when a secret is missing; anywhere when one is malformed (too short, or a
    /// master key that is not 64 hex digits) or the development file cannot be written.
    pub fn resolve(settings: &Settings) -> anyhow::Result<Self> {
        let configured = [
            (JWT, settings.jwt_secret.as_ref()),
            (PEPPER, settings.api_key_pepper.as_ref()),
            (MASTER, settings.wallet_master_key.as_ref()),
        ];
        let missing: Vec<&str> = configured
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| *k)
            .collect();
        let mut values: BTreeMap<&str, String> = configured
            .iter()
            .filter_map(|(k, v)| v.map(|s| (*k, s.expose_secret().to_owned())))
            .collect();
        if !missing.is_empty() {
            if settings.env == Environment::Production {
                anyhow::bail!(
                    "MORPHEUS_ENV=production but these secrets are not configured: {}. Set {}.",
                    missing.join(", "),
                    missing
                        .iter()
                        .map(|k| format!("MORPHEUS_{}", k.to_uppercase()))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            let generated = development_secrets(settings.data_dir(), &missing)?;
            values.extend(generated);
        }
        let mut secrets = Self::from_values(&values)?;
        if let Some(previous) = &settings.jwt_previous_secrets {
            secrets.jwt_previous_secrets = previous
                .expose_secret()
                .split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(|k| k.as_bytes().to_vec())
                .collect();
            anyhow::ensure!(
                secrets.jwt_previous_secrets.iter().all(|k| k.len() >= 32),
                "every key in MORPHEUS_JWT_PREVIOUS_SECRETS must be at least 32 bytes"
            );
        }
        if let Some(previous) = &settings.wallet_previous_master_keys {
            secrets.wallet_previous_master_keys = previous
                .expose_secret()
                .split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(|k| hex::decode(k).ok().filter(|k| k.len() == 32))
                .collect::<Option<Vec<_>>>()
                .context(
                    "MORPHEUS_WALLET_PREVIOUS_MASTER_KEYS must be comma-separated keys of 64 \
                     hexadecimal digits",
                )?;
        }
        if settings.env == Environment::Production {
            secrets.refuse_predictable(settings)?;
        }
        Ok(secrets)
    }

    /// Production only: every configured secret must look random (development generates
    /// its own, and tests use fixed ones).
    fn refuse_predictable(&self, settings: &Settings) -> anyhow::Result<()> {
        let metrics_token = settings
            .metrics_token
            .as_ref()
            .map(|t| t.expose_secret().as_bytes().to_vec());
        let checked = [
            ("MORPHEUS_JWT_SECRET", Some(&self.jwt_secret)),
            ("MORPHEUS_API_KEY_PEPPER", Some(&self.api_key_pepper)),
            ("MORPHEUS_WALLET_MASTER_KEY", Some(&self.wallet_master_key)),
            ("MORPHEUS_METRICS_TOKEN", metrics_token.as_ref()),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.map(|v| (name, v)))
        .chain(
            self.jwt_previous_secrets
                .iter()
                .map(|k| ("MORPHEUS_JWT_PREVIOUS_SECRETS", k)),
        )
        .chain(
            self.wallet_previous_master_keys
                .iter()
                .map(|k| ("MORPHEUS_WALLET_PREVIOUS_MASTER_KEYS", k)),
        );
        for (name, value) in checked {
            if let Some(why) = predictable(value) {
                anyhow::bail!(
                    "{name} is not random ({why}); with MORPHEUS_ENV=production every secret \
                     must be, e.g. `openssl rand -hex 32`"
                );
            }
        }
        Ok(())
    }

    fn from_values(values: &BTreeMap<&str, String>) -> anyhow::Result<Self> {
        let get = |k: &str| values.get(k).map(String::as_str).unwrap_or_default();
        let jwt_secret = get(JWT).as_bytes().to_vec();
        anyhow::ensure!(
            jwt_secret.len() >= 32,
            "MORPHEUS_JWT_SECRET must be at least 32 bytes"
        );
        let api_key_pepper = get(PEPPER).as_bytes().to_vec();
        anyhow::ensure!(
            api_key_pepper.len() >= 32,
            "MORPHEUS_API_KEY_PEPPER must be at least 32 bytes"
        );
        let wallet_master_key = hex::decode(get(MASTER).trim())
            .ok()
            .filter(|k| k.len() == 32)
            .context("MORPHEUS_WALLET_MASTER_KEY must be 64 hexadecimal digits (32 bytes)")?;
        Ok(Self {
            jwt_secret,
            jwt_previous_secrets: Vec::new(),
            api_key_pepper,
            wallet_master_key,
            wallet_previous_master_keys: Vec::new(),
        })
    }
}

/// Why a secret is obviously not random, if it is: one character repeated, too few distinct
/// characters for its length, a short pattern repeated (`changemechangeme…`), or a run of
/// characters each the one before plus the same step (`0123…`, `abcd…`) over more than half
/// the secret. Random secrets fail none of these but with negligible odds (below 1e-10 for 32
/// random hex digits, far less for longer ones). A wallet master key is judged on its 32 bytes, not on its hex digits.
fn predictable(secret: &[u8]) -> Option<&'static str> {
    let distinct = secret
        .iter()
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    if distinct <= 1 {
        return Some("one character repeated");
    }
    if distinct < (secret.len() / 5).clamp(2, 8) {
        return Some("too few distinct characters");
    }
    let short_period = (1..=secret.len() / 2)
        .any(|period| secret.iter().skip(period).zip(secret).all(|(a, b)| a == b));
    if short_period {
        return Some("a short pattern repeated");
    }
    // The longest stretch where each character is the one before plus the same step. Counting
    // steps anywhere in the secret instead flagged random short secrets now and then
    // (`11d0073388888bb7` has 8 equal neighbours out of 15).
    let steps: Vec<u8> = secret
        .windows(2)
        .map(|pair| pair[1].wrapping_sub(pair[0]))
        .collect();
    let longest_run = steps
        .chunk_by(|a, b| a == b)
        .map(<[u8]>::len)
        .max()
        .unwrap_or(0);
    if longest_run * 2 > steps.len() {
        return Some("a sequence of characters");
    }
    None
}

/// 32 random bytes as 64 hex digits: valid for all three secrets.
fn random_secret() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| anyhow::anyhow!("the system random source failed"))?;
    Ok(hex::encode(bytes))
}

/// Loads the development secrets file, adds whatever is missing, and writes it back.
fn development_secrets(
    data_dir: &Path,
    missing: &[&'static str],
) -> anyhow::Result<Vec<(&'static str, String)>> {
    let path = data_dir.join("secrets.json");
    let mut stored: BTreeMap<String, String> = match fs::read_to_string(&path) {
        Ok(text) => {
            morpheus_storage::private_files::warn_if_shared(&path);
            serde_json::from_str(&text)
                .with_context(|| format!("{} is not valid JSON", path.display()))?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let mut changed = false;
    let mut out = Vec::new();
    for &key in missing {
        let value = match stored.get(key) {
            Some(v) => v.clone(),
            None => {
                let v = random_secret()?;
                stored.insert(key.to_owned(), v.clone());
                changed = true;
                v
            }
        };
        out.push((key, value));
    }
    if changed {
        tracing::warn!(
            path = %path.display(),
            "generated development secrets; set MORPHEUS_JWT_SECRET, MORPHEUS_API_KEY_PEPPER and \
             MORPHEUS_WALLET_MASTER_KEY (and MORPHEUS_ENV=production) in production"
        );
        write_private(&path, &serde_json::to_string_pretty(&stored)?)?;
    }
    Ok(out)
}

fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        create_private_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut file = private_file_options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    Ok(())
}

/// A secret given as text in configuration (for tests and tools).
pub fn secret(s: &str) -> SecretString {
    SecretString::from(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(dir: &Path) -> Settings {
        Settings {
            data_dir: dir.to_path_buf(),
            ..Settings::default()
        }
    }

    #[test]
    fn development_secrets_are_generated_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let a = Secrets::resolve(&settings(dir.path())).unwrap();
        let b = Secrets::resolve(&settings(dir.path())).unwrap();
        assert_eq!(a.jwt_secret, b.jwt_secret);
        assert_eq!(a.wallet_master_key.len(), 32);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join("secrets.json"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn production_refuses_to_start_without_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let s = Settings {
            env: Environment::Production,
            ..settings(dir.path())
        };
        let err = Secrets::resolve(&s).unwrap_err().to_string();
        assert!(err.contains("MORPHEUS_JWT_SECRET"), "{err}");
        assert!(!dir.path().join("secrets.json").exists());
    }

    #[test]
    fn random_secrets_pass_and_obviously_predictable_ones_do_not() {
        for _ in 0..2000 {
            let random = random_secret().unwrap();
            assert_eq!(predictable(random.as_bytes()), None, "{random}");
            assert_eq!(
                predictable(&hex::decode(&random).unwrap()),
                None,
                "{random}"
            );
            assert_eq!(predictable(&random.as_bytes()[..32]), None, "{random}");
        }
        for (secret, why) in [
            ("x".repeat(40), "one character repeated"),
            ("ab".repeat(20), "too few distinct characters"),
            ("aab".repeat(12), "too few distinct characters"),
            ("changeme".repeat(5), "too few distinct characters"),
            (
                "my-gateway-secret-my-gateway-secret-my-gat".to_owned(),
                "a short pattern repeated",
            ),
            (
                "abcdefghijklmnopqrstuvwxyz0123456789".to_owned(),
                "a sequence of characters",
            ),
            ("0123456789".repeat(4), "a short pattern repeated"),
        ] {
            assert_eq!(predictable(secret.as_bytes()), Some(why), "{secret}");
        }
        // Seen from the random source in CI: equal neighbours, but no long stretch of them.
        assert_eq!(predictable(b"11d0073388888bb78524123f08d5a26a"), None);
        // The test suite's fixed master key: 00 01 02 … 1f.
        let counting: Vec<u8> = (0..32).collect();
        assert_eq!(predictable(&counting), Some("a sequence of characters"));
    }

    #[test]
    fn production_refuses_predictable_secrets_naming_the_setting() {
        let dir = tempfile::tempdir().unwrap();
        let random = || secret(&random_secret().unwrap());
        let base = Settings {
            env: Environment::Production,
            jwt_secret: Some(random()),
            api_key_pepper: Some(random()),
            wallet_master_key: Some(random()),
            ..settings(dir.path())
        };
        assert!(Secrets::resolve(&base).is_ok());
        let cases = [
            (
                Settings {
                    jwt_secret: Some(secret(&"x".repeat(40))),
                    ..base.clone()
                },
                "MORPHEUS_JWT_SECRET",
            ),
            (
                Settings {
                    api_key_pepper: Some(secret(&"secret12".repeat(4))),
                    ..base.clone()
                },
                "MORPHEUS_API_KEY_PEPPER",
            ),
            (
                Settings {
                    wallet_master_key: Some(secret(&"ab".repeat(32))),
                    ..base.clone()
                },
                "MORPHEUS_WALLET_MASTER_KEY",
            ),
            (
                Settings {
                    jwt_previous_secrets: Some(secret(&format!(
                        "{},{}",
                        random_secret().unwrap(),
                        "k".repeat(32)
                    ))),
                    ..base.clone()
                },
                "MORPHEUS_JWT_PREVIOUS_SECRETS",
            ),
            (
                Settings {
                    wallet_previous_master_keys: Some(secret(&"00".repeat(32))),
                    ..base.clone()
                },
                "MORPHEUS_WALLET_PREVIOUS_MASTER_KEYS",
            ),
            (
                Settings {
                    metrics_token: Some(secret("metrics-metrics-metrics")),
                    ..base.clone()
                },
                "MORPHEUS_METRICS_TOKEN",
            ),
        ];
        for (settings, name) in cases {
            let err = Secrets::resolve(&settings).unwrap_err().to_string();
            assert!(err.starts_with(&format!("{name} is not random (")), "{err}");
            assert!(!err.contains('\n'), "{err}");
            // Development keeps accepting them (tests and demos use fixed ones).
            let development = Settings {
                env: Environment::Development,
                ..settings
            };
            assert!(Secrets::resolve(&development).is_ok(), "{name}");
        }
    }

    #[test]
    fn weak_or_malformed_secrets_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let good = random_secret().unwrap();
        let master = random_secret().unwrap();
        let base = Settings {
            env: Environment::Production,
            jwt_secret: Some(secret(&good)),
            api_key_pepper: Some(secret(&good)),
            wallet_master_key: Some(secret(&master)),
            ..settings(dir.path())
        };
        assert!(Secrets::resolve(&base).is_ok());
        let short_jwt = Settings {
            jwt_secret: Some(secret(&"x".repeat(31))),
            ..base.clone()
        };
        assert!(Secrets::resolve(&short_jwt).is_err());
        let bad_master = Settings {
            wallet_master_key: Some(secret(&"ab".repeat(31))),
            ..base.clone()
        };
        assert!(Secrets::resolve(&bad_master).is_err());

        let rotated = Settings {
            jwt_previous_secrets: Some(secret(&format!(
                "{}, {}",
                random_secret().unwrap(),
                random_secret().unwrap()
            ))),
            wallet_previous_master_keys: Some(secret(&master)),
            ..base.clone()
        };
        let s = Secrets::resolve(&rotated).unwrap();
        assert_eq!(s.jwt_previous_secrets.len(), 2);
        assert_eq!(
            s.wallet_previous_master_keys,
            vec![hex::decode(&master).unwrap()]
        );
        let short_previous = Settings {
            jwt_previous_secrets: Some(secret("too-short")),
            ..base.clone()
        };
        assert!(Secrets::resolve(&short_previous).is_err());
        let bad_previous_master = Settings {
            wallet_previous_master_keys: Some(secret("zz")),
            ..base
        };
        assert!(Secrets::resolve(&bad_previous_master).is_err());
    }
}
