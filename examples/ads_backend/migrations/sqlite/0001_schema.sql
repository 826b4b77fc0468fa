-- The ads back end's schema on SQLite.
CREATE TABLE ads (
    id INTEGER PRIMARY KEY,
    campaign INTEGER NOT NULL,
    category TEXT NOT NULL,
    title TEXT NOT NULL,
    bid REAL NOT NULL
);
CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE preferences (
    user_id INTEGER NOT NULL REFERENCES users (id),
    category TEXT NOT NULL,
    weight REAL NOT NULL
);
CREATE INDEX preferences_user ON preferences (user_id);
CREATE TABLE impressions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ad_id INTEGER NOT NULL,
    user_id INTEGER NOT NULL,
    day TEXT NOT NULL,
    -- 1 when the impression was clicked.
    clicked INTEGER NOT NULL DEFAULT 0,
    -- What the impression cost the advertiser.
    cost REAL NOT NULL DEFAULT 0
);
-- The analytics read one user's day.
CREATE INDEX impressions_user_day ON impressions (user_id, day);
CREATE TABLE templates (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL
);
