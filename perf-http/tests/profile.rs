//! `GET /profile/cpu`: a real profile of this test process, with a thread burning CPU in a
//! function the profile must name.

use std::{collections::BTreeMap, sync::Arc};

use axum::{
    Router,
    body::{Body, Bytes},
    http::{Request, StatusCode, header},
};
use http_body_util::BodyExt;
use perf_core::{PerformanceConfig, PerformanceOptimizer};
use perf_http::{AdminConfig, Secret};
use tower::ServiceExt;

const TOKEN: &str = "ops-token-0123456789";

fn app(profiling_enabled: bool) -> Router {
    let mut config = PerformanceConfig::default();
    config.monitor.profiling_enabled = profiling_enabled;
    let optimizer = PerformanceOptimizer::builder()
        .config(config)
        .build()
        .expect("valid");
    let mut admin = AdminConfig::default();
    admin.tokens = BTreeMap::from([("ops".to_string(), Secret::new(TOKEN))]);
    perf_http::router_for(Arc::new(optimizer), admin).expect("valid admin settings")
}

/// The answer's status, content type and body.
async fn get(app: &Router, path: &str, token: Option<&str>) -> (StatusCode, String, Bytes) {
    let mut request = Request::get(path);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).expect("request"))
        .await
        .expect("answered");
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or_default().to_owned())
        .unwrap_or_default();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, content_type, body)
}

fn error_of(body: &Bytes) -> serde_json::Value {
    serde_json::from_slice(body).expect("a JSON error")
}

#[tokio::test]
async fn a_profile_needs_a_token_profiling_enabled_and_parameters_in_range() {
    let on = app(true);
    let (status, _, body) = get(&on, "/profile/cpu?seconds=1", None).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "reads need no token, profiles do"
    );
    assert_eq!(error_of(&body)["error"], "a bearer token is required");
    let (status, _, _) = get(&on, "/profile/cpu?seconds=1", Some("wrong")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    for (query, field) in [
        ("seconds=0", "seconds"),
        ("seconds=61", "seconds"),
        ("seconds=ten", "seconds"),
        ("format=png", "format"),
        ("depth=3", "depth"),
    ] {
        let (status, _, body) = get(&on, &format!("/profile/cpu?{query}"), Some(TOKEN)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query}");
        assert_eq!(error_of(&body)["field"], field, "{query}");
    }

    let off = app(false);
    let (status, _, body) = get(&off, "/profile/cpu?seconds=1", Some(TOKEN)).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let message = error_of(&body)["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(message.contains("profiling_enabled"), "{message}");
}

#[cfg(all(unix, feature = "cpu-profile"))]
mod sampling {
    use std::{
        hint::black_box,
        sync::{
            Arc,
            atomic::{AtomicBool, Ordering},
        },
    };

    use axum::http::StatusCode;

    use super::{TOKEN, app, error_of, get};

    /// Spins until `stop`: the profile's samples land here.
    #[inline(never)]
    fn burn_cpu_for_the_profile(stop: &AtomicBool) -> u64 {
        let mut x = 0u64;
        while !stop.load(Ordering::Relaxed) {
            for i in 0..10_000u64 {
                x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
            }
        }
        x
    }

    /// A thread burning CPU in [`burn_cpu_for_the_profile`] until dropped.
    struct Burner {
        stop: Arc<AtomicBool>,
        thread: Option<std::thread::JoinHandle<u64>>,
    }

    impl Burner {
        fn start() -> Self {
            let stop = Arc::new(AtomicBool::new(false));
            let flag = Arc::clone(&stop);
            let thread = std::thread::spawn(move || burn_cpu_for_the_profile(&flag));
            Self {
                stop,
                thread: Some(thread),
            }
        }
    }

    impl Drop for Burner {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Relaxed);
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
    }

    /// Every profile of this binary is taken here, one after another: the process has one
    /// profiler.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn profiles_name_the_function_that_burned_the_cpu_one_at_a_time() {
        let app = app(true);
        let _burner = Burner::start();

        // Two at once: both handlers run to their sampling in their first polls, so the second
        // finds the first's claim.
        let (first, second) = tokio::join!(
            get(&app, "/profile/cpu?seconds=1", Some(TOKEN)),
            get(&app, "/profile/cpu?seconds=1", Some(TOKEN)),
        );
        assert_eq!(first.0, StatusCode::OK);
        assert_eq!(second.0, StatusCode::CONFLICT);
        assert!(
            error_of(&second.2)["error"]
                .as_str()
                .is_some_and(|m| m.contains("already")),
            "{:?}",
            second.2
        );

        let (content_type, svg) = (first.1, String::from_utf8_lossy(&first.2).into_owned());
        assert_eq!(content_type, "image/svg+xml");
        assert!(svg.contains("<svg"), "an SVG document");
        assert!(
            svg.contains("burn_cpu_for_the_profile"),
            "the flamegraph names the burning function"
        );

        let (status, content_type, body) =
            get(&app, "/profile/cpu?seconds=1&format=pprof", Some(TOKEN)).await;
        assert_eq!(status, StatusCode::OK, "the claim was given back");
        assert_eq!(content_type, "application/octet-stream");
        use pprof::protos::Message;
        let profile = pprof::protos::Profile::decode(body).expect("a pprof protobuf");
        assert!(!profile.sample.is_empty(), "samples were taken");
        assert!(
            profile
                .string_table
                .iter()
                .any(|s| s.contains("burn_cpu_for_the_profile")),
            "the profile's functions include the burning one"
        );
    }
}

#[cfg(not(all(unix, feature = "cpu-profile")))]
#[tokio::test]
async fn without_the_feature_a_profile_is_not_implemented() {
    let (status, _, _) = get(&app(true), "/profile/cpu?seconds=1", Some(TOKEN)).await;
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED);
}
