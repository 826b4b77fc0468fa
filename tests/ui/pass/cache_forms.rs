use perf::{PerformanceOptimizer, cache_result};

#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Ad {
    id: u64,
}

#[cache_result]
async fn defaults(id: u64) -> u64 {
    id
}

#[cache_result(ttl = 3600, cache_type = "l1")]
async fn l1_seconds(id: u64) -> Result<u64, String> {
    Ok(id)
}

#[cache_result(ttl = "30m", cache_type = "l2")]
async fn l2_string(id: u64) -> Option<Ad> {
    Some(Ad { id })
}

#[cache_result(cache_type = "redis", key = "ad:{id}:{region:?}")]
async fn redis_template(id: u64, region: &str) -> Ad {
    let _ = region;
    Ad { id }
}

#[cache_result(cache_type = "l2", skip(pool), cache_err, cache_none)]
fn sync_l2(pool: &std::sync::Mutex<u8>, id: u64) -> Result<Option<u64>, String> {
    let _ = pool;
    Ok(Some(id))
}

#[cache_result(optimizer = optimizer, skip(optimizer), crate = "::perf")]
fn with_optimizer(optimizer: &PerformanceOptimizer) -> Vec<u8> {
    let _ = optimizer;
    vec![1]
}

#[derive(Clone)]
struct NotSerde(u8);

#[cache_result(cache_type = "l1", key = "not_serde")]
fn l1_needs_no_serde() -> NotSerde {
    NotSerde(1)
}

#[cache_result(
    ttl = "5m",
    cache_type = "redis",
    fail_safe = "1h",
    fail_safe_throttle = "30s",
    timeout = "100ms",
    hard_timeout = "2s",
    refresh_ahead = 0.8,
    jitter = 0.1,
    failure_ttl = "5s"
)]
async fn protected(id: u64) -> std::io::Result<Ad> {
    Ok(Ad { id })
}

// A borrowed argument: the load runs in the caller's future rather than in a task.
#[cache_result(cache_type = "l1", key = "name:{name}", timeout = "50ms", refresh_ahead = 0.5)]
async fn borrowed(name: &str) -> Option<String> {
    Some(name.to_owned())
}

#[cache_result(fail_safe = "10m", refresh_ahead = 0.9)]
fn sync_fail_safe(id: u64) -> Result<u64, String> {
    Ok(id)
}

struct Service;

impl Service {
    #[cache_result(ttl = 60)]
    async fn method(&self, name: String) -> String {
        name
    }

    #[cache_result]
    fn sync_method(&mut self, n: u32) -> u32 {
        n
    }
}

fn main() {
    let _ = (defaults(1), l1_seconds(1), l2_string(1), redis_template(1, "eu"), Service.method("a".into()));
    let _ = sync_l2(&std::sync::Mutex::new(0), 1);
    let _ = with_optimizer(&PerformanceOptimizer::builder().build().unwrap());
    let _ = l1_needs_no_serde().0;
    let _ = Service.sync_method(1);
    let _ = (protected(1), borrowed("a"), sync_fail_safe(1));
}
