#[perf::cache_result(fail_safe = "forever")]
async fn f(id: u64) -> Result<u64, std::io::Error> {
    Ok(id)
}

#[perf::cache_result(ttl = 60, ttl = 120)]
async fn g(id: u64) -> Result<u64, std::io::Error> {
    Ok(id)
}

fn main() {}
