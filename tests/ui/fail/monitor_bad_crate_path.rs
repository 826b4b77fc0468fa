#[perf::performance_monitor("op", crate = "not a path")]
fn f() {}

fn main() {}
