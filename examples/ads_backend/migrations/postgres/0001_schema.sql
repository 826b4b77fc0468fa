-- The ads back end's schema on PostgreSQL: the SQLite one with PostgreSQL's types (64-bit
-- integers and double precision throughout, as the example reads them).
CREATE TABLE ads (
    id BIGINT PRIMARY KEY,
    campaign BIGINT NOT NULL,
    category TEXT NOT NULL,
    title TEXT NOT NULL,
    bid DOUBLE PRECISION NOT NULL
);
CREATE TABLE users (id BIGINT PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE preferences (
    user_id BIGINT NOT NULL REFERENCES users (id),
    category TEXT NOT NULL,
    weight DOUBLE PRECISION NOT NULL
);
CREATE INDEX preferences_user ON preferences (user_id);
CREATE TABLE impressions (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ad_id BIGINT NOT NULL,
    user_id BIGINT NOT NULL,
    day TEXT NOT NULL,
    -- 1 when the impression was clicked.
    clicked BIGINT NOT NULL DEFAULT 0,
    -- What the impression cost the advertiser.
    cost DOUBLE PRECISION NOT NULL DEFAULT 0
);
-- The analytics read one user's day.
CREATE INDEX impressions_user_day ON impressions (user_id, day);
CREATE TABLE templates (
    id BIGINT PRIMARY KEY,
    name TEXT NOT NULL,
    width BIGINT NOT NULL,
    height BIGINT NOT NULL
);
