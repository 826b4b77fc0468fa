//! Compile-time behaviour of the attribute macros: every accepted form builds, every mistake
//! is a clear error at the user's span (`tests/ui/fail/*.stderr`).

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/fail/*.rs");
}
