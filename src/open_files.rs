//! The connection caps, derived from the process's open-file limit so they bite first.
//!
//! Every connection is a file descriptor, and so is every request the gateway makes for it to
//! the proxy-router. Past `RLIMIT_NOFILE`, `accept()` fails: new clients wait in the listen
//! queue and time out, `/health` included, while nothing is answered. What the limit leaves
//! after a fixed reserve (database connections, listeners, the runtime's own descriptors) is
//! shared three ways: connections served, their upstream connections (at most one each), and
//! connections being refused (answered 503 and closed, a moment each). The accept loop stops
//! taking connections once served and refused ones together would exceed their two thirds,
//! so a flood waits in the kernel's listen queue instead of exhausting descriptors.

use anyhow::Context;

/// Descriptors kept for everything but client connections and their upstream ones: the
/// listeners, the runtime (epoll, event and signal descriptors per worker), logs.
const RESERVED: u64 = 64;

/// Descriptors one pooled database connection may use (SQLite: the database, its WAL and its
/// shared-memory file; PostgreSQL: one socket).
const PER_DATABASE_CONNECTION: u64 = 3;

/// Raises the soft open-file limit to the hard one (as Go's runtime does at start) and
/// returns it.
///
/// # Errors
/// When the limit cannot be read.
pub fn raise_limit() -> anyhow::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    let read = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) };
    if read != 0 {
        return Err(std::io::Error::last_os_error()).context("reading RLIMIT_NOFILE");
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we own. Failing leaves the limit as it was.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const raised) } == 0 {
            limit.rlim_cur = limit.rlim_max;
        }
    }
    Ok(limit.rlim_cur)
}

/// The two connection caps for an open-file limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionCaps {
    /// Connections served at most; beyond, a new one is answered 503 and closed.
    pub served: usize,
    /// Connections held at most, served and being refused: beyond, the accept loop waits.
    pub accepted: usize,
}

/// The caps for `open_files` descriptors: `configured` connections served, or the most that
/// fit when it is 0.
///
/// # Errors
/// When `configured` does not fit, or the limit leaves no room for connections at all.
pub fn connection_caps(
    configured: usize,
    open_files: u64,
    db_pool_size: u32,
) -> anyhow::Result<ConnectionCaps> {
    let reserved = RESERVED + PER_DATABASE_CONNECTION * u64::from(db_pool_size);
    let budget = usize::try_from(open_files.saturating_sub(reserved)).unwrap_or(usize::MAX);
    let fit = budget / 3;
    anyhow::ensure!(
        fit > 0,
        "the open-file limit ({open_files}) leaves no room for connections: raise it (ulimit -n, \
         systemd's LimitNOFILE) above {}",
        reserved + 3
    );
    let served = match configured {
        0 => fit,
        n if n <= fit => n,
        n => anyhow::bail!(
            "MORPHEUS_MAX_CONNECTIONS={n} needs an open-file limit of at least {}, and it is \
             {open_files}: raise it (ulimit -n, systemd's LimitNOFILE) or lower the setting \
             (0 takes the most that fit: {fit})",
            3 * n as u64 + reserved
        ),
    };
    Ok(ConnectionCaps {
        served,
        // Upstream connections take at most `served` of the budget.
        accepted: budget - served,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_caps_leave_room_for_upstream_connections_refusals_and_the_reserve() {
        // 256 - 64 - 3 * 10 = 162 descriptors for connections.
        let caps = connection_caps(0, 256, 10).unwrap();
        assert_eq!(
            caps,
            ConnectionCaps {
                served: 54,
                accepted: 108
            }
        );
        let caps = connection_caps(20, 256, 10).unwrap();
        assert_eq!(
            caps,
            ConnectionCaps {
                served: 20,
                accepted: 142
            }
        );
        assert!(connection_caps(55, 256, 10).is_err());
        assert!(connection_caps(0, 96, 10).is_err());
        assert_eq!(connection_caps(0, 1_048_576, 10).unwrap().served, 349_494);
    }

    #[test]
    fn the_limit_is_readable_and_at_least_what_it_was() {
        assert!(raise_limit().unwrap() > 0);
    }
}
