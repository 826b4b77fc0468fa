//! The SQL fingerprinter against text it was not written for (issue 20, fuzzing on stable):
//! any string has a shape, without a panic; with the tokenizer (`sql`), queries that differ
//! only in their literal values share one, and a shape's text is its own shape.
//!
//! Case counts are kept low enough for the workspace's test run; `PROPTEST_CASES=5000` raises
//! every property here to that many cases.

use proptest::prelude::*;

use super::shape::shape_of;

/// `cases` cases, unless `PROPTEST_CASES` says how many.
fn cases(cases: u32) -> ProptestConfig {
    if std::env::var_os("PROPTEST_CASES").is_some() {
        ProptestConfig::default()
    } else {
        ProptestConfig::with_cases(cases)
    }
}

/// Text that looks like SQL often enough to reach past the tokenizer's first character:
/// keywords, names, literals of every quoting, operators, comments and stray quotes.
fn sqlish() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        prop::sample::select(vec![
            "SELECT", "select", "FROM", "WHERE", "IN", "in", "AND", "JOIN", "INTO", "UPDATE",
            "TABLE", "VALUES", "SET", "LIMIT", "AS", "LATERAL", "TRUE", "false", "NULL", "(", ")",
            ",", ".", ";", "=", "<>", "-", "+", "*", "/", "::", "?", "$1", "$$", "$tag$", "'",
            "\"", "`", "[", "]", "--", "/*", "*/", "\n", " ", "\t", "E'", "X'", "N'", "B'", "R'",
            "'''", "\"\"\"", "\\", "@", "#", ":name", "1e", "0x",
        ])
        .prop_map(str::to_owned),
        "[a-zA-Z_][a-zA-Z0-9_]{0,8}",
        "-?[0-9]{1,20}(\\.[0-9]{0,5})?(e-?[0-9]{1,3})?",
        "'[^']{0,10}'",
        "\"[^\"]{0,6}(\"\")?[^\"]{0,6}\"",
        any::<char>().prop_map(String::from),
    ];
    proptest::collection::vec(piece, 0..24).prop_map(|pieces| pieces.join(" "))
}

proptest! {
    #![proptest_config(cases(256))]

    /// Any text has a shape, the same every time, fingerprinted from its normalized text.
    #[test]
    fn any_text_has_one_shape(sql in prop_oneof![any::<String>(), sqlish()]) {
        let shape = shape_of(&sql);
        prop_assert_eq!(&shape, &shape_of(&sql));
        prop_assert_eq!(shape.fingerprint, xxhash_rust::xxh3::xxh3_64(shape.normalized.as_bytes()));
    }
}

#[cfg(feature = "sql")]
mod literals {
    use sqlparser::{dialect::GenericDialect, tokenizer::Tokenizer};

    use super::*;

    /// A literal as a client might write it.
    fn literal() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<u64>().prop_map(|n| n.to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<f64>()
                .prop_filter("a finite number", |x| x.is_finite())
                .prop_map(|x| x.to_string()),
            (0u32..1000, 0u32..1000).prop_map(|(whole, part)| format!("{whole}.{part}")),
            (1u32..10, -30i32..30).prop_map(|(mantissa, exp)| format!("{mantissa}e{exp}")),
            any::<String>().prop_map(|text| format!("'{}'", text.replace('\'', "''"))),
            prop::sample::select(vec!["TRUE", "FALSE", "true", "false"]).prop_map(str::to_owned),
            (1u32..100).prop_map(|n| format!("${n}")),
        ]
    }

    /// Queries with literal slots, `{}` each.
    const TEMPLATES: &[&str] = &[
        "SELECT * FROM ads WHERE id = {}",
        "SELECT id, title FROM ads WHERE campaign = {} AND bid > {} LIMIT {}",
        "select a - {} from t where b between {} and {}",
        "UPDATE ads SET title = {}, bid = {} WHERE id = {}",
        "INSERT INTO ads (id, title) VALUES ({}, {})",
        "DELETE FROM clicks WHERE ad = {} OR day < {}",
        "SELECT * FROM ads a JOIN campaigns c ON a.c = c.id WHERE c.name LIKE {} OFFSET {}",
    ];

    /// `template` with its slots filled by `literals` in turn.
    fn fill(template: &str, literals: &[String]) -> String {
        let mut literals = literals.iter().cycle();
        template
            .split("{}")
            .enumerate()
            .map(|(i, part)| match (i, literals.next()) {
                (0, _) | (_, None) => part.to_owned(),
                (_, Some(literal)) => format!("{literal} {part}"),
            })
            .collect()
    }

    proptest! {
        #![proptest_config(cases(256))]

        /// The same query with other literal values has the same shape.
        #[test]
        fn only_literal_values_changed_is_one_shape(
            template in prop::sample::select(TEMPLATES),
            a in proptest::collection::vec(literal(), 3),
            b in proptest::collection::vec(literal(), 3),
        ) {
            let (a, b) = (fill(template, &a), fill(template, &b));
            prop_assert_eq!(shape_of(&a), shape_of(&b), "{} / {}", a, b);
        }

        /// An IN list of any length and any literals is one shape.
        #[test]
        fn in_lists_of_any_length_are_one_shape(
            a in proptest::collection::vec(literal(), 1..8),
            b in proptest::collection::vec(literal(), 1..8),
        ) {
            let query = |list: Vec<String>| format!("SELECT * FROM ads WHERE id IN ({})", list.join(", "));
            let (a, b) = (query(a), query(b));
            prop_assert_eq!(shape_of(&a), shape_of(&b), "{} / {}", a, b);
        }

        /// A shape's normalized text is its own shape, for SQL the tokenizer reads. Not for
        /// text it rejects, whose shape is its words joined by single spaces: a line comment
        /// then runs over what were the following lines (`-- '`, a newline, `'` becomes
        /// `-- ' '`, all comment, whose shape is empty).
        #[test]
        fn a_shapes_text_is_its_own_shape(sql in prop_oneof![any::<String>(), sqlish()]) {
            let tokenizes = Tokenizer::new(&GenericDialect {}, &sql).tokenize().is_ok();
            let shape = shape_of(&sql);
            if tokenizes {
                let again = shape_of(&shape.normalized);
                prop_assert_eq!(&again.normalized, &shape.normalized, "from {:?}", sql);
            }
        }
    }
}
