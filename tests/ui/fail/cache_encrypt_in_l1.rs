#[perf::cache_result(encrypt)]
async fn f(id: u64) -> u64 {
    id
}

fn main() {}
