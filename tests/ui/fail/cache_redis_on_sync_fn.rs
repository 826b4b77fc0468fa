#[perf::cache_result(cache_type = "redis")]
fn f(id: u64) -> u64 {
    id
}

fn main() {}
