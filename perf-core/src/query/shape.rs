//! A query's shape: its SQL with literals replaced by placeholders, as pg_stat_statements
//! normalizes it, the fingerprint of that text, and the tables it reads or writes.
//!
//! Normalizing takes sqlparser's tokenizer: the `sql` feature. Without it a query's shape is
//! its text as given, and names no tables.

use std::sync::Arc;

use serde::Serialize;
#[cfg(feature = "sql")]
use sqlparser::{
    dialect::GenericDialect,
    keywords::Keyword,
    tokenizer::{Token, Tokenizer},
};

/// What all queries of one shape share. Without the `sql` feature, `normalized` is the query's
/// text as given and `tables` is empty. Queries timed without their SQL share the shape of
/// their query type: its name as `normalized`, no tables.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Shape {
    /// xxh3 of `normalized`: the same in every process and build.
    pub fingerprint: u64,
    /// Lower-case keywords and names, literals as `?`, `IN` lists as `in (?)`, single spaces.
    pub normalized: Arc<str>,
    /// Tables after FROM, JOIN, INTO, UPDATE and TABLE, lower case, without schema.
    pub tables: Arc<[String]>,
}

/// Seeds the fingerprints of [`Shape::named`], so that a name and a query's text never share one.
const NAMED_SEED: u64 = 0x6e61_6d65_6400_0001;

impl Shape {
    /// The shape of the queries timed under `query_type` without their SQL: the name as its
    /// text, no tables.
    pub(crate) fn named(query_type: &str) -> Self {
        Self {
            fingerprint: xxhash_rust::xxh3::xxh3_64_with_seed(query_type.as_bytes(), NAMED_SEED),
            normalized: query_type.into(),
            tables: Arc::from([]),
        }
    }
}

/// The shape of `sql`. SQL the tokenizer rejects (an unterminated string, say) is shaped
/// from its text with whitespace collapsed, so that it still has stable statistics.
#[cfg(feature = "sql")]
pub(crate) fn shape_of(sql: &str) -> Shape {
    let tokens = Tokenizer::new(&GenericDialect {}, sql).tokenize();
    let (words, tables) = match tokens {
        Ok(tokens) => (normalize(&tokens), tables_of(&tokens)),
        Err(_) => (
            sql.split_whitespace().map(str::to_lowercase).collect(),
            Vec::new(),
        ),
    };
    let normalized = words.join(" ");
    Shape {
        fingerprint: xxhash_rust::xxh3::xxh3_64(normalized.as_bytes()),
        normalized: normalized.into(),
        tables: tables.into(),
    }
}

/// The shape of `sql` without a tokenizer: its text, which names no tables it can tell.
#[cfg(not(feature = "sql"))]
pub(crate) fn shape_of(sql: &str) -> Shape {
    Shape {
        fingerprint: xxhash_rust::xxh3::xxh3_64(sql.as_bytes()),
        normalized: sql.into(),
        tables: Arc::new([]),
    }
}

#[cfg(feature = "sql")]
const PLACEHOLDER: &str = "?";

#[cfg(feature = "sql")]
fn is_literal(token: &Token) -> bool {
    match token {
        Token::Number(..)
        | Token::Placeholder(_)
        | Token::SingleQuotedString(_)
        | Token::DoubleQuotedString(_)
        | Token::TripleSingleQuotedString(_)
        | Token::TripleDoubleQuotedString(_)
        | Token::DollarQuotedString(_)
        | Token::SingleQuotedByteStringLiteral(_)
        | Token::DoubleQuotedByteStringLiteral(_)
        | Token::TripleSingleQuotedByteStringLiteral(_)
        | Token::TripleDoubleQuotedByteStringLiteral(_)
        | Token::SingleQuotedRawStringLiteral(_)
        | Token::DoubleQuotedRawStringLiteral(_)
        | Token::TripleSingleQuotedRawStringLiteral(_)
        | Token::TripleDoubleQuotedRawStringLiteral(_)
        | Token::NationalStringLiteral(_)
        | Token::EscapedStringLiteral(_)
        | Token::UnicodeStringLiteral(_)
        | Token::HexStringLiteral(_) => true,
        Token::Word(word) => matches!(word.keyword, Keyword::TRUE | Keyword::FALSE),
        _ => false,
    }
}

/// The normalized words of a tokenized query.
#[cfg(feature = "sql")]
fn normalize(tokens: &[Token]) -> Vec<String> {
    let mut words: Vec<String> = Vec::with_capacity(tokens.len());
    let significant: Vec<&Token> = tokens
        .iter()
        .filter(|token| !matches!(token, Token::Whitespace(_) | Token::EOF))
        .collect();
    for (i, token) in significant.iter().enumerate() {
        // A sign before a number is part of the literal: `id = -1` is `id = ?`.
        if matches!(token, Token::Minus | Token::Plus)
            && significant
                .get(i + 1)
                .is_some_and(|next| matches!(next, Token::Number(..)))
            && words.last().is_none_or(|last| starts_operand(last))
        {
            continue;
        }
        let word = match token {
            token if is_literal(token) => PLACEHOLDER.to_owned(),
            Token::Word(word) => match word.quote_style {
                None => word.value.to_lowercase(),
                // Written again with a quote inside the name doubled, as in the query: the
                // token's `Display` writes it single, which would end the name there.
                // GenericDialect quotes names with `"` and `` ` ``, each its own end quote.
                Some(quote) => {
                    let quote = quote.to_string();
                    let inside = word.value.replace(&quote, &quote.repeat(2));
                    format!("{quote}{inside}{quote}")
                }
            },
            other => other.to_string(),
        };
        words.push(word);
        collapse_in_list(&mut words);
    }
    words
}

/// Whether an operand can follow `word` (so that a sign after it belongs to a number).
#[cfg(feature = "sql")]
fn starts_operand(word: &str) -> bool {
    !(word == PLACEHOLDER || word == ")" || word.chars().next().is_some_and(char::is_alphanumeric))
        || matches!(
            word,
            "select"
                | "where"
                | "and"
                | "or"
                | "not"
                | "in"
                | "values"
                | "set"
                | "when"
                | "then"
                | "else"
                | "between"
                | "like"
                | "is"
                | "by"
                | "limit"
                | "offset"
                | "return"
                | "on"
        )
}

/// `in ( ? , ? , ? )` just completed at the end of `words` becomes `in ( ? )`.
#[cfg(feature = "sql")]
fn collapse_in_list(words: &mut Vec<String>) {
    if words.last().map(String::as_str) != Some(")") {
        return;
    }
    let Some(open) = words.iter().rposition(|word| word == "(") else {
        return;
    };
    if open == 0 || words[open - 1] != "in" {
        return;
    }
    let inside = &words[open + 1..words.len() - 1];
    let only_placeholders = !inside.is_empty()
        && inside.iter().enumerate().all(|(i, word)| {
            if i % 2 == 0 {
                word == PLACEHOLDER
            } else {
                word == ","
            }
        });
    if only_placeholders && inside.len() > 1 {
        words.truncate(open + 1);
        words.push(PLACEHOLDER.to_owned());
        words.push(")".to_owned());
    }
}

/// The tables a query names after FROM, JOIN, INTO, UPDATE or TABLE (and after commas in a
/// FROM list).
#[cfg(feature = "sql")]
fn tables_of(tokens: &[Token]) -> Vec<String> {
    let words: Vec<&Token> = tokens
        .iter()
        .filter(|token| !matches!(token, Token::Whitespace(_)))
        .collect();
    let mut tables = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let introduces = matches!(words[i], Token::Word(word) if matches!(
            word.keyword,
            Keyword::FROM | Keyword::JOIN | Keyword::INTO | Keyword::UPDATE | Keyword::TABLE
        ));
        i += 1;
        if !introduces {
            continue;
        }
        // `name`, `schema.name`, then more after commas. Names may be keywords (`public`,
        // `user`); a subquery or LATERAL names no table.
        while let Some(Token::Word(name)) = words.get(i) {
            if matches!(name.keyword, Keyword::SELECT | Keyword::LATERAL)
                && name.quote_style.is_none()
            {
                break;
            }
            let mut table = &name.value;
            i += 1;
            while let (Some(Token::Period), Some(Token::Word(part))) =
                (words.get(i), words.get(i + 1))
            {
                table = &part.value;
                i += 2;
            }
            let table = table.to_lowercase();
            if !tables.contains(&table) {
                tables.push(table);
            }
            // An alias, then a comma for another table.
            if let Some(Token::Word(alias)) = words.get(i)
                && alias.keyword == Keyword::NoKeyword
            {
                i += 1;
            }
            if matches!(words.get(i), Some(Token::Word(w)) if w.keyword == Keyword::AS) {
                i += 2;
            }
            if matches!(words.get(i), Some(Token::Comma)) {
                i += 1;
            } else {
                break;
            }
        }
    }
    tables
}

#[cfg(all(test, not(feature = "sql")))]
mod text_tests {
    use super::*;

    #[test]
    fn without_the_tokenizer_a_shape_is_the_text() {
        let sql = "SELECT * FROM ads WHERE id = 1";
        let shape = shape_of(sql);
        assert_eq!(&*shape.normalized, sql);
        assert!(shape.tables.is_empty());
        assert_eq!(shape, shape_of(sql), "stable");
        let other = shape_of("SELECT * FROM ads WHERE id = 2");
        assert_ne!(shape.fingerprint, other.fingerprint);
    }
}

#[cfg(all(test, feature = "sql"))]
mod tests {
    use super::*;

    fn normalized(sql: &str) -> String {
        shape_of(sql).normalized.to_string()
    }

    #[test]
    fn literals_case_whitespace_and_comments_do_not_change_the_shape() {
        let a = shape_of("SELECT * FROM ads WHERE id = 1 AND title = 'x'");
        let b =
            shape_of("select *\n  from ADS -- the ads\n where id=42 and title = 'other' /* c */");
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_eq!(
            &*a.normalized,
            "select * from ads where id = ? and title = ?"
        );
        assert_eq!(
            normalized("SELECT a FROM t WHERE x = -5"),
            "select a from t where x = ?"
        );
        assert_eq!(normalized("SELECT a - 5 FROM t"), "select a - ? from t");
        assert_eq!(
            normalized("SELECT a FROM t WHERE b = $1 AND c = ?"),
            "select a from t where b = ? and c = ?"
        );
        assert_eq!(
            normalized("UPDATE t SET on_sale = TRUE"),
            "update t set on_sale = ?"
        );
    }

    #[test]
    fn in_lists_of_any_length_are_one_shape() {
        let one = shape_of("SELECT * FROM ads WHERE id IN (1)");
        let many = shape_of("SELECT * FROM ads WHERE id IN (1, 2, 3, 4)");
        assert_eq!(one.fingerprint, many.fingerprint);
        assert_eq!(&*many.normalized, "select * from ads where id in ( ? )");
        let subquery = shape_of("SELECT * FROM ads WHERE id IN (SELECT ad FROM clicks)");
        assert_ne!(subquery.fingerprint, one.fingerprint);
    }

    #[test]
    fn different_shapes_differ() {
        let shapes = [
            "SELECT * FROM ads WHERE id = 1",
            "SELECT * FROM ads WHERE campaign = 1",
            "SELECT id FROM ads WHERE id = 1",
            "DELETE FROM ads WHERE id = 1",
            "SELECT * FROM ads WHERE id = 1 LIMIT 5",
        ];
        for (i, a) in shapes.iter().enumerate() {
            for b in &shapes[i + 1..] {
                assert_ne!(
                    shape_of(a).fingerprint,
                    shape_of(b).fingerprint,
                    "{a} / {b}"
                );
            }
        }
    }

    #[test]
    fn tables_are_found_after_from_join_into_and_update() {
        let tables = |sql: &str| shape_of(sql).tables.to_vec();
        assert_eq!(
            tables("SELECT * FROM ads a JOIN public.campaigns c ON a.c = c.id"),
            ["ads", "campaigns"]
        );
        assert_eq!(
            tables("select * from ads, clicks as k where 1 = 1"),
            ["ads", "clicks"]
        );
        assert_eq!(tables("INSERT INTO Ads (id) VALUES (1)"), ["ads"]);
        assert_eq!(tables("UPDATE ads SET x = 1"), ["ads"]);
        assert_eq!(
            tables("SELECT * FROM (SELECT 1) AS sub"),
            Vec::<String>::new()
        );
    }

    /// Found by `shape_props`: a quote inside a quoted name lost its double, so the shape's
    /// text ended the name early.
    #[test]
    fn quoted_names_keep_their_doubled_quotes() {
        for sql in [
            r#"SELECT "a""b" FROM "T""s" WHERE x = 1"#,
            "SELECT `a``b` FROM t",
            r#""""" """""#,
        ] {
            let shape = normalized(sql);
            assert_eq!(
                normalized(&shape),
                shape,
                "{sql}: its shape is its own shape"
            );
        }
        assert_eq!(
            normalized(r#"SELECT "a""b" FROM t WHERE x = 1"#),
            r#"select "a""b" from t where x = ?"#
        );
        assert_ne!(
            normalized(r#"SELECT "a""b" FROM t"#),
            normalized(r#"SELECT "a" "b" FROM t"#)
        );
    }

    #[test]
    fn sql_the_tokenizer_rejects_still_has_a_stable_shape() {
        let a = shape_of("SELECT 'unterminated");
        assert_eq!(a, shape_of("select   'unterminated"));
        assert!(a.tables.is_empty());
    }
}
