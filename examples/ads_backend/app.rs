//! The ads back end: data, cached reads, handlers and the router. `main.rs` runs it; the
//! integration test starts it in-process.

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU8, Ordering},
    },
    time::Duration,
};

use axum::{
    Json, Router,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use perf::{PerformanceOptimizer, Tier, cache::LoadOptions, cache_result, performance_monitor};
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};

use crate::db::{self, Db};

/// How the service runs.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) addr: SocketAddr,
    /// With a Redis URL, the Redis tier and its invalidation backplane are on.
    pub(crate) redis_url: Option<String>,
    /// `false`: every `#[cache_result]` calls straight through (the load test's baseline).
    pub(crate) cache_enabled: bool,
    /// What an empty database is seeded with (`ADS_IMPRESSIONS` impressions, default a
    /// million).
    pub(crate) seed: db::Seed,
    /// The database's behaviour at start (`ADS_DB_FAULT`), to watch the cache protect it.
    pub(crate) db_fault: DbFault,
    /// With a token (`ADS_ADMIN_TOKEN`), `POST /admin/db-fault` switches the fault at run time.
    pub(crate) admin_token: Option<String>,
    /// `DATABASE_URL`: PostgreSQL (`postgres://...`) instead of the embedded SQLite.
    pub(crate) database_url: Option<String>,
    /// perf's settings from this TOML file (`--config`, `PERF_CONFIG`), under `PERF_*`
    /// variables; without one, the example's own defaults.
    pub(crate) config: Option<PathBuf>,
}

impl Options {
    /// From the environment: `ADS_ADDR` (default 127.0.0.1:8000), `REDIS_URL`,
    /// `ADS_CACHE_ENABLED` (default true), `ADS_DB_FAULT` (`fail`, `slow` or `none`),
    /// `ADS_ADMIN_TOKEN`, `DATABASE_URL`, `PERF_CONFIG`; then the command line's `--config FILE`.
    pub(crate) fn from_env_and_args(
        mut args: impl Iterator<Item = String>,
    ) -> Result<Self, String> {
        let addr = std::env::var("ADS_ADDR").unwrap_or_else(|_| "127.0.0.1:8000".into());
        let db_fault = match std::env::var("ADS_DB_FAULT") {
            Ok(mode) => mode.parse()?,
            Err(_) => DbFault::None,
        };
        let mut config = std::env::var_os("PERF_CONFIG")
            .filter(|path| !path.is_empty())
            .map(PathBuf::from);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--config" => {
                    let path = args.next().ok_or("--config needs a file")?;
                    config = Some(path.into());
                }
                other => match other.strip_prefix("--config=") {
                    Some(path) => config = Some(path.into()),
                    None => {
                        return Err(format!("unknown argument {other}; expected --config FILE"));
                    }
                },
            }
        }
        Ok(Self {
            db_fault,
            admin_token: std::env::var("ADS_ADMIN_TOKEN")
                .ok()
                .filter(|token| !token.is_empty()),
            addr: addr.parse().map_err(|e| format!("ADS_ADDR={addr}: {e}"))?,
            redis_url: std::env::var("REDIS_URL")
                .ok()
                .filter(|url| !url.is_empty()),
            cache_enabled: std::env::var("ADS_CACHE_ENABLED").map_or(true, |v| v != "false"),
            config,
            database_url: std::env::var("DATABASE_URL")
                .ok()
                .filter(|url| !url.is_empty()),
            seed: db::Seed {
                ads: 5_000,
                users: 1_000,
                impressions: match std::env::var("ADS_IMPRESSIONS") {
                    Ok(count) => count
                        .parse()
                        .map_err(|e| format!("ADS_IMPRESSIONS={count}: {e}"))?,
                    Err(_) => 1_000_000,
                },
            },
        })
    }
}

/// The process's one database, as the `#[cache_result]` functions' caches are the process's.
static DB: tokio::sync::OnceCell<(Db, db::Backend)> = tokio::sync::OnceCell::const_new();

fn db() -> &'static Db {
    &DB.get()
        .expect("the database is opened before the router serves")
        .0
}

/// A fault injected into every database call, to see what the cache does when the database
/// fails or stalls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum DbFault {
    None = 0,
    /// Every call fails at once.
    Fail = 1,
    /// Every call takes 5 s more.
    Slow = 2,
}

impl std::str::FromStr for DbFault {
    type Err = String;

    fn from_str(mode: &str) -> Result<Self, String> {
        match mode {
            "none" | "" => Ok(DbFault::None),
            "fail" => Ok(DbFault::Fail),
            "slow" => Ok(DbFault::Slow),
            other => Err(format!("ADS_DB_FAULT={other}: expected fail, slow or none")),
        }
    }
}

static DB_FAULT: AtomicU8 = AtomicU8::new(DbFault::None as u8);

fn set_db_fault(fault: DbFault) {
    DB_FAULT.store(fault as u8, Ordering::Relaxed);
}

/// Runs `call` on a pooled connection, under the injected fault, if any.
async fn on_db<T>(
    call: impl AsyncFnOnce(&mut AnyConnection) -> Result<T, sqlx::Error>,
) -> Result<T, sqlx::Error> {
    const FAIL: u8 = DbFault::Fail as u8;
    const SLOW: u8 = DbFault::Slow as u8;
    match DB_FAULT.load(Ordering::Relaxed) {
        FAIL => return Err(sqlx::Error::PoolTimedOut),
        SLOW => {
            tracing::debug!("database call held up by the injected fault for 5 s");
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        _ => {}
    }
    let mut connection = db().acquire().await?;
    call(&mut connection).await
}

#[derive(Clone)]
struct AppState {
    optimizer: &'static PerformanceOptimizer,
    admin_token: Option<&'static str>,
}

/// Opens and seeds the database, installs the optimizer (with Redis when configured) and
/// builds the router with the admin API at `/performance` and Prometheus at `/metrics`.
pub(crate) async fn build(
    options: &Options,
) -> Result<(Router, &'static PerformanceOptimizer), Box<dyn std::error::Error + Send + Sync>> {
    let prometheus = perf_http::install_prometheus()?;
    // The engine's settings and the admin API's (`PERF_ADMIN_TOKENS`, ...) from the config
    // file, if any, and `PERF_*`.
    let (mut config, admin) =
        perf_http::load_config(options.config.as_deref()).map_err(|error| {
            match &options.config {
                Some(path) => format!("{}: {error}", path.display()),
                None => error.to_string(),
            }
        })?;
    config.cache.enabled = options.cache_enabled;
    // Without a file, the example's own defaults: queries over 50 ms are slow, and ads live
    // five minutes unless PERF_CACHE_TTL says otherwise (the fault load test shortens it, so
    // that entries expire while the database is down).
    if options.config.is_none() {
        config.query.slow_threshold = Duration::from_millis(50);
        if std::env::var_os("PERF_CACHE_TTL").is_none() {
            config.cache.ttl = Duration::from_secs(300);
        }
    }
    set_db_fault(options.db_fault);
    let mut builder = PerformanceOptimizer::builder().config(config);
    if let Some(url) = &options.redis_url {
        let redis = perf_redis::RedisTier::builder(url)
            .namespace("ads")
            .build()
            .await?;
        builder = builder.remote_tier(redis);
    }
    let optimizer = builder.build()?.install()?;

    // A second instance in one process (a test's) shares the first one's database, as
    // instances of a service do.
    let (pool, backend) = DB
        .get_or_try_init(|| {
            db::open(
                options.database_url.as_deref(),
                optimizer.config().query.pool_size,
                options.seed,
            )
        })
        .await?;
    let source: Arc<dyn perf::query::PoolSource> = pool.clone();
    optimizer.query().watch_pool(backend.as_str(), &source)?;
    let backend = *backend;
    tracing::info!(database = backend.as_str(), "database ready");

    let router = Router::new()
        .route("/ads/{id}", get(get_ad))
        .route("/users/{id}/preferences", get(get_preferences))
        .route("/ad-templates", get(get_templates))
        .route("/config/global", get(get_global_config))
        .route("/analytics/{user_id}/{date}", get(get_analytics))
        .route("/ads/{id}/impressions", post(post_impression))
        .route("/batch/process", post(post_batch))
        .route("/admin/db-fault", post(post_db_fault))
        .with_state(AppState {
            optimizer,
            admin_token: options
                .admin_token
                .clone()
                .map(|token| &*Box::leak(token.into_boxed_str())),
        })
        .nest("/performance", perf_http::router(optimizer, admin)?)
        .merge(perf_http::metrics_router(prometheus));
    Ok((router, optimizer))
}

// ----- errors -----

#[derive(Debug)]
pub(crate) enum AppError {
    NotFound(String),
    Database(String),
    Bad(String),
    Unauthorized,
}

impl From<sqlx::Error> for AppError {
    fn from(error: sqlx::Error) -> Self {
        AppError::Database(error.to_string())
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            AppError::NotFound(what) => (StatusCode::NOT_FOUND, what),
            AppError::Bad(why) => (StatusCode::BAD_REQUEST, why),
            AppError::Database(error) => (StatusCode::INTERNAL_SERVER_ERROR, error),
            AppError::Unauthorized => (StatusCode::UNAUTHORIZED, "a bearer token is needed".into()),
        };
        (status, Json(serde_json::json!({ "error": message }))).into_response()
    }
}

// ----- cached reads -----

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Ad {
    pub(crate) id: i64,
    pub(crate) campaign: i64,
    pub(crate) category: String,
    pub(crate) title: String,
    pub(crate) bid: f64,
}

/// Served stale for up to an hour while the database fails, after 50 ms while it stalls; a
/// load is given up after 1 s. TTL: `cache_ttl` (five minutes here). Behind an `Arc`, so that
/// a hit clones a pointer rather than the ad's strings.
#[cache_result(
    cache_type = "l1",
    fail_safe = "1h",
    timeout = "50ms",
    hard_timeout = "1s",
    jitter = 0.1
)]
async fn load_ad(id: i64) -> Result<Option<Arc<Ad>>, String> {
    let row = on_db(async |db| {
        sqlx::query("SELECT id, campaign, category, title, bid FROM ads WHERE id = $1")
            .bind(id)
            .fetch_optional(db)
            .await
    })
    .await
    .map_err(|e| e.to_string())?;
    Ok(row.map(|row| {
        Arc::new(Ad {
            id: row.get("id"),
            campaign: row.get("campaign"),
            category: row.get("category"),
            title: row.get("title"),
            bid: row.get("bid"),
        })
    }))
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Preference {
    pub(crate) category: String,
    pub(crate) weight: f64,
}

#[cache_result(
    ttl = "10m",
    cache_type = "l1",
    fail_safe = "1h",
    timeout = "50ms",
    hard_timeout = "1s",
    refresh_ahead = 0.9
)]
async fn load_preferences(user_id: i64) -> Result<Vec<Preference>, String> {
    let rows = on_db(async |db| {
        sqlx::query(
            "SELECT category, weight FROM preferences WHERE user_id = $1 ORDER BY weight DESC",
        )
        .bind(user_id)
        .fetch_all(db)
        .await
    })
    .await
    .map_err(|e| e.to_string())?;
    Ok(rows
        .iter()
        .map(|row| Preference {
            category: row.get("category"),
            weight: row.get("weight"),
        })
        .collect())
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Template {
    pub(crate) name: String,
    pub(crate) width: i64,
    pub(crate) height: i64,
}

#[cache_result(ttl = "1h", cache_type = "l2")]
async fn load_templates() -> Result<Vec<Template>, String> {
    let rows = on_db(async |db| {
        sqlx::query("SELECT name, width, height FROM templates ORDER BY id")
            .fetch_all(db)
            .await
    })
    .await
    .map_err(|e| e.to_string())?;
    Ok(rows
        .iter()
        .map(|row| Template {
            name: row.get("name"),
            width: row.get("width"),
            height: row.get("height"),
        })
        .collect())
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct GlobalConfig {
    pub(crate) floor_price: f64,
    pub(crate) max_ads_per_page: u32,
}

/// Shared by every instance through Redis when it is configured (else L2).
#[cache_result(ttl = "5m", cache_type = "redis")]
async fn load_global_config() -> GlobalConfig {
    GlobalConfig {
        floor_price: 0.25,
        max_ads_per_page: 4,
    }
}

// ----- handlers -----

#[performance_monitor("ads.get_ad")]
async fn get_ad(Path(id): Path<i64>) -> Result<Json<Arc<Ad>>, AppError> {
    load_ad(id)
        .await
        .map_err(AppError::Database)?
        .map(Json)
        .ok_or_else(|| AppError::NotFound(format!("no ad {id}")))
}

#[performance_monitor("ads.get_preferences")]
async fn get_preferences(Path(id): Path<i64>) -> Result<Json<Vec<Preference>>, AppError> {
    Ok(Json(
        load_preferences(id).await.map_err(AppError::Database)?,
    ))
}

#[performance_monitor("ads.get_templates")]
async fn get_templates() -> Result<Json<Vec<Template>>, AppError> {
    Ok(Json(load_templates().await.map_err(AppError::Database)?))
}

#[performance_monitor("ads.get_global_config")]
async fn get_global_config() -> Json<GlobalConfig> {
    Json(load_global_config().await)
}

/// A user's day: impressions, clicks and spend in all and per ad, the most spent first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Analytics {
    pub(crate) user_id: i64,
    pub(crate) day: String,
    pub(crate) impressions: i64,
    pub(crate) clicks: i64,
    pub(crate) spend: f64,
    pub(crate) ads: Vec<AdDay>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct AdDay {
    pub(crate) ad_id: i64,
    pub(crate) impressions: i64,
    pub(crate) clicks: i64,
    pub(crate) spend: f64,
}

impl Analytics {
    fn from_ads(user_id: i64, day: String, ads: Vec<AdDay>) -> Self {
        Self {
            user_id,
            day,
            impressions: ads.iter().map(|ad| ad.impressions).sum(),
            clicks: ads.iter().map(|ad| ad.clicks).sum(),
            spend: ads.iter().map(|ad| ad.spend).sum(),
            ads,
        }
    }
}

/// Read through the `(user_id, day)` index. (`sum` of integers is `numeric` on PostgreSQL,
/// which sqlx's `Any` driver does not read: cast back.)
const ANALYTICS: &str = "SELECT ad_id, count(*) AS impressions, \
                         CAST(sum(clicked) AS BIGINT) AS clicks, sum(cost) AS spend \
                         FROM impressions WHERE user_id = $1 AND day = $2 \
                         GROUP BY ad_id ORDER BY spend DESC, ad_id";

#[performance_monitor("ads.get_analytics")]
async fn get_analytics(
    State(state): State<AppState>,
    Path((user_id, day)): Path<(i64, String)>,
) -> Result<Json<Analytics>, AppError> {
    let query = state.optimizer.query();
    // A minute fresh; while the database fails or stalls, the last figures for up to a day.
    let options = LoadOptions::new(Tier::Redis)
        .ttl(Duration::from_secs(60))
        .fail_safe(Duration::from_secs(86_400))
        .soft_timeout(Duration::from_millis(100))
        .hard_timeout(Duration::from_secs(2));
    let analytics = query
        .cached_query_with(ANALYTICS, &(user_id, &day), &options, || {
            query.timed("select", ANALYTICS, async {
                let rows = on_db(async |db| {
                    sqlx::query(ANALYTICS)
                        .bind(user_id)
                        .bind(&day)
                        .fetch_all(db)
                        .await
                })
                .await?;
                let ads = rows
                    .iter()
                    .map(|row| AdDay {
                        ad_id: row.get("ad_id"),
                        impressions: row.get("impressions"),
                        clicks: row.get("clicks"),
                        spend: row.get("spend"),
                    })
                    .collect();
                Ok::<_, sqlx::Error>(Analytics::from_ads(user_id, day.clone(), ads))
            })
        })
        .await?;
    Ok(Json((*analytics.value).clone()))
}

#[derive(Debug, Deserialize)]
pub(crate) struct Impression {
    pub(crate) user_id: i64,
    pub(crate) day: String,
    #[serde(default)]
    pub(crate) clicked: bool,
}

const INSERT_IMPRESSION: &str =
    "INSERT INTO impressions (ad_id, user_id, day, clicked, cost) VALUES ($1, $2, $3, $4, $5)";

/// Records an impression, then drops the cached analytics it changes.
#[performance_monitor("ads.post_impression")]
async fn post_impression(
    State(state): State<AppState>,
    Path(ad_id): Path<i64>,
    Json(impression): Json<Impression>,
) -> Result<Json<serde_json::Value>, AppError> {
    let Some(ad) = load_ad(ad_id).await.map_err(AppError::Database)? else {
        return Err(AppError::NotFound(format!("no ad {ad_id}")));
    };
    let query = state.optimizer.query();
    query
        .timed(
            "insert",
            INSERT_IMPRESSION,
            on_db(async |db| {
                sqlx::query(INSERT_IMPRESSION)
                    .bind(ad_id)
                    .bind(impression.user_id)
                    .bind(&impression.day)
                    .bind(i64::from(impression.clicked))
                    // The ad's bid is per thousand impressions.
                    .bind(ad.bid / 1000.0)
                    .execute(db)
                    .await
            }),
        )
        .await?;
    // The impression is committed: a cache that could not be told is logged, not reported
    // to a client that would retry and count it twice. (The Redis tier queues the change
    // while it is down, so this fails only for errors it cannot replay.)
    if let Err(error) = query.invalidate_table("impressions").await {
        tracing::warn!(%error, "cached analytics not invalidated; they expire with their TTL");
    }
    Ok(Json(serde_json::json!({ "recorded": true })))
}

#[derive(Debug, Deserialize)]
pub(crate) struct Batch {
    pub(crate) ad_ids: Vec<i64>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Scored {
    pub(crate) ad_id: i64,
    pub(crate) score: Option<f64>,
    pub(crate) outcome: &'static str,
}

/// Scores a batch of ads on the task manager: one task an ad, results in input order.
#[performance_monitor("ads.post_batch")]
async fn post_batch(
    State(state): State<AppState>,
    Json(batch): Json<Batch>,
) -> Result<Json<Vec<Scored>>, AppError> {
    if batch.ad_ids.len() > 1000 {
        return Err(AppError::Bad("at most 1000 ads a batch".into()));
    }
    let tasks = state.optimizer.tasks();
    let handles = tasks
        .batch_submit(batch.ad_ids.clone().into_iter().map(|id| async move {
            let ad = load_ad(id).await?.ok_or_else(|| format!("no ad {id}"))?;
            Ok::<_, String>(ad.bid * (1.0 + ad.campaign as f64 / 100.0))
        }))
        .await
        .map_err(|e| AppError::Bad(e.to_string()))?;
    let outcomes = tasks
        .wait_for_tasks(handles, Some(Duration::from_secs(5)))
        .await;
    Ok(Json(
        batch
            .ad_ids
            .iter()
            .zip(outcomes)
            .map(|(&ad_id, outcome)| {
                let (score, outcome) = match outcome {
                    perf::tasks::TaskOutcome::Completed(score) => (Some(score), "completed"),
                    perf::tasks::TaskOutcome::Failed(_) => (None, "failed"),
                    perf::tasks::TaskOutcome::Panicked(_) => (None, "panicked"),
                    perf::tasks::TaskOutcome::TimedOut => (None, "timed_out"),
                    perf::tasks::TaskOutcome::Cancelled => (None, "cancelled"),
                };
                Scored {
                    ad_id,
                    score,
                    outcome,
                }
            })
            .collect(),
    ))
}

/// `POST /admin/db-fault {"mode": "fail" | "slow" | "none"}` with `Authorization: Bearer
/// <ADS_ADMIN_TOKEN>`: injects a database fault while the service runs. Without a configured
/// token the switch does not exist (404).
async fn post_db_fault(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(body): Json<serde_json::Value>,
) -> Result<Json<serde_json::Value>, AppError> {
    use subtle::ConstantTimeEq;
    let Some(token) = state.admin_token else {
        return Err(AppError::NotFound(
            "no fault switch (ADS_ADMIN_TOKEN is unset)".into(),
        ));
    };
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or_default();
    if !bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
        return Err(AppError::Unauthorized);
    }
    let mode = body["mode"].as_str().unwrap_or_default();
    let fault: DbFault = mode.parse().map_err(AppError::Bad)?;
    set_db_fault(fault);
    tracing::warn!(?fault, "database fault switched");
    Ok(Json(serde_json::json!({ "mode": fault })))
}
