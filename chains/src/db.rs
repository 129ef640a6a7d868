//! Opening a SQL database, the same way for every role that keeps one: SQLite (a file, WAL,
//! `synchronous = FULL`) by default, PostgreSQL for `postgres://…`, both through sqlx's `Any`
//! driver so that one set of SQL serves both. Each role runs its own migrations.

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Connection, Executor};

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("the database at {url} cannot be opened: {source}; check DATABASE_URL and that the server is up")]
    Open { url: String, source: sqlx::Error },
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://…")]
    Unsupported(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Connections a SQLite pool holds at most: one writer at a time anyway, and readers beside it.
pub const SQLITE_CONNECTIONS: u32 = 4;

/// Opens a pool on `url` (`sqlite://PATH`, created if missing, or `postgres://…`).
pub async fn open(url: &str) -> Result<(AnyPool, Backend), DbError> {
    install_default_drivers();
    let backend = if url.starts_with("sqlite:") {
        Backend::Sqlite
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Backend::Postgres
    } else {
        return Err(DbError::Unsupported(redact(url)));
    };
    let url_with_mode = match backend {
        Backend::Sqlite if !url.contains("mode=") => {
            format!("{url}{}mode=rwc", if url.contains('?') { '&' } else { '?' })
        }
        _ => url.to_owned(),
    };
    let open_error = |source| DbError::Open { url: redact(url), source };
    // One direct connection first: a wrong URL or a server that is down fails at once, with the
    // driver's own reason, instead of after the pool's acquire timeout.
    let probe = sqlx::AnyConnection::connect(&url_with_mode).await.map_err(open_error)?;
    probe.close().await.map_err(open_error)?;
    let pool = AnyPoolOptions::new()
        .max_connections(if backend == Backend::Sqlite { SQLITE_CONNECTIONS } else { 8 })
        .after_connect(move |conn, _| {
            Box::pin(async move {
                if backend == Backend::Sqlite {
                    // WAL: readers never block the writer; FULL: a commit survives power loss.
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute("PRAGMA synchronous = FULL").await?;
                    conn.execute("PRAGMA busy_timeout = 5000").await?;
                    // Indexes with random keys: a group commit touches pages all over them,
                    // which should stay in memory.
                    conn.execute("PRAGMA cache_size = -65536").await?;
                    // Checkpoint every 64 MiB of log rather than 4: index pages dirtied by many
                    // commits are then copied into the database once, not each time.
                    conn.execute("PRAGMA wal_autocheckpoint = 16384").await?;
                    // Statement journals (undo for one multi-row INSERT) in memory, not in
                    // temporary files: the transaction's durability is the WAL's business.
                    conn.execute("PRAGMA temp_store = MEMORY").await?;
                }
                Ok(())
            })
        })
        .connect(&url_with_mode)
        .await
        .map_err(open_error)?;
    Ok((pool, backend))
}

/// Makes every connection of a SQLite pool refuse writes (`refuse`) or take them again: what a
/// full or failing disk does to a role, as the simulator's disk fault (crate `sim`). A write then
/// fails inside SQLite with "attempt to write a readonly database", through the role's own store
/// code. It holds every connection the pool can open while it sets each one (`query_only` is a
/// connection's setting), so the caller must hold none; a connection opened later writes again.
pub async fn refuse_writes(pool: &AnyPool, refuse: bool) -> Result<(), sqlx::Error> {
    let mut held = Vec::new();
    for _ in 0..SQLITE_CONNECTIONS {
        held.push(pool.acquire().await?);
    }
    let pragma = if refuse { "PRAGMA query_only = ON" } else { "PRAGMA query_only = OFF" };
    for connection in &mut held {
        connection.execute(pragma).await?;
    }
    Ok(())
}

/// A throwaway schema in the PostgreSQL database at `base`, for tests and benchmarks that share
/// one server: returns a URL whose connections use it (`search_path`). Drop it with
/// [`drop_schema`].
pub async fn create_schema(base: &str, schema: &str) -> Result<String, DbError> {
    install_default_drivers();
    let open_error = |source| DbError::Open { url: redact(base), source };
    let pool = AnyPool::connect(base).await.map_err(open_error)?;
    pool.execute(format!("CREATE SCHEMA {schema}").as_str()).await.map_err(open_error)?;
    pool.close().await;
    let sep = if base.contains('?') { '&' } else { '?' };
    Ok(format!("{base}{sep}options=-c%20search_path%3D{schema}"))
}

/// Drops a schema made by [`create_schema`] and everything in it; best effort, and bounded so
/// that a connection still open on it cannot hang the caller.
pub async fn drop_schema(base: &str, schema: &str) {
    install_default_drivers();
    if let Ok(pool) = AnyPool::connect(base).await {
        let _ = pool.execute(format!("SET lock_timeout = '5s'; DROP SCHEMA {schema} CASCADE").as_str()).await;
        pool.close().await;
    }
}

/// The URL without its password, for error messages and logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.find(':') {
                Some(colon) => format!("{}{}:***{}", &url[..scheme + 3], &credentials[..colon], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_a_message() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("sqlite:///tmp/x.db"), "sqlite:///tmp/x.db");
    }
}
