//! Configuration loading against documents it was not written for (issue 20, fuzzing on
//! stable): any TOML text, and any value under any key in a file or a `PERF_*` variable,
//! loads without a panic into a configuration that validates, or fails with an error that
//! names the key at fault (a TOML syntax error names its line instead).
//!
//! Case counts are kept low enough for the workspace's test run; `PROPTEST_CASES=5000` raises
//! every property here to that many cases.

#![cfg(feature = "config-load")]
#![allow(clippy::result_large_err)] // figment::Jail's closures return its large error

use std::sync::OnceLock;

use perf_core::{ConfigError, PerformanceConfig, config::canonical_key};
use proptest::prelude::*;

/// `cases` cases, unless `PROPTEST_CASES` says how many.
fn cases(cases: u32) -> ProptestConfig {
    if std::env::var_os("PROPTEST_CASES").is_some() {
        ProptestConfig::default()
    } else {
        ProptestConfig::with_cases(cases)
    }
}

/// Every key of the configuration, as its serialized default names them.
fn keys() -> &'static [String] {
    static KEYS: OnceLock<Vec<String>> = OnceLock::new();
    KEYS.get_or_init(|| {
        let defaults = serde_json::to_value(PerformanceConfig::default()).expect("serializes");
        let keys: Vec<String> = defaults
            .as_object()
            .expect("a flat table")
            .keys()
            .cloned()
            .collect();
        assert!(keys.len() > 20, "{keys:?}");
        keys
    })
}

/// A key the configuration has, one of its aliases, or one it does not have.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => prop::sample::select(keys()),
        1 => Just("tracemalloc_enabled".to_owned()),
        1 => "[a-z_]{1,12}",
    ]
}

/// Any TOML value, nested a little.
fn value() -> impl Strategy<Value = toml::Value> {
    let scalar = prop_oneof![
        any::<i64>().prop_map(toml::Value::Integer),
        prop_oneof![Just(0i64), Just(1), Just(-1), 0..100_000i64].prop_map(toml::Value::Integer),
        any::<f64>().prop_map(toml::Value::Float),
        any::<bool>().prop_map(toml::Value::Boolean),
        any::<String>().prop_map(toml::Value::String),
        // Durations, sizes, URLs and names, well formed or nearly.
        "-?[0-9]{0,6}(ns|ms|s|m|h|d|w|x)?".prop_map(toml::Value::String),
        "(https?|redis|ftp)://[a-z:.]{0,12}(/[a-z]{0,6})?".prop_map(toml::Value::String),
        "[a-z]{0,8}".prop_map(toml::Value::String),
    ];
    scalar.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(toml::Value::Array),
            proptest::collection::btree_map("[a-z]{1,4}", inner, 0..3)
                .prop_map(|table| toml::Value::Table(table.into_iter().collect())),
        ]
    })
}

/// Loaded: a configuration that validates. Not loaded: an error that says why.
fn valid_or_refused(loaded: &Result<PerformanceConfig, ConfigError>) -> Result<(), TestCaseError> {
    match loaded {
        Ok(config) => prop_assert!(config.validate().is_ok(), "{:?}", config.validate()),
        Err(error) => prop_assert!(!error.to_string().is_empty()),
    }
    Ok(())
}

/// The error for a document that sets `written`: every invalid field is a key of the
/// configuration, and a loading error names one of the keys written (a rule over several
/// fields may name one that was not).
fn names_a_key(error: &ConfigError, written: &[String]) -> Result<(), TestCaseError> {
    match error {
        ConfigError::Invalid(fields) => {
            prop_assert!(!fields.is_empty());
            for field in fields {
                prop_assert!(keys().iter().any(|key| key == field.field), "{}", field);
            }
        }
        // A variable's key is named upper case, an alias's by the key it stands for.
        other => {
            let message = other.to_string().to_lowercase();
            prop_assert!(
                written
                    .iter()
                    .any(|key| message.contains(key.as_str())
                        || message.contains(canonical_key(key))),
                "{} names none of {:?}",
                message,
                written
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases(256))]

    /// Any text at all: a configuration that validates, or an error.
    #[test]
    fn any_text_loads_valid_or_is_refused(toml in prop_oneof![
        any::<String>(),
        "([a-z_]{1,12} *= *[^\n]{0,12}\n){0,4}",
    ]) {
        valid_or_refused(&PerformanceConfig::from_toml_str(&toml))?;
    }

    /// `key = value` lines over the configuration's keys: a configuration that validates, or
    /// an error naming a key.
    #[test]
    fn any_value_under_any_key_loads_valid_or_names_the_key(
        lines in proptest::collection::btree_map(key(), value(), 1..6),
    ) {
        let toml: String = lines.iter().map(|(key, value)| format!("{key} = {value}\n")).collect();
        let written: Vec<String> = lines.into_keys().collect();
        let loaded = PerformanceConfig::from_toml_str(&toml);
        valid_or_refused(&loaded)?;
        if let Err(error) = &loaded {
            names_a_key(error, &written).map_err(|failure| {
                TestCaseError::fail(format!("{failure}\nin:\n{toml}"))
            })?;
        }
    }
}

proptest! {
    #![proptest_config(cases(64))]

    /// Any text in a `PERF_*` variable: a configuration that validates, or an error naming
    /// the variable's key (or, where figment's parser panics, the environment as a whole: see
    /// `a_quoted_non_ascii_environment_value_with_an_escape_loads_or_is_refused`).
    #[test]
    fn any_environment_value_loads_valid_or_names_the_key(
        key in prop::sample::select(keys()),
        value in prop_oneof![
            any::<String>(),
            // What figment parses further: quoted strings, arrays, dictionaries.
            any::<String>().prop_map(|text| format!("\"{text}\"")),
            "\\[[^\\]]{0,12}\\]",
            "\\{[^}]{0,12}\\}",
        ]
        .prop_filter("a value the environment holds", |v| !v.contains('\0')),
    ) {
        let mut loaded = None;
        figment::Jail::expect_with(|jail| {
            jail.set_env(format!("PERF_{}", key.to_uppercase()), &value);
            loaded = Some(PerformanceConfig::from_env());
            Ok(())
        });
        let loaded = loaded.expect("ran");
        valid_or_refused(&loaded)?;
        if let Err(error) = &loaded
            && !error.to_string().contains("could not be parsed")
        {
            names_a_key(error, std::slice::from_ref(&key))?;
        }
    }
}

/// figment 0.10.19 reads a `PERF_*` value that starts with `"` as a quoted string, and its
/// unescaping (`figment/src/value/escape.rs:28`) cuts the text at a backslash's *character*
/// index as if it were a byte index: with a multi-byte character before the backslash, that
/// panics (not a char boundary) or drops characters. The loader turns the panic into an
/// error.
#[test]
fn a_quoted_non_ascii_environment_value_with_an_escape_loads_or_is_refused() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("PERF_CACHE_TTL", r#""é\t""#);
        let loaded = PerformanceConfig::from_env();
        assert!(loaded.is_err(), "a tab is no duration: {loaded:?}");
        Ok(())
    });
}
