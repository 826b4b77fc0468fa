#[perf::cache_result(tll = 5)]
async fn f(id: u64) -> u64 {
    id
}

fn main() {}
