#[perf::cache_result(cache_type = "disk")]
async fn f(id: u64) -> u64 {
    id
}

fn main() {}
