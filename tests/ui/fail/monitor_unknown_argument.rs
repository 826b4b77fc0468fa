#[perf::performance_monitor("op", timeout = 5)]
fn f() {}

fn main() {}
