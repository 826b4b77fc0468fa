#[perf::cache_result(hard_timeout = "2s")]
async fn f(id: u64) -> u64 {
    id
}

fn main() {}
