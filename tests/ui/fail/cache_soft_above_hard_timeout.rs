#[perf::cache_result(timeout = "3s", hard_timeout = "1s")]
async fn f(id: u64) -> Result<u64, std::io::Error> {
    Ok(id)
}

fn main() {}
