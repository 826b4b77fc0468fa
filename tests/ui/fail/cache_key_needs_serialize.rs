struct Pool;

#[perf::cache_result]
async fn f(pool: &Pool, id: u64) -> u64 {
    let _ = pool;
    id
}

fn main() {}
