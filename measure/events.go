package measure

import (
	"database/sql"
	"fmt"
	"strings"
	"time"
)

// Event is one record for the store, applied inside a batch transaction.
type Event interface {
	apply(b *batch) error
}

// Connection is the record of one SMTP connection, written when it ends.
type Connection struct {
	UID           string
	Started       time.Time
	Ended         time.Time
	Direction     string // inbound, outbound
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
	Direction        string
	QueueID          string
	ClientIP         string
	MailFromDomain   string
	MailFromLocal    string // only with --store-localparts
	RcptDomains      []string
	RcptCount        int
	FromDomain       string
	FromClass        string
	Size             int64
	TLSVersion       string
	Cipher           string
	ForwardSecret    bool
	SPFResult        string
	SPFClass         string
	SPFDomain        string
	HeloSPFResult    string
	HeloSPFClass     string
	DKIMResult       string
	DMARCResult      string
	DMARCPolicy      string
	DMARCDisposition string
	DMARCRecord      string
	SPFAligned       bool
	DKIMAligned      bool
	AuthClass        string
	Action           string // accept, reject, quarantine, tempfail
	FailOpen         string // why a check was skipped, "" normally
	Signatures       []Signature
}

// Signature is one DKIM signature's verdict.
type Signature struct {
	Domain, Selector, Algorithm string
	KeyBits                     int
	Result, Class, Detail       string
}

// batch holds the prepared statements of one writer transaction.
type batch struct {
	tx             *sql.Tx
	conn, msg, sig *sql.Stmt
}

func newBatch(tx *sql.Tx) (*batch, error) {
	b := &batch{tx: tx}
	var err error
	if b.conn, err = tx.Prepare(insertConnection); err != nil {
		return nil, fmt.Errorf("measure: prepare: %w", err)
	}
	if b.msg, err = tx.Prepare(insertMessage); err != nil {
		return nil, fmt.Errorf("measure: prepare: %w", err)
	}
	if b.sig, err = tx.Prepare(insertSignature); err != nil {
		return nil, fmt.Errorf("measure: prepare: %w", err)
	}
	return b, nil
}

const insertConnection = `INSERT INTO connections (conn_uid, started_at, ended_at, direction,
	mta, daemon, client_ip, client_ptr, helo, tls_version, cipher, cipher_bits, key_exchange,
	bulk_cipher, mac, forward_secret, client_cert, cert_verify, authenticated, messages)
	VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`

func (c *Connection) apply(b *batch) error {
	_, err := b.conn.Exec(c.UID, c.Started.Unix(), c.Ended.Unix(), c.Direction, c.MTA, c.Daemon,
		c.ClientIP, c.ClientPTR, c.Helo, c.TLSVersion, c.Cipher, c.CipherBits, c.KeyExchange,
		c.BulkCipher, c.MAC, c.ForwardSecret, c.ClientCert, c.CertVerify, c.Authenticated, c.Messages)
	return err
}

const insertMessage = `INSERT INTO messages (conn_uid, received_at, direction, queue_id,
	client_ip, mail_from_domain, mail_from_local, rcpt_domains, rcpt_count, from_domain,
	from_class, size, tls_version, cipher, forward_secret, spf_result, spf_class, spf_domain, helo_spf_result,
	helo_spf_class, dkim_result, dkim_signatures, dmarc_result, dmarc_policy, dmarc_disposition,
	dmarc_record_domain, spf_aligned, dkim_aligned, auth_class, action, fail_open)
	VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`

const insertSignature = `INSERT INTO signatures (message_id, domain, selector, algorithm,
	key_bits, result, class, detail) VALUES (?,?,?,?,?,?,?,?)`

func (m *Message) apply(b *batch) error {
	res, err := b.msg.Exec(m.ConnUID, m.Received.Unix(), m.Direction, m.QueueID, m.ClientIP,
		m.MailFromDomain, nullable(m.MailFromLocal), strings.Join(m.RcptDomains, ","), m.RcptCount,
		m.FromDomain, m.FromClass, m.Size, m.TLSVersion, m.Cipher, m.ForwardSecret, m.SPFResult, m.SPFClass,
		m.SPFDomain, m.HeloSPFResult, m.HeloSPFClass, m.DKIMResult, len(m.Signatures),
		m.DMARCResult, m.DMARCPolicy, m.DMARCDisposition, m.DMARCRecord, m.SPFAligned,
		m.DKIMAligned, m.AuthClass, m.Action, m.FailOpen)
	if err != nil {
		return err
	}
	id, err := res.LastInsertId()
	if err != nil {
		return err
	}
	for _, s := range m.Signatures {
		if _, err := b.sig.Exec(id, s.Domain, s.Selector, s.Algorithm, s.KeyBits, s.Result,
			s.Class, s.Detail); err != nil {
			return err
		}
	}
	return nil
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}
