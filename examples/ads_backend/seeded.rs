//! The ads the seed writes: one formula for the database (`db.rs`) and for the bare handler
//! the load test measures against (`examples/bare_ads.rs`), so that both answer the same JSON
//! for an id.

use serde::Serialize;

/// The categories, which ids cycle through.
pub(crate) const CATEGORIES: [&str; 5] = ["sports", "travel", "tech", "food", "music"];

/// Ad `id` as seeded; its JSON is the example's `Ad`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SeededAd {
    pub(crate) id: i64,
    pub(crate) campaign: i64,
    pub(crate) category: &'static str,
    pub(crate) title: String,
    pub(crate) bid: f64,
}

impl SeededAd {
    pub(crate) fn new(id: i64) -> Self {
        let category = CATEGORIES[id.rem_euclid(5) as usize];
        Self {
            id,
            campaign: id % 50,
            category,
            title: format!("Ad {id}: {category} deals"),
            bid: 0.5 + (id % 17) as f64 / 10.0,
        }
    }
}
