//! The database: SQLite in memory by default, PostgreSQL when `DATABASE_URL` names one. Both
//! go through sqlx's `Any` driver with the same queries (`$1` placeholders, which SQLite reads
//! too); each has its schema as migrations, run at start, and its seed data, written once.

use std::{borrow::Cow, sync::Arc};

use perf::query::WatchedPool;
use seeded::{CATEGORIES, SeededAd};
use sqlx::{
    Any, AnyPool,
    any::AnyPoolOptions,
    error::BoxDynError,
    migrate::{Migration, MigrationSource, MigrationType, Migrator},
};

#[path = "seeded.rs"]
mod seeded;

/// The pool the handlers query, counting the acquisitions that wait.
pub(crate) type Db = Arc<WatchedPool<Any>>;

/// Which database, for logs and the pool's name in the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }

    fn migrations(self) -> Embedded {
        match self {
            Backend::Sqlite => Embedded(&[(
                1,
                "schema",
                include_str!("migrations/sqlite/0001_schema.sql"),
            )]),
            Backend::Postgres => Embedded(&[(
                1,
                "schema",
                include_str!("migrations/postgres/0001_schema.sql"),
            )]),
        }
    }
}

/// How much data an empty database is seeded with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Seed {
    pub(crate) ads: i64,
    pub(crate) users: i64,
    /// Spread evenly over the users and the ten days to 2026-11-28: a user's day holds
    /// `impressions / users / 10` of them (100 with the example's defaults).
    pub(crate) impressions: i64,
}

/// The days impressions are seeded on, the last one first.
const DAYS: [&str; 10] = [
    "2026-11-28",
    "2026-11-27",
    "2026-11-26",
    "2026-11-25",
    "2026-11-24",
    "2026-11-23",
    "2026-11-22",
    "2026-11-21",
    "2026-11-20",
    "2026-11-19",
];

/// Opens the database `url` names (`None`: SQLite in memory) with at most `pool_size`
/// connections, brings its schema up to date and seeds it if it is empty.
pub(crate) async fn open(
    url: Option<&str>,
    pool_size: u32,
    seed: Seed,
) -> Result<(Db, Backend), BoxDynError> {
    sqlx::any::install_default_drivers();
    let (url, backend, pool_size) = match url {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            (url, Backend::Postgres, pool_size)
        }
        Some(other) => {
            let scheme = other.split(':').next().unwrap_or_default();
            return Err(format!(
                "DATABASE_URL: {scheme}: is not supported; expected postgres://..."
            )
            .into());
        }
        // Each connection to `sqlite::memory:` is a database of its own: one connection.
        None => ("sqlite::memory:", Backend::Sqlite, 1),
    };
    let pool = AnyPoolOptions::new()
        .max_connections(pool_size)
        .connect(url)
        .await?;
    Migrator::new(backend.migrations())
        .await?
        .run(&pool)
        .await?;
    write_seed(&pool, backend, seed).await?;
    Ok((Arc::new(WatchedPool::new(pool)), backend))
}

/// Migrations compiled into the binary (what `sqlx::migrate!` does, without sqlx's macros).
#[derive(Debug)]
struct Embedded(&'static [(i64, &'static str, &'static str)]);

impl MigrationSource<'static> for Embedded {
    fn resolve(
        self,
    ) -> futures_util::future::BoxFuture<'static, Result<Vec<Migration>, BoxDynError>> {
        let migrations = self
            .0
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(
                    version,
                    Cow::Borrowed(description),
                    MigrationType::Simple,
                    Cow::Borrowed(sql),
                    false,
                )
            })
            .collect();
        Box::pin(async move { Ok(migrations) })
    }
}

/// Writes the ads, users, their preferences and impressions and the templates, in one
/// transaction, unless the database has ads already (a PostgreSQL database outlives the
/// process).
async fn write_seed(pool: &AnyPool, backend: Backend, seed: Seed) -> Result<(), sqlx::Error> {
    let Seed { ads, users, .. } = seed;
    let (existing,): (i64,) = sqlx::query_as("SELECT count(*) FROM ads")
        .fetch_one(pool)
        .await?;
    if existing > 0 {
        return Ok(());
    }
    let mut tx = pool.begin().await?;
    for id in 1..=ads {
        let ad = SeededAd::new(id);
        sqlx::query("INSERT INTO ads VALUES ($1, $2, $3, $4, $5)")
            .bind(ad.id)
            .bind(ad.campaign)
            .bind(ad.category)
            .bind(ad.title)
            .bind(ad.bid)
            .execute(&mut *tx)
            .await?;
    }
    for id in 1..=users {
        sqlx::query("INSERT INTO users VALUES ($1, $2)")
            .bind(id)
            .bind(format!("user {id}"))
            .execute(&mut *tx)
            .await?;
        for (i, category) in CATEGORIES.iter().enumerate().take(3) {
            sqlx::query("INSERT INTO preferences VALUES ($1, $2, $3)")
                .bind(id)
                .bind(*category)
                .bind(((id + i as i64) % 10) as f64 / 10.0)
                .execute(&mut *tx)
                .await?;
        }
    }
    // Impressions in one statement: a million rows bound one by one would take minutes.
    sqlx::query(&impressions_statement())
        .bind(seed.impressions)
        .bind(ads)
        .bind(users)
        .execute(&mut *tx)
        .await?;
    for (id, (name, width, height)) in [
        ("leaderboard", 728_i64, 90_i64),
        ("rectangle", 300, 250),
        ("skyscraper", 160, 600),
    ]
    .into_iter()
    .enumerate()
    {
        sqlx::query("INSERT INTO templates VALUES ($1, $2, $3, $4)")
            .bind(id as i64)
            .bind(name)
            .bind(width)
            .bind(height)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    // Statistics for the planner, and (PostgreSQL) the visibility map, now rather than when
    // autovacuum notices a million new rows in the middle of the first requests.
    let settle = match backend {
        Backend::Sqlite => "ANALYZE",
        Backend::Postgres => "VACUUM ANALYZE",
    };
    sqlx::query(settle).execute(pool).await?;
    Ok(())
}

/// `INSERT ... SELECT` over a counter from a recursive CTE, in the SQL both databases speak:
/// impression `n` is user `n % users + 1`'s, on day `(n / users) % 10`, of an ad that
/// varies with both (a user's day sees many ads), costs the ad's bid per thousand, and every
/// 47th is clicked (a prime, so clicks fall on every user rather than on every fiftieth one).
/// Binds `$1` impressions, `$2` ads, `$3` users.
fn impressions_statement() -> String {
    let days: Vec<String> = DAYS
        .iter()
        .enumerate()
        .map(|(k, day)| format!("({k}, '{day}')"))
        .collect();
    format!(
        "WITH RECURSIVE counter(n) AS ( \
             SELECT CAST(0 AS BIGINT) UNION ALL SELECT n + 1 FROM counter WHERE n + 1 < $1 \
         ), days(k, day) AS (VALUES {}) \
         INSERT INTO impressions (ad_id, user_id, day, clicked, cost) \
         SELECT ad_id, user_id, day, clicked, (0.5 + ad_id % 17 / 10.0) / 1000.0 \
         FROM (SELECT (n * 7 + (n / $3) * 31) % $2 + 1 AS ad_id, n % $3 + 1 AS user_id, \
                      days.day AS day, CASE WHEN n % 47 = 0 THEN 1 ELSE 0 END AS clicked \
               FROM counter JOIN days ON days.k = (n / $3) % 10) AS generated",
        days.join(", ")
    )
}
