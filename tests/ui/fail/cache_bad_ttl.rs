#[perf::cache_result(ttl = "soon")]
async fn f(id: u64) -> u64 {
    id
}

fn main() {}
