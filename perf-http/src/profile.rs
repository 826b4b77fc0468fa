//! `GET /profile/cpu`: where the process spends its CPU time, sampled for a few seconds, as a
//! flamegraph SVG or a pprof protobuf (feature `cpu-profile`, Unix).
//!
//! The profiler samples every thread of the process through `SIGPROF` (the pprof crate), so
//! one profile runs at a time in the process, whichever router asked. It needs a token even
//! when reads do not, and `profiling_enabled`. The sampling runs on a blocking thread; a
//! client that goes away ends it early.

use std::sync::atomic::{AtomicBool, Ordering};

use axum::{
    Extension,
    extract::{RawQuery, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};

use crate::{AppState, auth::Caller, error::ApiError};

/// The longest profile a request may ask for.
pub(crate) const MAX_SECONDS: u64 = 60;
/// The profile's length when the request does not say.
const DEFAULT_SECONDS: u64 = 10;
/// Samples a second: not a multiple of common timer periods, so that periodic work is not
/// always or never caught (the figure Go's and pprof-rs's examples use).
#[cfg(all(unix, feature = "cpu-profile"))]
const SAMPLES_PER_SECOND: i32 = 99;

/// Whether a profile is being taken in this process.
static RUNNING: AtomicBool = AtomicBool::new(false);

/// What the profile is returned as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// A flamegraph (inferno), `image/svg+xml`.
    Svg,
    /// The pprof protobuf (`go tool pprof` reads it), `application/octet-stream`.
    Pprof,
}

/// What a request asked for, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ProfileRequest {
    seconds: u64,
    format: Format,
}

impl ProfileRequest {
    /// `seconds=N&format=svg|pprof`, both optional; anything else is refused, naming the
    /// parameter.
    fn parse(query: Option<&str>) -> Result<Self, ApiError> {
        let mut request = Self {
            seconds: DEFAULT_SECONDS,
            format: Format::Svg,
        };
        for pair in query
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
        {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            match name {
                "seconds" => {
                    request.seconds = value
                        .parse()
                        .ok()
                        .filter(|seconds| (1..=MAX_SECONDS).contains(seconds))
                        .ok_or_else(|| {
                            ApiError::invalid(
                                "seconds",
                                format!("seconds must be a whole number from 1 to {MAX_SECONDS}"),
                            )
                        })?;
                }
                "format" => {
                    request.format = match value {
                        "svg" => Format::Svg,
                        "pprof" => Format::Pprof,
                        _ => {
                            return Err(ApiError::invalid("format", "format must be svg or pprof"));
                        }
                    };
                }
                _ => {
                    return Err(ApiError::invalid(
                        name,
                        "unknown parameter: the profile takes seconds and format",
                    ));
                }
            }
        }
        Ok(request)
    }
}

/// The claim on the process's one profiler, given back when dropped.
struct Running;

impl Running {
    fn claim() -> Result<Self, ApiError> {
        RUNNING
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .map(|_| Running)
            .map_err(|_| {
                ApiError::new(
                    StatusCode::CONFLICT,
                    "a CPU profile is already being taken; try again when it ends",
                )
            })
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        RUNNING.store(false, Ordering::Release);
    }
}

#[utoipa::path(
    get,
    path = "/profile/cpu",
    tag = "profile",
    params(
        ("seconds" = Option<u64>, Query, description = "how long to sample, 1 to 60 (default 10)"),
        ("format" = Option<String>, Query, description = "svg (default): a flamegraph; pprof: the pprof protobuf"),
    ),
    responses(
        (status = 200, description = "the profile: image/svg+xml, or application/octet-stream for pprof"),
        (status = 401, description = "no token: a profile always needs one"),
        (status = 409, description = "profiling_enabled is off, or another profile is being taken"),
        (status = 422, description = "seconds or format out of range, naming the parameter"),
        (status = 501, description = "built without the cpu-profile feature, or not on Unix"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn cpu_profile(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    // The router asks for a token on reads only when configured to; a profile shows the
    // code's insides and costs CPU, so it always asks.
    let Some(token_name) = caller.and_then(|Extension(caller)| caller.token) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "a bearer token is required",
        ));
    };
    let request = ProfileRequest::parse(query.as_deref())?;
    if !state.optimizer.config().monitor.profiling_enabled {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "profiling_enabled is off: turn it on (PUT /config) to take a profile",
        ));
    }
    let running = Running::claim()?;
    tracing::info!(
        token = token_name,
        seconds = request.seconds,
        "CPU profile started"
    );
    let profile = sample(running, request).await?;
    let content_type = match request.format {
        Format::Svg => "image/svg+xml",
        Format::Pprof => "application/octet-stream",
    };
    Ok(([(header::CONTENT_TYPE, content_type)], profile).into_response())
}

/// Samples the process for the request's period, on a blocking thread that ends early when
/// this future is dropped (the client went away), and renders the profile.
#[cfg(all(unix, feature = "cpu-profile"))]
async fn sample(running: Running, request: ProfileRequest) -> Result<Vec<u8>, ApiError> {
    let (dropped_tx, dropped) = std::sync::mpsc::channel::<()>();
    let sampled = tokio::task::spawn_blocking(move || {
        let _running = running;
        let profiler = pprof::ProfilerGuardBuilder::default()
            .frequency(SAMPLES_PER_SECOND)
            // Unwinding through these while they hold their own locks can deadlock.
            .blocklist(&["libc", "libgcc", "pthread", "vdso"])
            .build()
            .map_err(internal)?;
        // Nothing is ever sent: the wait ends at the deadline, or at once when the sender
        // is dropped with the request's future.
        let _ = dropped.recv_timeout(std::time::Duration::from_secs(request.seconds));
        let report = profiler.report().build().map_err(internal)?;
        render(&report, request.format)
    });
    let rendered = sampled.await.map_err(internal)?;
    drop(dropped_tx);
    rendered
}

#[cfg(all(unix, feature = "cpu-profile"))]
fn render(report: &pprof::Report, format: Format) -> Result<Vec<u8>, ApiError> {
    let mut out = Vec::new();
    match format {
        Format::Svg => report.flamegraph(&mut out).map_err(internal)?,
        Format::Pprof => {
            use pprof::protos::Message;
            let profile = report.pprof().map_err(internal)?;
            profile.encode(&mut out).map_err(internal)?;
        }
    }
    Ok(out)
}

#[cfg(not(all(unix, feature = "cpu-profile")))]
async fn sample(running: Running, _: ProfileRequest) -> Result<Vec<u8>, ApiError> {
    drop(running);
    Err(ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        "CPU profiles need perf-http's cpu-profile feature, on Unix",
    ))
}

#[cfg(all(unix, feature = "cpu-profile"))]
fn internal(error: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("CPU profile: {error}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_is_checked_naming_the_parameter() {
        assert_eq!(
            ProfileRequest::parse(None).expect("defaults"),
            ProfileRequest {
                seconds: DEFAULT_SECONDS,
                format: Format::Svg
            }
        );
        assert_eq!(
            ProfileRequest::parse(Some("seconds=3&format=pprof")).expect("valid"),
            ProfileRequest {
                seconds: 3,
                format: Format::Pprof
            }
        );
        for (query, field) in [
            ("seconds=0", "seconds"),
            ("seconds=61", "seconds"),
            ("seconds=-1", "seconds"),
            ("seconds=", "seconds"),
            ("seconds=1e3", "seconds"),
            ("format=png", "format"),
            ("second=5", "second"),
        ] {
            let error = ProfileRequest::parse(Some(query)).expect_err(query);
            assert_eq!(error.status, StatusCode::UNPROCESSABLE_ENTITY, "{query}");
            assert_eq!(error.field.as_deref(), Some(field), "{query}");
        }
    }

    #[test]
    fn one_claim_at_a_time_given_back_on_drop() {
        let first = Running::claim().expect("free");
        let refused = Running::claim().map(drop).expect_err("taken");
        assert_eq!(refused.status, StatusCode::CONFLICT);
        drop(first);
        drop(Running::claim().expect("free again"));
    }
}
