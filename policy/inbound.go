package policy

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"
)

// Inbound is a Postfix policy delegation service (check_policy_service)
// that requires TLS from chosen sender domains: listed ones, and, when
// Learned is set, domains whose mail always arrived over TLS.
type Inbound struct {
	RequireTLS []string // sender domains, or ".parent" for all below it
	Learned    bool
	MinSeen    int64 // messages over TLS, none in plaintext, before a domain is learned
	Days       int
	Action     string // defer (default), reject or record
	DB         *sql.DB
	Log        *slog.Logger
	// OnDecision, if set, is told about every requirement applied.
	OnDecision func(domain, action string)

	wg sync.WaitGroup
}

// Serve answers policy requests until ln is closed.
func (p *Inbound) Serve(ln net.Listener) error {
	if p.Log == nil {
		p.Log = slog.Default()
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				p.wg.Wait()
				return nil
			}
			return err
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer c.Close()
			p.session(c)
		}()
	}
}

// session answers attribute blocks over a persistent connection.
func (p *Inbound) session(c net.Conn) {
	r := bufio.NewReaderSize(c, 4096)
	for {
		c.SetReadDeadline(time.Now().Add(5 * time.Minute))
		attrs, err := ReadAttributes(r, 64<<10)
		if err != nil {
			return
		}
		action := p.Check(context.Background(), attrs)
		if _, err := c.Write([]byte("action=" + action + "\n\n")); err != nil {
			return
		}
	}
}

// ErrAttributes marks a policy request that is too long or not
// "name=value" lines.
var ErrAttributes = errors.New("policy: malformed policy request")

// ReadAttributes reads one Postfix policy request: "name=value" lines
// ended by an empty line, at most max bytes.
func ReadAttributes(r *bufio.Reader, max int) (map[string]string, error) {
	attrs := map[string]string{}
	size := 0
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return nil, err
		}
		if size += len(line); size > max {
			return nil, ErrAttributes
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			return attrs, nil
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || k == "" {
			return nil, ErrAttributes
		}
		attrs[k] = v
	}
}

// Check returns the action for one request's attributes; DUNNO lets the
// other restrictions decide.
func (p *Inbound) Check(ctx context.Context, attrs map[string]string) string {
	sender := attrs["sender"]
	i := strings.LastIndexByte(sender, '@')
	if i < 0 || attrs["encryption_protocol"] != "" {
		return "DUNNO"
	}
	domain := strings.ToLower(sender[i+1:])
	if !p.required(ctx, domain) {
		return "DUNNO"
	}
	action := "DUNNO"
	switch p.Action {
	case "reject":
		action = "550 5.7.10 TLS required for mail from " + domain
	case "record":
	default:
		action = "DEFER_IF_PERMIT 4.7.10 TLS required for mail from " + domain + ", try again over STARTTLS"
	}
	p.record(domain, action)
	return action
}

func (p *Inbound) required(ctx context.Context, domain string) bool {
	for _, d := range p.RequireTLS {
		d = strings.ToLower(d)
		if d == domain || (strings.HasPrefix(d, ".") && strings.HasSuffix(domain, d)) {
			return true
		}
	}
	if !p.Learned || p.DB == nil {
		return false
	}
	days := p.Days
	if days <= 0 {
		days = 30
	}
	var msgs, tls sql.NullInt64
	p.DB.QueryRowContext(ctx, `SELECT SUM(messages), SUM(tls) FROM hourly_peers
		WHERE direction = 'inbound' AND domain = ? AND hour >= ?`,
		domain, time.Now().AddDate(0, 0, -days).Unix()/3600).Scan(&msgs, &tls)
	min := p.MinSeen
	if min <= 0 {
		min = 10
	}
	return msgs.Int64 >= min && tls.Int64 == msgs.Int64
}

func (p *Inbound) record(domain, action string) {
	if p.OnDecision != nil {
		p.OnDecision(domain, action)
	}
	if p.DB == nil {
		return
	}
	if _, err := p.DB.Exec(`INSERT INTO policy_decisions (decided_at, domain, source, answer, latency_us, error)
		VALUES (?, ?, 'inbound', ?, 0, '')`, time.Now().Unix(), domain, action); err != nil {
		p.Log.Warn("policy: recording inbound decision", "err", err)
	}
}
