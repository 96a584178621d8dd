// Package measure holds snowrain's store: the schema and its migrations,
// the batching writer that records events without ever blocking mail,
// the log follower's deliveries, and the queries behind the reports.
//
// # Two backends, one store
//
// Open takes a DSN: a postgres:// (or postgresql://) URL opens PostgreSQL,
// anything else is a SQLite file. SQLite is the embedded default for one
// host; PostgreSQL is for a fleet, several nodes (MX and submission hosts,
// scanner shards) writing one database. Both are the same Store type, told
// apart by its Dialect, with the same methods and the same SQL:
//
//   - Store.DB is a database/sql handle that takes the same text on both.
//     On PostgreSQL it is pgx's stdlib driver over the store's pgxpool,
//     wrapped (pg.go) so that each statement's ? placeholders become $1,
//     $2, … (Rebind; SQLite's numbered ?NNN becomes $NNN), Go booleans
//     become 0 and 1, and text arguments are mended to what a UTF8
//     database accepts (pgText: invalid UTF-8 becomes U+FFFD, NUL is
//     dropped; SQLite keeps the bytes).
//   - The migrations are one list of SQLite texts (migrate.go). PostgreSQL
//     runs each through Dialect.schema, a handful of general DDL rewrites
//     (WITHOUT ROWID dropped, an "id INTEGER PRIMARY KEY" becomes a
//     BIGINT identity column that still takes explicit values, INTEGER
//     becomes BIGINT and REAL DOUBLE PRECISION, the reserved column names
//     offset and window are quoted), plus pgEdits: per migration, pairs
//     of SQLite and PostgreSQL text for the expressions DDL rewrites
//     cannot reach. TestSchemasMatch applies every migration on both and
//     compares tables, columns, types and primary keys; TestPostgresEditsApply
//     checks each edit still finds its text. A new migration is appended
//     as SQLite text; if TestSchemasMatch fails on PostgreSQL, add its
//     pgEdits. Nodes of a fleet that start together migrate once: each
//     step runs under a PostgreSQL advisory lock.
//   - Every integer, flag included, is a 64-bit INTEGER/BIGINT: flags are
//     0 or 1 on both, so SUM counts them.
//
// # Writing SQL once
//
// A query in this package (and, after phase 2 of issue 16, every query)
// runs unchanged on both backends when it keeps to their common subset:
//
//   - Placeholders are ?. No boolean arithmetic: count a condition with
//     SUM(CASE WHEN cond THEN n ELSE 0 END), test a flag with flag <> 0
//     (not a bare flag, not WHERE 1).
//   - A subquery in FROM has an alias. Every selected column is grouped
//     or aggregated (SQLite's bare columns are an error in PostgreSQL).
//   - Upserts are INSERT … ON CONFLICT (key) DO UPDATE SET c = table.c +
//     excluded.c: the table's own column qualified (a bare c is ambiguous
//     in PostgreSQL). No INSERT OR IGNORE/REPLACE: ON CONFLICT DO NOTHING.
//   - A new row's id comes from INSERT … RETURNING id, never
//     LastInsertId (pgx has none). No PRAGMA and no sqlite_master: ask
//     the store (SchemaVersion, or a method beside it).
//   - "offset" and "window" are quoted. LIKE is case-sensitive in
//     PostgreSQL and not in SQLite: compare normalised text instead.
//     NULLs sort first in SQLite and last in PostgreSQL, and text sorts
//     by the database's collation: a report that must read the same on
//     both orders by values that are never NULL, on a PostgreSQL database
//     created with LC_COLLATE C (pgtest's clusters are).
//   - SUM of a BIGINT is NUMERIC in PostgreSQL: scan it into an int64
//     (database/sql converts) and COALESCE it when no row may match.
//
// Where a backend must differ (VACUUM, the writer), the code switches on
// Store.Dialect or on the pool; nowhere else.
//
// # The writer
//
// Writer queues events (Enqueue never blocks: a full queue drops and
// counts) and one goroutine writes them in batches. On SQLite a batch is
// one transaction through the raw driver: multi-row INSERTs with a reused
// argument buffer (events.go). On PostgreSQL (pgwriter.go) it is one
// transaction of COPY in text format for connections, messages,
// signatures, downgrades and policy decisions (the column lists are read
// from the SQLite INSERT texts, so both write the same columns), with
// message ids drawn from the table's sequence first so that signatures
// link to them, and one pipelined round trip of upserts for the rollups
// and the MTA-STS cache, sorted so that concurrent writers lock rows in
// the same order. A failed commit is retried and then dropped and counted,
// as on SQLite; on PostgreSQL each attempt is bounded (pgCommitTimeout),
// attempts after a failure back off (pgBackoffMin to pgBackoffMax), and a
// connection-level failure resets the pool, so that the writer reconnects
// once the server is back. The log follower's deliveries take the same
// path (Store.RecordDeliveriesTLS).
//
// # Fleets
//
// Every record names the node that wrote it (Store.Node, config's node,
// default the host name): connections, messages, deliveries, downgrades
// and policy decisions have a node column, and node is part of every
// hourly rollup's key (right after hour), so that nodes writing the same
// hour, peer and verdicts add up through the upserts instead of
// colliding. Rows written before schema 15 have an empty node. The reports sum
// over nodes; narrowing to one is a WHERE node = ? on the same rollups.
//
// # Who owns which query
//
// The package that owns a table owns its queries (issue 14, item 3):
// measure owns every table but the scanner's (scan_*), which scanner
// owns. Report code asks measure for rows (BuildReport, ProviderRows,
// LatestActivity) and renders them; commands parse flags and call. Phase
// 2 of issue 16 moves the SQL still written in report/, policy/,
// feedback/, scanner/ and cmd/ behind such methods, written to the rules
// above, and adds each to the tests that run on both backends.
package measure
