#[perf::cache_result(skip(pool))]
async fn f(id: u64) -> u64 {
    id
}

fn main() {}
