package measure

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// migrations are applied in order; each runs once, in its own transaction.
// Never edit a released one: append a new one.
var migrations = []string{
	// 1: connections, messages, signatures.
	`CREATE TABLE connections (
		id            INTEGER PRIMARY KEY,
		conn_uid      TEXT NOT NULL,
		started_at    INTEGER NOT NULL,
		ended_at      INTEGER,
		direction     TEXT NOT NULL,
		mta           TEXT,
		daemon        TEXT,
		client_ip     TEXT,
		client_ptr    TEXT,
		helo          TEXT,
		tls_version   TEXT,
		cipher        TEXT,
		cipher_bits   INTEGER,
		key_exchange  TEXT,
		bulk_cipher   TEXT,
		mac           TEXT,
		forward_secret INTEGER NOT NULL DEFAULT 0,
		client_cert   INTEGER NOT NULL DEFAULT 0,
		cert_verify   TEXT,
		authenticated INTEGER NOT NULL DEFAULT 0,
		messages      INTEGER NOT NULL DEFAULT 0
	);
	CREATE INDEX connections_started ON connections(started_at);
	CREATE TABLE messages (
		id              INTEGER PRIMARY KEY,
		conn_uid        TEXT NOT NULL,
		received_at     INTEGER NOT NULL,
		direction       TEXT NOT NULL,
		queue_id        TEXT,
		client_ip       TEXT,
		mail_from_domain TEXT,
		mail_from_local TEXT,
		rcpt_domains    TEXT,
		rcpt_count      INTEGER NOT NULL DEFAULT 0,
		from_domain     TEXT,
		from_class      TEXT,
		size            INTEGER NOT NULL DEFAULT 0,
		tls_version     TEXT,
		cipher          TEXT,
		forward_secret  INTEGER NOT NULL DEFAULT 0,
		spf_result      TEXT,
		spf_class       TEXT,
		spf_domain      TEXT,
		helo_spf_result TEXT,
		helo_spf_class  TEXT,
		dkim_result     TEXT,
		dkim_signatures INTEGER NOT NULL DEFAULT 0,
		dmarc_result    TEXT,
		dmarc_policy    TEXT,
		dmarc_disposition TEXT,
		dmarc_record_domain TEXT,
		spf_aligned     INTEGER NOT NULL DEFAULT 0,
		dkim_aligned    INTEGER NOT NULL DEFAULT 0,
		auth_class      TEXT,
		action          TEXT NOT NULL,
		fail_open       TEXT
	);
	CREATE INDEX messages_received ON messages(received_at, direction);
	CREATE TABLE signatures (
		message_id  INTEGER NOT NULL,
		seq         INTEGER NOT NULL,
		domain      TEXT,
		selector    TEXT,
		algorithm   TEXT,
		key_bits    INTEGER,
		result      TEXT NOT NULL,
		class       TEXT,
		detail      TEXT,
		PRIMARY KEY (message_id, seq)
	) WITHOUT ROWID;`,
	// 2: outbound deliveries read from the MTA log, and where each log
	// was read up to.
	`CREATE TABLE deliveries (
		id            INTEGER PRIMARY KEY,
		delivered_at  INTEGER NOT NULL,
		mta           TEXT NOT NULL,
		queue_id      TEXT,
		domain        TEXT NOT NULL,
		relay_host    TEXT,
		relay_ip      TEXT,
		relay_port    INTEGER,
		status        TEXT NOT NULL,
		dsn           TEXT,
		delay         REAL,
		tls_version   TEXT,
		cipher        TEXT,
		cipher_bits   INTEGER,
		tls_level     TEXT NOT NULL,
		key_exchange  TEXT,
		bulk_cipher   TEXT,
		mac           TEXT,
		forward_secret INTEGER NOT NULL DEFAULT 0
	);
	CREATE INDEX deliveries_at ON deliveries(delivered_at);
	CREATE TABLE log_positions (
		source     TEXT PRIMARY KEY,
		inode      INTEGER NOT NULL,
		offset     INTEGER NOT NULL,
		updated_at INTEGER NOT NULL
	);`,
	// 3: hourly rollups, kept by the writer in the same transactions, so
	// that reports over months of mail read thousands of rows, not
	// millions. Filled from what is already there.
	`CREATE TABLE hourly_messages (
		hour INTEGER NOT NULL, direction TEXT NOT NULL, action TEXT NOT NULL,
		tls_version TEXT NOT NULL, cipher TEXT NOT NULL, forward_secret INTEGER NOT NULL,
		spf_result TEXT NOT NULL, spf_class TEXT NOT NULL, dkim_result TEXT NOT NULL,
		dmarc_result TEXT NOT NULL, dmarc_policy TEXT NOT NULL, auth_class TEXT NOT NULL,
		fail_open TEXT NOT NULL, messages INTEGER NOT NULL,
		PRIMARY KEY (hour, direction, action, tls_version, cipher, forward_secret, spf_result,
			spf_class, dkim_result, dmarc_result, dmarc_policy, auth_class, fail_open)
	) WITHOUT ROWID;
	CREATE TABLE hourly_dkim_failures (
		hour INTEGER NOT NULL, direction TEXT NOT NULL, class TEXT NOT NULL, signatures INTEGER NOT NULL,
		PRIMARY KEY (hour, direction, class)
	) WITHOUT ROWID;
	CREATE TABLE hourly_peers (
		hour INTEGER NOT NULL, direction TEXT NOT NULL, domain TEXT NOT NULL,
		messages INTEGER NOT NULL, tls INTEGER NOT NULL,
		PRIMARY KEY (hour, direction, domain)
	) WITHOUT ROWID;
	CREATE TABLE hourly_clients (
		hour INTEGER NOT NULL, client_ip TEXT NOT NULL, messages INTEGER NOT NULL, tls INTEGER NOT NULL,
		PRIMARY KEY (hour, client_ip)
	) WITHOUT ROWID;
	CREATE TABLE hourly_deliveries (
		hour INTEGER NOT NULL, domain TEXT NOT NULL, status TEXT NOT NULL, tls_version TEXT NOT NULL,
		cipher TEXT NOT NULL, tls_level TEXT NOT NULL, forward_secret INTEGER NOT NULL,
		deliveries INTEGER NOT NULL,
		PRIMARY KEY (hour, domain, status, tls_version, cipher, tls_level, forward_secret)
	) WITHOUT ROWID;
	INSERT INTO hourly_messages SELECT received_at / 3600, direction, action, COALESCE(tls_version, ''),
		COALESCE(cipher, ''), forward_secret, COALESCE(spf_result, ''), COALESCE(spf_class, ''),
		COALESCE(dkim_result, ''), COALESCE(dmarc_result, ''), COALESCE(dmarc_policy, ''),
		COALESCE(auth_class, ''), COALESCE(fail_open, ''), COUNT(*)
		FROM messages GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13;
	INSERT INTO hourly_dkim_failures SELECT m.received_at / 3600, m.direction, s.class, COUNT(*)
		FROM signatures s JOIN messages m ON m.id = s.message_id WHERE s.class <> '' GROUP BY 1, 2, 3;
	INSERT INTO hourly_peers SELECT received_at / 3600, direction,
		COALESCE(NULLIF(mail_from_domain, ''), NULLIF(from_domain, ''), '(none)'), COUNT(*),
		SUM(COALESCE(tls_version, '') <> '') FROM messages GROUP BY 1, 2, 3;
	INSERT INTO hourly_clients SELECT received_at / 3600, COALESCE(client_ip, ''), COUNT(*),
		SUM(COALESCE(tls_version, '') <> '') FROM messages WHERE direction = 'inbound' GROUP BY 1, 2;
	INSERT INTO hourly_deliveries SELECT delivered_at / 3600, domain, status, COALESCE(tls_version, ''),
		COALESCE(cipher, ''), tls_level, forward_secret, COUNT(*) FROM deliveries GROUP BY 1, 2, 3, 4, 5, 6, 7;`,
	// 4: TLS policy state: cached MTA-STS policies, forgotten domains, and
	// the decisions served.
	`CREATE TABLE mta_sts_policies (
		domain     TEXT PRIMARY KEY,
		policy_id  TEXT NOT NULL,
		mode       TEXT NOT NULL,
		mx         TEXT NOT NULL,
		max_age    INTEGER NOT NULL,
		fetched_at INTEGER NOT NULL,
		expires_at INTEGER NOT NULL,
		text       TEXT NOT NULL
	);
	CREATE TABLE policy_forgotten (
		domain       TEXT PRIMARY KEY,
		forgotten_at INTEGER NOT NULL
	);
	CREATE TABLE policy_decisions (
		id         INTEGER PRIMARY KEY,
		decided_at INTEGER NOT NULL,
		domain     TEXT NOT NULL,
		source     TEXT NOT NULL,
		answer     TEXT NOT NULL,
		latency_us INTEGER NOT NULL,
		error      TEXT
	);
	CREATE INDEX policy_decisions_at ON policy_decisions(decided_at);`,
	// 5: peers that used TLS and then came or went in plaintext.
	`CREATE TABLE downgrades (
		id          INTEGER PRIMARY KEY,
		detected_at INTEGER NOT NULL,
		direction   TEXT NOT NULL,
		peer_kind   TEXT NOT NULL,
		peer        TEXT NOT NULL,
		tls_before  INTEGER NOT NULL,
		window      INTEGER NOT NULL
	);
	CREATE INDEX downgrades_at ON downgrades(detected_at);`,
	// 6: policies imported with `snowrain policy import`.
	`CREATE TABLE policy_overrides (
		domain      TEXT PRIMARY KEY,
		policy      TEXT NOT NULL,
		origin      TEXT NOT NULL,
		imported_at INTEGER NOT NULL
	);`,
	// 7: scanner runs, resumable: one row per domain and per grabbed address.
	`CREATE TABLE scan_runs (
		id          INTEGER PRIMARY KEY,
		started_at  INTEGER NOT NULL,
		finished_at INTEGER,
		kind        TEXT NOT NULL,
		input       TEXT NOT NULL
	);
	CREATE TABLE scan_domains (
		run_id INTEGER NOT NULL, domain TEXT NOT NULL, rank INTEGER, result TEXT NOT NULL,
		PRIMARY KEY (run_id, domain)
	) WITHOUT ROWID;
	CREATE TABLE scan_ips (
		run_id INTEGER NOT NULL, ip TEXT NOT NULL, result TEXT NOT NULL,
		PRIMARY KEY (run_id, ip)
	) WITHOUT ROWID;`,
	// 8: port-25 host sweeps and open-resolver sweeps.
	`CREATE TABLE scan_hosts (
		run_id INTEGER NOT NULL, ip TEXT NOT NULL, result TEXT NOT NULL,
		PRIMARY KEY (run_id, ip)
	) WITHOUT ROWID;
	CREATE TABLE scan_resolvers (
		run_id INTEGER NOT NULL, ip TEXT NOT NULL, result TEXT NOT NULL,
		PRIMARY KEY (run_id, ip)
	) WITHOUT ROWID;`,
	// 9: DKIM results as RFC 8601 says them (pass, fail, neutral, policy,
	// permerror, temperror), beside Table 8's classes. Signatures already
	// held their RFC 8601 result; messages said "fail" for any signed
	// message without a passing signature. Those get the verdict their
	// signatures give (auth.DKIMVerdict's order: temperror, fail,
	// permerror, neutral, policy), and hourly_messages is moved with them;
	// hours whose messages were pruned keep "fail". Each signature's
	// result is counted by hour in hourly_dkim_results.
	`CREATE TABLE hourly_dkim_results (
		hour INTEGER NOT NULL, direction TEXT NOT NULL, result TEXT NOT NULL, signatures INTEGER NOT NULL,
		PRIMARY KEY (hour, direction, result)
	) WITHOUT ROWID;
	INSERT INTO hourly_dkim_results SELECT m.received_at / 3600, m.direction, s.result, COUNT(*)
		FROM signatures s JOIN messages m ON m.id = s.message_id GROUP BY 1, 2, 3;
	CREATE TEMP TABLE dkim_fix AS SELECT id, verdict FROM (SELECT m.id,
		COALESCE((SELECT CASE WHEN s.result IN ('temperror', 'fail', 'permerror', 'neutral', 'policy')
				THEN s.result ELSE 'permerror' END FROM signatures s WHERE s.message_id = m.id
			ORDER BY CASE s.result WHEN 'temperror' THEN 1 WHEN 'fail' THEN 2 WHEN 'permerror' THEN 3
				WHEN 'neutral' THEN 4 WHEN 'policy' THEN 5 ELSE 3 END LIMIT 1), 'fail') AS verdict
		FROM messages m WHERE m.dkim_result = 'fail') WHERE verdict <> 'fail';
	UPDATE hourly_messages SET messages = messages - (SELECT COUNT(*) FROM messages m JOIN dkim_fix f ON f.id = m.id
		WHERE m.received_at / 3600 = hourly_messages.hour AND m.direction = hourly_messages.direction
		AND m.action = hourly_messages.action AND COALESCE(m.tls_version, '') = hourly_messages.tls_version
		AND COALESCE(m.cipher, '') = hourly_messages.cipher AND m.forward_secret = hourly_messages.forward_secret
		AND COALESCE(m.spf_result, '') = hourly_messages.spf_result AND COALESCE(m.spf_class, '') = hourly_messages.spf_class
		AND COALESCE(m.dmarc_result, '') = hourly_messages.dmarc_result
		AND COALESCE(m.dmarc_policy, '') = hourly_messages.dmarc_policy
		AND COALESCE(m.auth_class, '') = hourly_messages.auth_class AND COALESCE(m.fail_open, '') = hourly_messages.fail_open)
		WHERE dkim_result = 'fail';
	INSERT INTO hourly_messages SELECT m.received_at / 3600, m.direction, m.action, COALESCE(m.tls_version, ''),
		COALESCE(m.cipher, ''), m.forward_secret, COALESCE(m.spf_result, ''), COALESCE(m.spf_class, ''),
		f.verdict, COALESCE(m.dmarc_result, ''), COALESCE(m.dmarc_policy, ''),
		COALESCE(m.auth_class, ''), COALESCE(m.fail_open, ''), COUNT(*)
		FROM messages m JOIN dkim_fix f ON f.id = m.id WHERE true GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13
		ON CONFLICT (hour, direction, action, tls_version, cipher, forward_secret, spf_result, spf_class,
			dkim_result, dmarc_result, dmarc_policy, auth_class, fail_open)
		DO UPDATE SET messages = messages + excluded.messages;
	DELETE FROM hourly_messages WHERE messages <= 0;
	UPDATE messages SET dkim_result = (SELECT verdict FROM dkim_fix WHERE dkim_fix.id = messages.id)
		WHERE id IN (SELECT id FROM dkim_fix);
	DROP TABLE dkim_fix;`,
	// 10: one row counting changes to the policy tables (policy import and
	// forget bump it), so a running daemon drops what it cached at once.
	`CREATE TABLE policy_version (
		id      INTEGER PRIMARY KEY CHECK (id = 1),
		version INTEGER NOT NULL
	);
	INSERT INTO policy_version VALUES (1, 0);`,
	// 11: an address sweep's permutation and checkpoint per shard: resume
	// continues the same order, and Table 9 counts every address tried
	// (closed ports are not stored one by one).
	`CREATE TABLE scan_sweeps (
		run_id    INTEGER NOT NULL,
		shard     INTEGER NOT NULL,
		shards    INTEGER NOT NULL,
		targets   TEXT NOT NULL,
		seed      INTEGER NOT NULL,
		next_step INTEGER NOT NULL,
		tried     INTEGER NOT NULL,
		PRIMARY KEY (run_id, shard)
	) WITHOUT ROWID;`,
	// 12: deliveries read before the log parser had field limits: a
	// recipient domain over RFC 5321's 255 octets, or a cipher name over
	// 64, was stored as it came (a 10 MB domain from one log line). Those
	// rows go, with exactly their rollup counts: the hourly key holds the
	// domain and the cipher. Relay "none" (no connection) is stored empty,
	// as the parser now does.
	`DELETE FROM hourly_deliveries WHERE length(CAST(domain AS BLOB)) > 255 OR length(CAST(cipher AS BLOB)) > 64;
	DELETE FROM deliveries WHERE length(CAST(domain AS BLOB)) > 255 OR length(CAST(COALESCE(cipher, '') AS BLOB)) > 64;
	UPDATE deliveries SET relay_host = '' WHERE relay_host = 'none' OR length(CAST(relay_host AS BLOB)) > 255;`,
	// 13: reports between mail domains (RFC 7489 7.2, RFC 8460). For the
	// aggregate reports we send: the DMARC record that applied to each
	// message (its policy published and rua=). For the TLS reports we
	// send: each delivery's SMTP session and the RFC 8460 result type its
	// log lines gave ("" when TLS succeeded), read by maillog's
	// TLSTracker. What was sent, so a timer that fires twice does not
	// send twice. The reports receivers send us, deduplicated by
	// reporter and report ID.
	`ALTER TABLE messages ADD COLUMN dmarc_published TEXT;
	CREATE TABLE delivery_tls (
		delivery_id INTEGER PRIMARY KEY,
		session     TEXT NOT NULL,
		result      TEXT NOT NULL,
		detail      TEXT
	);
	CREATE TABLE sent_reports (
		id          INTEGER PRIMARY KEY,
		kind        TEXT NOT NULL,
		domain      TEXT NOT NULL,
		begin_at    INTEGER NOT NULL,
		end_at      INTEGER NOT NULL,
		report_id   TEXT NOT NULL,
		destination TEXT NOT NULL,
		sent_at     INTEGER NOT NULL,
		status      TEXT NOT NULL,
		error       TEXT,
		UNIQUE (kind, domain, begin_at, destination)
	);
	CREATE TABLE received_reports (
		id          INTEGER PRIMARY KEY,
		kind        TEXT NOT NULL,
		org_name    TEXT NOT NULL,
		report_id   TEXT NOT NULL,
		contact     TEXT,
		domain      TEXT NOT NULL,
		begin_at    INTEGER NOT NULL,
		end_at      INTEGER NOT NULL,
		ingested_at INTEGER NOT NULL,
		source      TEXT,
		UNIQUE (kind, org_name, report_id)
	);
	CREATE INDEX received_reports_begin ON received_reports(begin_at);
	CREATE TABLE received_dmarc_rows (
		report        INTEGER NOT NULL,
		source_ip     TEXT NOT NULL,
		count         INTEGER NOT NULL,
		disposition   TEXT NOT NULL,
		dkim          TEXT NOT NULL,
		spf           TEXT NOT NULL,
		header_from   TEXT NOT NULL,
		envelope_from TEXT,
		dkim_results  TEXT,
		spf_results   TEXT
	);
	CREATE INDEX received_dmarc_rows_report ON received_dmarc_rows(report);
	CREATE TABLE received_tls_policies (
		report        INTEGER NOT NULL,
		seq           INTEGER NOT NULL,
		policy_type   TEXT NOT NULL,
		policy_domain TEXT NOT NULL,
		mx_host       TEXT,
		successful    INTEGER NOT NULL,
		failed        INTEGER NOT NULL,
		PRIMARY KEY (report, seq)
	) WITHOUT ROWID;
	CREATE TABLE received_tls_failures (
		report       INTEGER NOT NULL,
		seq          INTEGER NOT NULL,
		result_type  TEXT NOT NULL,
		sending_ip   TEXT,
		receiving_mx TEXT,
		receiving_ip TEXT,
		count        INTEGER NOT NULL,
		reason_code  TEXT
	);
	CREATE INDEX received_tls_failures_report ON received_tls_failures(report);`,
	// 14: Table 6, providers: messages by peer domain, direction and TLS
	// parameters, per hour. Inbound, the registered domain of the
	// client's verified reverse name, else of its HELO (source says
	// which); outbound, of the MX host that took the delivery, with the
	// certificate verdict (maillog Level) and status. The peer domain is
	// computed in Go (public suffix list) by the writer, so hours before
	// this migration have no rows.
	`CREATE TABLE hourly_providers (
		hour INTEGER NOT NULL, direction TEXT NOT NULL, peer TEXT NOT NULL, source TEXT NOT NULL,
		tls_version TEXT NOT NULL, key_exchange TEXT NOT NULL, cipher TEXT NOT NULL,
		forward_secret INTEGER NOT NULL, cert TEXT NOT NULL, status TEXT NOT NULL, messages INTEGER NOT NULL,
		PRIMARY KEY (hour, direction, peer, source, tls_version, key_exchange, cipher, forward_secret, cert, status)
	) WITHOUT ROWID;`,
	// 15: fleets (issue 16). Every record names the node that wrote it
	// (config's node, default the host name), and the node is part of
	// every rollup's key, so that nodes writing the same hour, peer and
	// verdicts into one database add up instead of colliding. Rows from
	// before have node '' (one unnamed node). SQLite cannot change a
	// primary key: each rollup is rebuilt.
	`ALTER TABLE connections ADD COLUMN node TEXT NOT NULL DEFAULT '';
	ALTER TABLE messages ADD COLUMN node TEXT NOT NULL DEFAULT '';
	ALTER TABLE deliveries ADD COLUMN node TEXT NOT NULL DEFAULT '';
	ALTER TABLE downgrades ADD COLUMN node TEXT NOT NULL DEFAULT '';
	ALTER TABLE policy_decisions ADD COLUMN node TEXT NOT NULL DEFAULT '';
	CREATE TABLE v15_hourly_messages (
		hour INTEGER NOT NULL, direction TEXT NOT NULL, action TEXT NOT NULL,
		tls_version TEXT NOT NULL, cipher TEXT NOT NULL, forward_secret INTEGER NOT NULL,
		spf_result TEXT NOT NULL, spf_class TEXT NOT NULL, dkim_result TEXT NOT NULL,
		dmarc_result TEXT NOT NULL, dmarc_policy TEXT NOT NULL, auth_class TEXT NOT NULL,
		fail_open TEXT NOT NULL, messages INTEGER NOT NULL, node TEXT NOT NULL,
		PRIMARY KEY (hour, node, direction, action, tls_version, cipher, forward_secret, spf_result,
			spf_class, dkim_result, dmarc_result, dmarc_policy, auth_class, fail_open)
	) WITHOUT ROWID;
	INSERT INTO v15_hourly_messages SELECT hour, direction, action, tls_version, cipher, forward_secret,
		spf_result, spf_class, dkim_result, dmarc_result, dmarc_policy, auth_class, fail_open, messages, ''
		FROM hourly_messages;
	DROP TABLE hourly_messages;
	ALTER TABLE v15_hourly_messages RENAME TO hourly_messages;
	CREATE TABLE v15_hourly_dkim_failures (
		hour INTEGER NOT NULL, direction TEXT NOT NULL, class TEXT NOT NULL, signatures INTEGER NOT NULL,
		node TEXT NOT NULL,
		PRIMARY KEY (hour, node, direction, class)
	) WITHOUT ROWID;
	INSERT INTO v15_hourly_dkim_failures SELECT hour, direction, class, signatures, '' FROM hourly_dkim_failures;
	DROP TABLE hourly_dkim_failures;
	ALTER TABLE v15_hourly_dkim_failures RENAME TO hourly_dkim_failures;
	CREATE TABLE v15_hourly_dkim_results (
		hour INTEGER NOT NULL, direction TEXT NOT NULL, result TEXT NOT NULL, signatures INTEGER NOT NULL,
		node TEXT NOT NULL,
		PRIMARY KEY (hour, node, direction, result)
	) WITHOUT ROWID;
	INSERT INTO v15_hourly_dkim_results SELECT hour, direction, result, signatures, '' FROM hourly_dkim_results;
	DROP TABLE hourly_dkim_results;
	ALTER TABLE v15_hourly_dkim_results RENAME TO hourly_dkim_results;
	CREATE TABLE v15_hourly_peers (
		hour INTEGER NOT NULL, direction TEXT NOT NULL, domain TEXT NOT NULL,
		messages INTEGER NOT NULL, tls INTEGER NOT NULL, node TEXT NOT NULL,
		PRIMARY KEY (hour, node, direction, domain)
	) WITHOUT ROWID;
	INSERT INTO v15_hourly_peers SELECT hour, direction, domain, messages, tls, '' FROM hourly_peers;
	DROP TABLE hourly_peers;
	ALTER TABLE v15_hourly_peers RENAME TO hourly_peers;
	CREATE TABLE v15_hourly_clients (
		hour INTEGER NOT NULL, client_ip TEXT NOT NULL, messages INTEGER NOT NULL, tls INTEGER NOT NULL,
		node TEXT NOT NULL,
		PRIMARY KEY (hour, node, client_ip)
	) WITHOUT ROWID;
	INSERT INTO v15_hourly_clients SELECT hour, client_ip, messages, tls, '' FROM hourly_clients;
	DROP TABLE hourly_clients;
	ALTER TABLE v15_hourly_clients RENAME TO hourly_clients;
	CREATE TABLE v15_hourly_deliveries (
		hour INTEGER NOT NULL, domain TEXT NOT NULL, status TEXT NOT NULL, tls_version TEXT NOT NULL,
		cipher TEXT NOT NULL, tls_level TEXT NOT NULL, forward_secret INTEGER NOT NULL,
		deliveries INTEGER NOT NULL, node TEXT NOT NULL,
		PRIMARY KEY (hour, node, domain, status, tls_version, cipher, tls_level, forward_secret)
	) WITHOUT ROWID;
	INSERT INTO v15_hourly_deliveries SELECT hour, domain, status, tls_version, cipher, tls_level,
		forward_secret, deliveries, '' FROM hourly_deliveries;
	DROP TABLE hourly_deliveries;
	ALTER TABLE v15_hourly_deliveries RENAME TO hourly_deliveries;
	CREATE TABLE v15_hourly_providers (
		hour INTEGER NOT NULL, direction TEXT NOT NULL, peer TEXT NOT NULL, source TEXT NOT NULL,
		tls_version TEXT NOT NULL, key_exchange TEXT NOT NULL, cipher TEXT NOT NULL,
		forward_secret INTEGER NOT NULL, cert TEXT NOT NULL, status TEXT NOT NULL, messages INTEGER NOT NULL,
		node TEXT NOT NULL,
		PRIMARY KEY (hour, node, direction, peer, source, tls_version, key_exchange, cipher, forward_secret, cert, status)
	) WITHOUT ROWID;
	INSERT INTO v15_hourly_providers SELECT hour, direction, peer, source, tls_version, key_exchange, cipher,
		forward_secret, cert, status, messages, '' FROM hourly_providers;
	DROP TABLE hourly_providers;
	ALTER TABLE v15_hourly_providers RENAME TO hourly_providers;`,
	// 16: per-host state in a fleet's database. Where each node read its
	// MTA log up to: every host follows a /var/log/mail.log of its own,
	// so the position is the node's (rows from before belong to the
	// unnamed node, which LogPosition falls back to). And db copy's
	// progress, per source store and table, so that a copy interrupted
	// and run again goes on where it stopped.
	`CREATE TABLE v16_log_positions (
		node       TEXT NOT NULL,
		source     TEXT NOT NULL,
		inode      INTEGER NOT NULL,
		"offset"   INTEGER NOT NULL,
		updated_at INTEGER NOT NULL,
		PRIMARY KEY (node, source)
	);
	INSERT INTO v16_log_positions SELECT '', source, inode, "offset", updated_at FROM log_positions;
	DROP TABLE log_positions;
	ALTER TABLE v16_log_positions RENAME TO log_positions;
	CREATE TABLE copy_progress (
		source  TEXT NOT NULL,
		tbl     TEXT NOT NULL,
		last_id INTEGER NOT NULL,
		rows    INTEGER NOT NULL,
		done    INTEGER NOT NULL,
		PRIMARY KEY (source, tbl)
	);`,
	// 17: scan runs shared by shards on several machines (issue 16). A
	// run may have a name (unique: `scan … --run NAME` creates or joins
	// it) and holds what every shard must sweep, fixed when it is
	// created: targets (the address prefixes, or the domain list's
	// identity), seed and shard count. Each shard names the node that
	// last ran it, when it last stored a checkpoint and when it finished.
	// Runs from before take their sweeps' values; their shards count as
	// finished when the run did.
	`ALTER TABLE scan_runs ADD COLUMN name TEXT;
	ALTER TABLE scan_runs ADD COLUMN targets TEXT;
	ALTER TABLE scan_runs ADD COLUMN seed INTEGER;
	ALTER TABLE scan_runs ADD COLUMN shards INTEGER;
	CREATE UNIQUE INDEX scan_runs_name ON scan_runs(name);
	ALTER TABLE scan_sweeps ADD COLUMN node TEXT NOT NULL DEFAULT '';
	ALTER TABLE scan_sweeps ADD COLUMN updated_at INTEGER;
	ALTER TABLE scan_sweeps ADD COLUMN finished_at INTEGER;
	UPDATE scan_runs SET targets = (SELECT MIN(s.targets) FROM scan_sweeps s WHERE s.run_id = scan_runs.id),
		seed = (SELECT MIN(s.seed) FROM scan_sweeps s WHERE s.run_id = scan_runs.id),
		shards = (SELECT MIN(s.shards) FROM scan_sweeps s WHERE s.run_id = scan_runs.id);
	UPDATE scan_sweeps SET finished_at = (SELECT r.finished_at FROM scan_runs r WHERE r.id = scan_sweeps.run_id);`,
}

// errSchemaNewer is a database a newer snowrain migrated.
var errSchemaNewer = errors.New("database schema is newer than this binary")

// migrationLock is the PostgreSQL advisory lock key under which a node
// migrates: nodes of a fleet starting together apply each migration once.
const migrationLock = 0x736e6f77 // "snow"

func (s *Store) migrate(ctx context.Context) error {
	for {
		done, err := s.migrateNext(ctx)
		if err != nil || done {
			return err
		}
	}
}

// migrateNext applies the first migration the database lacks, in one
// transaction with its version row; done is true when none is missing.
func (s *Store) migrateNext(ctx context.Context) (done bool, err error) {
	tx, err := s.DB.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("measure: migrations: %w", err)
	}
	defer tx.Rollback()
	if s.dialect == Postgres {
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(?)`, migrationLock); err != nil {
			return false, fmt.Errorf("measure: migrations lock: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, s.dialect.schema(`CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)`)); err != nil {
		return false, fmt.Errorf("measure: migrations table: %w", err)
	}
	var have int
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&have); err != nil {
		return false, fmt.Errorf("measure: schema version: %w", err)
	}
	if have > len(migrations) {
		return false, fmt.Errorf("measure: %w (schema %d, this binary's %d)", errSchemaNewer, have, len(migrations))
	}
	if have == len(migrations) {
		return true, tx.Commit()
	}
	return false, s.applyTx(ctx, tx, have+1)
}

// apply applies migration v in a transaction of its own.
func (s *Store) apply(ctx context.Context, v int) error {
	tx, err := s.DB.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("measure: migration %d: %w", v, err)
	}
	defer tx.Rollback()
	return s.applyTx(ctx, tx, v)
}

// applyTx applies migration v in tx, records it and commits.
func (s *Store) applyTx(ctx context.Context, tx *sql.Tx, v int) error {
	if _, err := tx.ExecContext(ctx, s.dialect.migration(v)); err != nil {
		return fmt.Errorf("measure: migration %d: %w", v, err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations VALUES (?, ?)`, v, time.Now().Unix()); err != nil {
		return fmt.Errorf("measure: migration %d: %w", v, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("measure: migration %d: %w", v, err)
	}
	return nil
}

// SchemaVersion returns the applied schema version.
// A PostgreSQL database without snowrain's tables is at version 0: an
// administrator creates the database, the first node its schema.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	if s.dialect == Postgres {
		var exists bool
		if err := s.DB.QueryRowContext(ctx, `SELECT to_regclass('schema_migrations') IS NOT NULL`).Scan(&exists); err != nil || !exists {
			return 0, err
		}
	}
	var v int
	err := s.DB.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&v)
	return v, err
}
