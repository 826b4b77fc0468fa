#[perf::cache_result(key = "user:{user}")]
async fn f(user_id: u64) -> u64 {
    user_id
}

fn main() {}
