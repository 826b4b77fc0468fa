//! `cache_function_calls_total{function, result}`: each `#[cache_result]` function's hits and
//! misses, told apart from the cache's other lookups.

use std::sync::atomic::{AtomicUsize, Ordering};

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use perf::{Tier, cache::function_stats, cache_result, metrics::CACHE_FUNCTION_CALLS_TOTAL};

static PRICE_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cache_result(ttl = 3600, cache_type = "l2")]
async fn price(ad: u64) -> Result<u64, std::io::Error> {
    PRICE_RUNS.fetch_add(1, Ordering::SeqCst);
    Ok(ad * 10)
}

#[cache_result(ttl = 3600, cache_type = "l1")]
fn title(ad: u64) -> String {
    format!("ad {ad}")
}

fn counts(function: &str) -> (u64, u64) {
    function_stats()
        .into_iter()
        .find(|stats| stats.function == function)
        .map_or((0, 0), |stats| (stats.hits, stats.misses))
}

#[tokio::test]
async fn each_function_counts_its_own_hits_and_misses_through_every_tier() {
    const PRICE: &str = "memoized_metrics::price";
    const TITLE: &str = "memoized_metrics::title";

    assert_eq!(price(1).await.expect("loads"), 10); // miss: the body ran
    assert_eq!(price(1).await.expect("hit"), 10); // hit in L1
    assert_eq!(price(2).await.expect("loads"), 20); // miss
    perf::global().cache().clear(Tier::L1).await.expect("clear");
    assert_eq!(price(2).await.expect("hit"), 20); // hit in L2: the body did not run
    assert_eq!(PRICE_RUNS.load(Ordering::SeqCst), 2);
    assert_eq!(counts(PRICE), (2, 2));

    assert_eq!(title(5), "ad 5");
    assert_eq!(title(5), "ad 5");
    assert_eq!(counts(TITLE), (1, 1), "a sync function's calls are its own");

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || perf::global().publish_metrics());
    let mut series = Vec::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        if key.key().name() != CACHE_FUNCTION_CALLS_TOTAL {
            continue;
        }
        let label = |name: &str| {
            key.key()
                .labels()
                .find(|label| label.key() == name)
                .map(|label| label.value().to_owned())
        };
        let DebugValue::Counter(count) = value else {
            panic!("a counter");
        };
        series.push((label("function"), label("result"), count));
    }
    series.sort();
    let some = |s: &str| Some(s.to_owned());
    assert_eq!(
        series,
        [
            (some(PRICE), some("hit"), 2),
            (some(PRICE), some("miss"), 2),
            (some(TITLE), some("hit"), 1),
            (some(TITLE), some("miss"), 1),
        ]
    );
}
