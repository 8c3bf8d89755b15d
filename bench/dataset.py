"""The database under test: pgbench's tables plus a wide table that does not compress away."""
import os

from devtools.localservers import PostgresCluster

from .measure import run

# Per unit of scale: pgbench adds 100,000 accounts (~16 MB); this adds 20,000 wide rows
# (~7 MB) of hex text (compresses about 2:1) and random bytes (do not compress).
WIDE_ROWS_PER_SCALE = 20_000
WIDE_TABLE_SQL = """
CREATE TABLE documents (
    id int PRIMARY KEY,
    title text NOT NULL,
    body text NOT NULL,
    blob bytea NOT NULL
);
INSERT INTO documents
SELECT g,
       'document ' || g,
       repeat(md5(g::text) || ' ', 2) || md5((g * 7)::text) || md5((g * 13)::text)
           || repeat(' lorem ipsum dolor sit amet', 3),
       decode(md5((g * 3)::text) || md5((g * 5)::text) || md5((g * 11)::text)
              || md5((g * 17)::text), 'hex')
FROM generate_series(1, {rows}) g;
"""


def build(cluster: PostgresCluster, dbname: str, scale: int) -> int:
    """Create `dbname` with `pgbench -i -s scale` and the wide table; return its size in bytes."""
    cluster.createdb(dbname)
    env = {**os.environ, "PGPASSWORD": cluster.password}
    run([str(cluster.bin_dir / "pgbench"), "--initialize", "--quiet", f"--scale={scale}",
         "--host=127.0.0.1", f"--port={cluster.port}", "--username=postgres", dbname], env)
    cluster.psql(WIDE_TABLE_SQL.format(rows=scale * WIDE_ROWS_PER_SCALE), dbname)
    cluster.psql("VACUUM ANALYZE documents", dbname)
    return int(cluster.psql(f"SELECT pg_database_size('{dbname}')"))
