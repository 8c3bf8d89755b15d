"""A database shaped like production ones, for restore tests.

`create_production_schema` builds, in an empty database, the objects that simple test
tables leave out (partitions, inheritance, custom types, views, triggers, row-level
security, grants, large objects, non-ASCII names ...) and fills them with a few thousand
rows; `damage` changes it the way a bad day would; `dump_sections` gives its schema and
data as normalised pg_dump texts, so a test can check that a restore put everything back.
Only core PostgreSQL is used (no extensions), and all of it works on PostgreSQL 15 and 18.
"""
import subprocess
from pathlib import Path

SCHEMA_SQL = r"""
CREATE SCHEMA shop;
CREATE SCHEMA billing;

CREATE DOMAIN shop.email AS text CHECK (VALUE ~ '^[^@\s]+@[^@\s]+$');
CREATE TYPE shop.order_status AS ENUM ('new', 'paid', 'shipped', 'cancelled');
CREATE TYPE shop.address AS (street text, city text, zip text);

CREATE TABLE shop.customers (
    id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL,
    email shop.email NOT NULL,
    address shop.address,
    tags text[] NOT NULL DEFAULT '{}',
    search tsvector GENERATED ALWAYS AS (to_tsvector('simple', name)) STORED,
    updated_at timestamptz NOT NULL DEFAULT '2024-01-01 00:00:00+00'
);
COMMENT ON TABLE shop.customers IS 'People who buy things';
COMMENT ON COLUMN shop.customers.email IS 'Where invoices go';
CREATE UNIQUE INDEX customers_email_lower ON shop.customers (lower(email));
CREATE INDEX customers_search ON shop.customers USING gin (search);
CREATE INDEX customers_tags ON shop.customers USING gin (tags);

CREATE FUNCTION shop.touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := NEW.updated_at + interval '1 day';
    RETURN NEW;
END
$$;
CREATE TRIGGER customers_touch BEFORE UPDATE ON shop.customers
    FOR EACH ROW EXECUTE FUNCTION shop.touch_updated_at();

CREATE SEQUENCE shop.order_id_seq;
CREATE TABLE shop.orders (
    id bigint NOT NULL DEFAULT nextval('shop.order_id_seq'),
    ordered_on date NOT NULL,
    region text NOT NULL,
    customer_id int NOT NULL REFERENCES shop.customers (id),
    status shop.order_status NOT NULL DEFAULT 'new',
    total numeric(10, 2) NOT NULL,
    details jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (id, ordered_on)
) PARTITION BY RANGE (ordered_on);
ALTER SEQUENCE shop.order_id_seq OWNED BY shop.orders.id;
CREATE TABLE shop.orders_2023 PARTITION OF shop.orders
    FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
CREATE TABLE shop.orders_2024 PARTITION OF shop.orders
    FOR VALUES FROM ('2024-01-01') TO ('2025-01-01') PARTITION BY HASH (id);
CREATE TABLE shop.orders_2024_h0 PARTITION OF shop.orders_2024 FOR VALUES WITH (MODULUS 2, REMAINDER 0);
CREATE TABLE shop.orders_2024_h1 PARTITION OF shop.orders_2024 FOR VALUES WITH (MODULUS 2, REMAINDER 1);
CREATE TABLE shop.orders_default PARTITION OF shop.orders DEFAULT;
CREATE INDEX orders_open ON shop.orders (customer_id) WHERE status IN ('new', 'paid');
CREATE INDEX orders_details ON shop.orders USING gin (details);

CREATE TABLE shop.order_items (
    id serial PRIMARY KEY,
    order_id bigint NOT NULL,
    ordered_on date NOT NULL,
    quantity int NOT NULL CHECK (quantity > 0),
    unit_price numeric(10, 2) NOT NULL,
    line_total numeric(12, 2) GENERATED ALWAYS AS (quantity * unit_price) STORED,
    FOREIGN KEY (order_id, ordered_on) REFERENCES shop.orders (id, ordered_on)
        DEFERRABLE INITIALLY DEFERRED
);

CREATE TABLE shop.events (id int PRIMARY KEY, happened_at timestamptz NOT NULL, note text);
CREATE TABLE shop.login_events (ip inet NOT NULL) INHERITS (shop.events);

CREATE TABLE shop.bookings (
    id int PRIMARY KEY,
    room text NOT NULL,
    during tstzrange NOT NULL,
    EXCLUDE USING gist (during WITH &&)
);

CREATE TABLE shop."Bestellungen Ü" (
    "Nummer" int PRIMARY KEY,
    "Größe" text NOT NULL,
    "Straße" text
);

CREATE TABLE billing.invoices (
    id int PRIMARY KEY,
    customer_id int NOT NULL REFERENCES shop.customers (id),
    amount numeric(10, 2) NOT NULL,
    owner name NOT NULL DEFAULT current_user
);
ALTER TABLE billing.invoices ENABLE ROW LEVEL SECURITY;
CREATE POLICY invoices_own ON billing.invoices USING (owner = current_user);

CREATE FUNCTION billing.customer_total(customer int) RETURNS numeric LANGUAGE plpgsql STABLE AS $$
DECLARE
    result numeric;
BEGIN
    SELECT coalesce(sum(total), 0) INTO result FROM shop.orders WHERE customer_id = customer;
    RETURN result;
END
$$;

CREATE VIEW shop.order_totals AS
    SELECT customer_id, count(*) AS orders, sum(total) AS revenue FROM shop.orders GROUP BY customer_id;
CREATE VIEW billing.big_customers AS
    SELECT c.name, t.revenue FROM shop.order_totals t JOIN shop.customers c ON c.id = t.customer_id
    WHERE t.revenue > 1000;

INSERT INTO shop.customers (name, email, address, tags)
    SELECT 'Kunde ' || g, 'kunde' || g || '@example.com', ROW(g || ' Hauptstraße', 'Köln', lpad(g::text, 5, '0'))::shop.address,
           ARRAY['tag' || g % 5, 'vip' || g % 2]
    FROM generate_series(1, 200) g;
UPDATE shop.customers SET name = name || ' (geändert)' WHERE id % 10 = 0;

INSERT INTO shop.orders (ordered_on, region, customer_id, status, total, details)
    SELECT date '2023-01-01' + (g % 900), (ARRAY['eu', 'us', 'apac'])[1 + g % 3], 1 + g % 200,
           (ARRAY['new', 'paid', 'shipped', 'cancelled'])[1 + g % 4]::shop.order_status,
           round((g * 7.31) % 500, 2), jsonb_build_object('channel', CASE WHEN g % 2 = 0 THEN 'web' ELSE 'shop' END,
                                                          'items', g % 7)
    FROM generate_series(1, 1200) g;
INSERT INTO shop.order_items (order_id, ordered_on, quantity, unit_price)
    SELECT id, ordered_on, 1 + id % 4, round(total / (1 + id % 4), 2) FROM shop.orders ORDER BY id;

INSERT INTO shop.events SELECT g, timestamptz '2024-01-01 00:00:00+00' + g * interval '1 minute', 'event ' || g
    FROM generate_series(1, 100) g;
INSERT INTO shop.login_events SELECT g, timestamptz '2024-02-01 00:00:00+00' + g * interval '1 minute',
                                     'login ' || g, inet '10.0.0.0' + g
    FROM generate_series(101, 200) g;

INSERT INTO shop.bookings
    SELECT g, 'room ' || g % 3, tstzrange(timestamptz '2024-03-01 00:00:00+00' + g * interval '1 hour',
                                          timestamptz '2024-03-01 00:30:00+00' + g * interval '1 hour')
    FROM generate_series(1, 50) g;

INSERT INTO shop."Bestellungen Ü" SELECT g, (ARRAY['S', 'M', 'L', 'XL'])[1 + g % 4], 'Grüner Weg ' || g
    FROM generate_series(1, 20) g;

INSERT INTO billing.invoices (id, customer_id, amount)
    SELECT g, 1 + g % 200, round(g * 3.7, 2) FROM generate_series(1, 300) g;

CREATE MATERIALIZED VIEW billing.revenue_by_month AS
    SELECT date_trunc('month', ordered_on)::date AS month, count(*) AS orders, sum(total) AS revenue
    FROM shop.orders GROUP BY 1 ORDER BY 1
    WITH DATA;
CREATE UNIQUE INDEX revenue_by_month_month ON billing.revenue_by_month (month);

SELECT lo_from_bytea(424242, convert_to('Rechnung Nr. 1 für Kunde 1', 'UTF8'));
SELECT lo_from_bytea(424243, decode(repeat('00ff10', 2000), 'hex'));
COMMENT ON LARGE OBJECT 424242 IS 'Invoice PDF';
"""

DAMAGE_SQL = """
DELETE FROM shop.orders_2024_h0 WHERE id % 2 = 0;
DELETE FROM shop.order_items i WHERE NOT EXISTS
    (SELECT FROM shop.orders o WHERE o.id = i.order_id AND o.ordered_on = i.ordered_on);
UPDATE shop.customers SET name = 'overwritten' WHERE id <= 50;
INSERT INTO shop.orders (ordered_on, region, customer_id, total) VALUES ('2030-01-01', 'eu', 1, 1.00);
DROP TABLE shop."Bestellungen Ü";
DROP VIEW billing.big_customers;
CREATE TABLE shop.not_in_backup (id int PRIMARY KEY);
CREATE FUNCTION shop.not_in_backup_fn() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN 1; END $$;
SELECT lo_unlink(424243);
SELECT setval('shop.order_id_seq', 99999);
"""

UNSTABLE_PREFIXES = ("\\restrict ", "\\unrestrict ", "-- Dumped from database version",
                     "-- Dumped by pg_dump version", "-- Started on", "-- Completed on")


def create_production_schema(cluster, dbname: str, role: str) -> None:
    """Build and fill the schema in the empty database `dbname`; grant access to the existing `role`."""
    grants = f"""
        GRANT USAGE ON SCHEMA shop, billing TO "{role}";
        GRANT SELECT, INSERT, UPDATE ON shop.customers, shop.orders TO "{role}";
        GRANT SELECT ON billing.invoices, billing.big_customers TO "{role}";
        GRANT USAGE, SELECT ON SEQUENCE shop.order_id_seq TO "{role}";
    """
    cluster.psql(SCHEMA_SQL + grants, dbname)


def damage(cluster, dbname: str) -> None:
    """Delete, change, drop and add things in a database made by `create_production_schema`."""
    cluster.psql(DAMAGE_SQL, dbname)


def _pg_dump(bin_dir: str | Path, url: str, *options: str) -> str:
    result = subprocess.run([str(Path(bin_dir) / "pg_dump"), *options, f"--dbname={url}"],
                            capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise RuntimeError(f"pg_dump {' '.join(options)} failed: {result.stderr.strip()}")
    return "".join(line for line in result.stdout.splitlines(keepends=True)
                   if not line.startswith(UNSTABLE_PREFIXES))


def dump_sections(bin_dir: str | Path, url: str) -> tuple[str, str]:
    """The schema-only and data-only plain dumps of `url`, without lines that vary between runs."""
    return _pg_dump(bin_dir, url, "--schema-only"), _pg_dump(bin_dir, url, "--data-only")
