#[perf::cache_result(refresh_ahead = 1.5)]
async fn f(id: u64) -> Result<u64, std::io::Error> {
    Ok(id)
}

#[perf::cache_result(jitter = "10%")]
async fn g(id: u64) -> Result<u64, std::io::Error> {
    Ok(id)
}

fn main() {}
