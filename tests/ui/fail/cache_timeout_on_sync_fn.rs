#[perf::cache_result(timeout = "100ms")]
fn f(id: u64) -> Result<u64, std::io::Error> {
    Ok(id)
}

fn main() {}
