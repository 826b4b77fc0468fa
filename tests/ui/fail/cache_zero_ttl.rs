#[perf::cache_result(ttl = 0)]
async fn f(id: u64) -> u64 {
    id
}

fn main() {}
