#[derive(Debug, Clone)]
struct MyError;

#[perf::cache_result(ttl = 60)]
async fn f(id: u64) -> Result<u64, MyError> {
    Ok(id)
}

fn main() {}
