package measure

import (
	"context"
	"database/sql/driver"
	"fmt"
	"strings"
	"time"

	"github.com/snowrain/snowrain/auth"
)

// Event is one record for the store, applied inside a batch transaction:
// apply on SQLite, copyPG on PostgreSQL (pgwriter.go).
type Event interface {
	apply(b *batch) error
	copyPG(b *pgBatch) error
}

// Direction is which way a connection, message or delivery went, seen
// from this host.
type Direction string

// Directions.
const (
	Inbound  Direction = "inbound"  // a client delivered to us (the milter, the inbound policy service)
	Outbound Direction = "outbound" // we delivered to a receiving MX (submission, the delivery log)
)

// Action is what the milter did with a message at end of data.
type Action string

// Actions of the milter. Only with enforcement (milter.Config's
// EnforceDMARC) is a message ever not accepted: the DMARC disposition
// (RFC 7489 section 6.6.4) decides.
const (
	ActionAccept     Action = "accept"
	ActionReject     Action = "reject"     // refused with 550 5.7.1 (RFC 3463 section 3.8)
	ActionQuarantine Action = "quarantine" // accepted, held or marked with a header
)

// Connection is the record of one SMTP connection, written when it ends.
type Connection struct {
	UID           string
	Started       time.Time
	Ended         time.Time
	Direction     Direction
	MTA           string
	Daemon        string
	ClientIP      string
	ClientPTR     string
	Helo          string
	TLSVersion    string
	Cipher        string
	CipherBits    int
	KeyExchange   string
	BulkCipher    string
	MAC           string
	ForwardSecret bool
	ClientCert    bool
	CertVerify    string
	Authenticated bool
	Messages      int
}

// Message is the record of one message and its authentication verdicts.
type Message struct {
	ConnUID          string
	Received         time.Time
	Direction        Direction
	QueueID          string
	ClientIP         string
	MailFromDomain   string
	MailFromLocal    string // only with --store-localparts
	RcptDomains      []string
	RcptCount        int
	FromDomain       string
	FromClass        auth.FromClass
	Size             int64
	TLSVersion       string
	Cipher           string
	ForwardSecret    bool
	SPFResult        auth.SPFStatus
	SPFClass         auth.SPFClass
	SPFDomain        string
	HeloSPFResult    auth.SPFStatus
	HeloSPFClass     auth.SPFClass
	DKIMResult       auth.DKIMStatus // auth.DKIMVerdict of Signatures
	DMARCResult      auth.DMARCStatus
	DMARCPolicy      auth.DMARCPolicy
	DMARCDisposition auth.DMARCPolicy
	DMARCRecord      string // the domain the record was found at
	DMARCPublished   string // the policy record that applied (auth.DMARCRecord.Text), for aggregate reports
	SPFAligned       bool
	DKIMAligned      bool
	AuthClass        auth.AuthMethods
	Action           Action
	FailOpen         string // why a check was skipped, "" normally
	Signatures       []Signature
}

// Signature is one DKIM signature's verdict.
type Signature struct {
	Domain, Selector, Algorithm string
	KeyBits                     int
	Result                      auth.DKIMStatus
	Class                       auth.DKIMClass
	Detail                      string
}

// rowsPerInsert is how many messages one multi-row INSERT carries: a
// statement per row spent most of the ingest time in per-statement cgo
// calls.
const rowsPerInsert = 16

// batch holds the prepared statements of one writer transaction. They are
// the driver's own: database/sql's argument conversion cost a third of
// the ingest rate.
type batch struct {
	node    string // written into every row (Store.Node)
	c       driver.Conn
	conn    driver.Stmt
	stmts   map[string]driver.Stmt   // single statements by text
	multi   map[multiKey]driver.Stmt // multi-row inserts
	pending []*Message
	args    []driver.Value // reused between statements
	sigArgs []driver.Value
	named   []driver.NamedValue // what the driver takes, reused
	roll    *rollup
}

// multiKey names a multi-row INSERT: n rows of cols values after prefix.
type multiKey struct {
	prefix  string
	cols, n int
}

func newBatch(c driver.Conn, node string) (*batch, error) {
	b := &batch{node: node, c: c, stmts: map[string]driver.Stmt{}, multi: map[multiKey]driver.Stmt{}, roll: newRollup(node)}
	var err error
	if b.conn, err = c.Prepare(insertConnection); err != nil {
		return nil, fmt.Errorf("measure: prepare: %w", err)
	}
	return b, nil
}

func (b *batch) close() {
	b.conn.Close()
	for _, st := range b.stmts {
		st.Close()
	}
	for _, st := range b.multi {
		st.Close()
	}
}

// stmt returns the prepared INSERT of n rows of the given column count.
func (b *batch) stmt(prefix string, cols, n int) (driver.Stmt, error) {
	key := multiKey{prefix, cols, n}
	if st, ok := b.multi[key]; ok {
		return st, nil
	}
	row := "(" + strings.Repeat("?,", cols-1) + "?)"
	st, err := b.c.Prepare(prefix + strings.Repeat(row+",", n-1) + row)
	if err != nil {
		return nil, fmt.Errorf("measure: prepare: %w", err)
	}
	b.multi[key] = st
	return st, nil
}

// writeRollup adds the transaction's hourly aggregates.
func (b *batch) writeRollup() error {
	return b.roll.write(func(q string, args ...driver.Value) error {
		st, ok := b.stmts[q]
		if !ok {
			var err error
			if st, err = b.c.Prepare(q); err != nil {
				return fmt.Errorf("measure: prepare: %w", err)
			}
			b.stmts[q] = st
		}
		_, err := b.exec(st, args...)
		return err
	})
}

// exec runs st with args through the driver's own interface:
// database/sql's argument conversion cost a third of the ingest rate, and
// the driver's Exec([]driver.Value) allocates a []driver.NamedValue per
// statement (most of the writer's garbage); this one is reused. A
// context that is never done keeps the driver on its synchronous path.
func (b *batch) exec(st driver.Stmt, args ...driver.Value) (driver.Result, error) {
	b.named = b.named[:0]
	for i, v := range args {
		b.named = append(b.named, driver.NamedValue{Ordinal: i + 1, Value: v})
	}
	return st.(driver.StmtExecContext).ExecContext(context.Background(), b.named)
}

func i64(n int) int64 { return int64(n) }

const insertConnection = `INSERT INTO connections (conn_uid, started_at, ended_at, direction,
	mta, daemon, client_ip, client_ptr, helo, tls_version, cipher, cipher_bits, key_exchange,
	bulk_cipher, mac, forward_secret, client_cert, cert_verify, authenticated, messages, node)
	VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`

func (c *Connection) apply(b *batch) error {
	b.roll.addProviderConnection(c)
	b.args = c.values(b.args[:0], b.node)
	_, err := b.exec(b.conn, b.args...)
	return err
}

// values appends the row of insertConnection.
func (c *Connection) values(args []driver.Value, node string) []driver.Value {
	return append(args, c.UID, c.Started.Unix(), c.Ended.Unix(), string(c.Direction), c.MTA, c.Daemon,
		c.ClientIP, c.ClientPTR, c.Helo, c.TLSVersion, c.Cipher, i64(c.CipherBits), c.KeyExchange,
		c.BulkCipher, c.MAC, c.ForwardSecret, c.ClientCert, c.CertVerify, c.Authenticated, i64(c.Messages), node)
}

const insertMessage = `INSERT INTO messages (conn_uid, received_at, direction, queue_id,
	client_ip, mail_from_domain, mail_from_local, rcpt_domains, rcpt_count, from_domain,
	from_class, size, tls_version, cipher, forward_secret, spf_result, spf_class, spf_domain, helo_spf_result,
	helo_spf_class, dkim_result, dkim_signatures, dmarc_result, dmarc_policy, dmarc_disposition,
	dmarc_record_domain, spf_aligned, dkim_aligned, auth_class, action, fail_open, dmarc_published, node) VALUES `

const messageCols = 33

const insertSignature = `INSERT INTO signatures (message_id, seq, domain, selector, algorithm,
	key_bits, result, class, detail) VALUES `

const signatureCols = 9

func (m *Message) apply(b *batch) error {
	b.roll.addMessage(m)
	b.pending = append(b.pending, m)
	if len(b.pending) < rowsPerInsert {
		return nil
	}
	return b.flush()
}

// values appends the row of insertMessage.
func (m *Message) values(args []driver.Value, node string) []driver.Value {
	return append(args, m.ConnUID, m.Received.Unix(), string(m.Direction), m.QueueID, m.ClientIP,
		m.MailFromDomain, nullable(m.MailFromLocal), strings.Join(m.RcptDomains, ","), i64(m.RcptCount),
		m.FromDomain, string(m.FromClass), m.Size, m.TLSVersion, m.Cipher, m.ForwardSecret, string(m.SPFResult),
		string(m.SPFClass), m.SPFDomain, string(m.HeloSPFResult), string(m.HeloSPFClass), string(m.DKIMResult),
		i64(len(m.Signatures)), string(m.DMARCResult), string(m.DMARCPolicy), string(m.DMARCDisposition),
		m.DMARCRecord, m.SPFAligned, m.DKIMAligned, string(m.AuthClass), string(m.Action), m.FailOpen,
		nullable(m.DMARCPublished), node)
}

// values appends the row of insertSignature: the seq-th signature of
// message id.
func (s *Signature) values(args []driver.Value, id int64, seq int) []driver.Value {
	return append(args, id, i64(seq), s.Domain, s.Selector, s.Algorithm, i64(s.KeyBits), string(s.Result), string(s.Class), s.Detail)
}

// flush inserts the pending messages in one statement and their
// signatures in another; SQLite gives one statement's rows consecutive
// rowids, which links the two.
func (b *batch) flush() error {
	n := len(b.pending)
	if n == 0 {
		return nil
	}
	st, err := b.stmt(insertMessage, messageCols, n)
	if err != nil {
		return err
	}
	args := b.args[:0]
	for _, m := range b.pending {
		args = m.values(args, b.node)
	}
	b.args = args
	res, err := b.exec(st, args...)
	if err != nil {
		return err
	}
	last, err := res.LastInsertId()
	if err != nil {
		return err
	}
	sigArgs := b.sigArgs[:0]
	for i, m := range b.pending {
		id := last - int64(n-1-i)
		for seq := range m.Signatures {
			sigArgs = m.Signatures[seq].values(sigArgs, id, seq)
		}
	}
	b.pending = b.pending[:0]
	b.sigArgs = sigArgs
	for len(sigArgs) > 0 {
		rows := min(len(sigArgs)/signatureCols, 4*rowsPerInsert)
		st, err := b.stmt(insertSignature, signatureCols, rows)
		if err != nil {
			return err
		}
		if _, err := b.exec(st, sigArgs[:rows*signatureCols]...); err != nil {
			return err
		}
		sigArgs = sigArgs[rows*signatureCols:]
	}
	return nil
}

func nullable(s string) driver.Value {
	if s == "" {
		return nil
	}
	return s
}

// Downgrade records a peer that used TLS in TLSBefore of its last Window
// connections and then used plaintext.
type Downgrade struct {
	At        time.Time
	Direction Direction
	PeerKind  string // domain, ip
	Peer      string
	TLSBefore int
	Window    int
}

func (d *Downgrade) apply(b *batch) error {
	st, ok := b.stmts[insertDowngrade]
	if !ok {
		var err error
		if st, err = b.c.Prepare(insertDowngrade); err != nil {
			return err
		}
		b.stmts[insertDowngrade] = st
	}
	b.args = d.values(b.args[:0], b.node)
	_, err := b.exec(st, b.args...)
	return err
}

// values appends the row of insertDowngrade.
func (d *Downgrade) values(args []driver.Value, node string) []driver.Value {
	return append(args, d.At.Unix(), string(d.Direction), d.PeerKind, d.Peer, i64(d.TLSBefore), i64(d.Window), node)
}

// "window" is quoted: PostgreSQL reserves the word.
const insertDowngrade = `INSERT INTO downgrades (detected_at, direction, peer_kind, peer, tls_before, "window", node)
	VALUES (?, ?, ?, ?, ?, ?, ?)`
