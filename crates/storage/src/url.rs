//! Which database to open, decided once from the configured URL.

use std::fmt;
use std::path::PathBuf;

use anyhow::{Context, bail};

/// A database location. The backend is chosen here, from the scheme, rather than by diesel's
/// derived `MultiConnection::establish`, which tries each backend in turn and hides the real
/// error (and would open any string at all as a SQLite file).
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// A libpq URL, `postgres://…` or `postgresql://…`, passed through unchanged.
    Postgres(String),
    /// A SQLite database file.
    Sqlite(PathBuf),
}

impl DatabaseUrl {
    /// Accepts `postgres://…`, `postgresql://…`, `sqlite://PATH`, `sqlite:PATH` or a bare file
    /// path. `sqlite:///var/lib/gw.db` is therefore the absolute path `/var/lib/gw.db`.
    ///
    /// # Errors
    /// An empty string, an unknown `scheme://`, or an in-memory SQLite database: with a pool,
    /// every connection would open its own empty database.
    pub fn parse(raw: &str) -> anyhow::Result<DatabaseUrl> {
        let raw = raw.trim();
        if raw.is_empty() {
            bail!("the database URL is empty");
        }
        if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
            return Ok(DatabaseUrl::Postgres(raw.to_owned()));
        }
        let path = if let Some(rest) = raw.strip_prefix("sqlite://") {
            rest
        } else if let Some(rest) = raw.strip_prefix("sqlite:") {
            rest
        } else if let Some((scheme, _)) = raw.split_once("://") {
            bail!(
                "unsupported database URL scheme {scheme:?}: use postgres://, postgresql://, \
                 sqlite:// or a file path"
            );
        } else {
            raw
        };
        if path.is_empty() {
            bail!("the SQLite database URL has no file path");
        }
        if is_in_memory(path) {
            bail!(
                "an in-memory SQLite database cannot be used: every pooled connection would \
                 open its own empty database; give a file path instead"
            );
        }
        Ok(DatabaseUrl::Sqlite(PathBuf::from(path)))
    }

    /// What diesel's `establish` expects for this backend.
    pub(crate) fn connection_string(&self) -> anyhow::Result<String> {
        match self {
            DatabaseUrl::Postgres(url) => Ok(url.clone()),
            DatabaseUrl::Sqlite(path) => path
                .to_str()
                .map(str::to_owned)
                .context("the SQLite database path is not valid UTF-8"),
        }
    }
}

/// SQLite's in-memory spellings: `:memory:`, and URI filenames such as `file::memory:` or
/// `file:x?mode=memory`.
fn is_in_memory(path: &str) -> bool {
    path == ":memory:"
        || (path.starts_with("file:")
            && (path.contains(":memory:") || path.contains("mode=memory")))
}

/// Safe to log: a Postgres password (in the user-info part or a `password=` parameter) is
/// replaced by `***`.
impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatabaseUrl::Postgres(url) => f.write_str(&redact_password(url)),
            DatabaseUrl::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
        }
    }
}

/// `Debug` goes through the redacting `Display`, so `{:?}` cannot leak the password either.
impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    // Userinfo ends at the last '@' before the query. Looking past the first '/' as well
    // over-redacts an odd database name rather than leak a password with a raw '/' in it.
    let query_start = rest.find('?').unwrap_or(rest.len());
    let (before_query, query) = rest.split_at(query_start);
    let before_query = match before_query.rsplit_once('@') {
        Some((userinfo, host_and_path)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host_and_path}"),
            None => format!("{userinfo}@{host_and_path}"),
        },
        None => before_query.to_owned(),
    };
    let query = match query.strip_prefix('?') {
        Some(query) => {
            let pairs: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                    _ => pair.to_owned(),
                })
                .collect();
            format!("?{}", pairs.join("&"))
        }
        None => String::new(),
    };
    format!("{scheme}://{before_query}{query}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlite(path: &str) -> DatabaseUrl {
        DatabaseUrl::Sqlite(PathBuf::from(path))
    }

    #[test]
    fn postgres_urls_are_kept_verbatim() {
        for url in [
            "postgres://u:p@db:5432/gw",
            "postgresql://db/gw?sslmode=require",
        ] {
            assert_eq!(
                DatabaseUrl::parse(url).unwrap(),
                DatabaseUrl::Postgres(url.into())
            );
        }
    }

    #[test]
    fn sqlite_urls_and_bare_paths_are_files() {
        assert_eq!(
            DatabaseUrl::parse("sqlite://data/gw.db").unwrap(),
            sqlite("data/gw.db")
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite:///var/lib/gw.db").unwrap(),
            sqlite("/var/lib/gw.db")
        );
        assert_eq!(DatabaseUrl::parse("sqlite:gw.db").unwrap(), sqlite("gw.db"));
        assert_eq!(DatabaseUrl::parse(" ./gw.db ").unwrap(), sqlite("./gw.db"));
    }

    #[test]
    fn in_memory_empty_and_unknown_urls_are_refused() {
        for bad in [
            "",
            "   ",
            ":memory:",
            "sqlite::memory:",
            "sqlite://:memory:",
            "sqlite:",
            "sqlite://",
            "file::memory:?cache=shared",
            "sqlite:file:db?mode=memory",
            "mysql://root@localhost/gw",
        ] {
            assert!(DatabaseUrl::parse(bad).is_err(), "{bad:?} was accepted");
        }
        let err = DatabaseUrl::parse(":memory:").unwrap_err().to_string();
        assert!(err.contains("in-memory"), "{err}");
    }

    #[test]
    fn display_hides_postgres_passwords() {
        let cases = [
            (
                "postgres://gw:s3cret@db:5432/gw",
                "postgres://gw:***@db:5432/gw",
            ),
            ("postgres://gw:p%40ss@db/gw", "postgres://gw:***@db/gw"),
            ("postgres://gw:s3/cret@db/gw", "postgres://gw:***@db/gw"),
            ("postgres://gw:s3@cret@db/gw", "postgres://gw:***@db/gw"),
            ("postgres://gw@db/gw", "postgres://gw@db/gw"),
            ("postgresql://db", "postgresql://db"),
            (
                "postgres://db/gw?user=gw&password=s3cret&sslmode=require",
                "postgres://db/gw?user=gw&password=***&sslmode=require",
            ),
        ];
        for (url, shown) in cases {
            let parsed = DatabaseUrl::parse(url).unwrap();
            assert_eq!(parsed.to_string(), shown);
            assert!(!format!("{parsed:?}").contains("s3cret"));
        }
        assert_eq!(sqlite("/tmp/gw.db").to_string(), "sqlite:///tmp/gw.db");
    }
}
