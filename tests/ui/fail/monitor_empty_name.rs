#[perf::performance_monitor("")]
fn f() {}

fn main() {}
