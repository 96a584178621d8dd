package milterbench

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"

	gomilter "github.com/d--j/go-milter"

	"github.com/snowrain/snowrain/internal/corpus"
)

// postfixMacros are Postfix 3.7's default milter_*_macros (`postconf -d`):
// what it sends a filter that does not ask for others at negotiation. A
// filter that asks gets what it asks, as Postfix does.
var postfixMacros = map[gomilter.MacroStage][]gomilter.MacroName{
	gomilter.StageConnect: {"j", "{daemon_name}", "{daemon_addr}", "v", "_"},
	gomilter.StageHelo:    {"{tls_version}", "{cipher}", "{cipher_bits}", "{cert_subject}", "{cert_issuer}"},
	gomilter.StageMail:    {"i", "{auth_type}", "{auth_authen}", "{auth_author}", "{mail_addr}", "{mail_host}", "{mail_mailer}"},
	gomilter.StageRcpt:    {"i", "{rcpt_addr}", "{rcpt_host}", "{rcpt_mailer}"},
	gomilter.StageData:    {"i"},
	gomilter.StageEOH:     {"i"},
	gomilter.StageEOM:     {"i"},
}

// newClient returns a client for one milter of a chain that offers what
// Postfix 3.7 offers (milter_protocol = 6): every protocol option and
// action, its default macros. The filter picks what it wants.
func newClient(sock string) *gomilter.Client {
	opts := []gomilter.Option{gomilter.WithActions(gomilter.AllClientSupportedActionMasks), gomilter.WithoutDefaultMacros()}
	for stage, names := range postfixMacros {
		opts = append(opts, gomilter.WithMacroRequest(stage, names))
	}
	return gomilter.NewClient("unix", sock, opts...)
}

// Chain is a list of milters applied to each message in order, as Postfix
// applies smtpd_milters: every SMTP event goes to each milter in turn up
// to DATA; then each milter in turn gets the whole content as the ones
// before it left it (their header edits applied) and answers at
// end-of-message.
type Chain struct {
	Name    string
	Sockets []string
	clients []*gomilter.Client
	queueID atomic.Uint64
}

// NewChain returns a chain over unix sockets.
func NewChain(name string, sockets ...string) *Chain {
	c := &Chain{Name: name, Sockets: sockets}
	for _, s := range sockets {
		c.clients = append(c.clients, newClient(s))
	}
	return c
}

// Outcome is what the chain did with one message.
type Outcome struct {
	Action  gomilter.ActionType // the last milter's end-of-message answer, or the first that stopped the message
	Results []string            // method=result of every Authentication-Results field the chain added
}

// smtpSession is one SMTP connection through the chain: a milter
// connection per filter.
type smtpSession struct {
	chain    *Chain
	bag      *gomilter.MacroBag
	sessions []*gomilter.ClientSession
}

// open connects to every milter of the chain and replays connect and
// HELO for m's client.
func (c *Chain) open(m *Message) (*smtpSession, error) {
	bag := gomilter.NewMacroBag()
	bag.Set("j", "mx.test.example")
	bag.Set("v", "Postfix 3.7.11")
	bag.Set("{daemon_name}", "smtpd")
	bag.Set("{daemon_addr}", "192.0.2.25")
	bag.Set("{client_addr}", m.ClientIP)
	bag.Set("{client_name}", "unknown")
	bag.Set("_", "unknown ["+m.ClientIP+"]")
	if m.TLS {
		bag.Set("{tls_version}", "TLSv1.3")
		bag.Set("{cipher}", "TLS_AES_256_GCM_SHA384")
		bag.Set("{cipher_bits}", "256")
	}
	s := &smtpSession{chain: c, bag: bag}
	for _, cl := range c.clients {
		ms, err := cl.Session(bag)
		if err != nil {
			s.close()
			return nil, err
		}
		s.sessions = append(s.sessions, ms)
	}
	// Postfix sends each event to every milter before the next event.
	for _, ms := range s.sessions {
		if err := cont(ms.Conn("["+m.ClientIP+"]", gomilter.FamilyInet, 40000, m.ClientIP)); err != nil {
			s.close()
			return nil, fmt.Errorf("connect: %w", err)
		}
	}
	for _, ms := range s.sessions {
		if err := cont(ms.Helo(m.Helo)); err != nil {
			s.close()
			return nil, fmt.Errorf("helo: %w", err)
		}
	}
	return s, nil
}

func (s *smtpSession) close() {
	for _, ms := range s.sessions {
		ms.Close()
	}
}

// cont turns an answer other than continue into an error: the corpus's
// filters run without enforcement, so they accept every message.
func cont(a *gomilter.Action, err error) error {
	if err != nil {
		return err
	}
	if a.Type != gomilter.ActionContinue {
		return fmt.Errorf("unexpected action %v %d %q", a.Type, a.SMTPCode, a.SMTPReply)
	}
	return nil
}

// send runs one transaction of m through every milter of the chain.
func (s *smtpSession) send(m *Message) (Outcome, error) {
	id := strings.ToUpper(strconv.FormatUint(0x40000000+s.chain.queueID.Add(1), 16))
	s.bag.Set("i", id)
	s.bag.Set("{mail_addr}", m.MailFrom)
	s.bag.Set("{mail_host}", "")
	s.bag.Set("{mail_mailer}", "smtp")
	s.bag.Set("{rcpt_addr}", m.Rcpt)
	s.bag.Set("{rcpt_host}", "")
	s.bag.Set("{rcpt_mailer}", "local")
	for _, ms := range s.sessions {
		if err := cont(ms.Mail(m.MailFrom, "")); err != nil {
			return Outcome{}, fmt.Errorf("mail: %w", err)
		}
	}
	for _, ms := range s.sessions {
		if err := cont(ms.Rcpt(m.Rcpt, "")); err != nil {
			return Outcome{}, fmt.Errorf("rcpt: %w", err)
		}
	}
	for _, ms := range s.sessions {
		if err := cont(ms.DataStart()); err != nil {
			return Outcome{}, fmt.Errorf("data: %w", err)
		}
	}
	fields, body := corpus.Split(m.Raw)
	var out Outcome
	for _, ms := range s.sessions {
		strip := !ms.ProtocolOption(gomilter.OptHeaderLeadingSpace)
		for _, f := range fields {
			v := f.Value
			if strip {
				v = strings.TrimLeft(v, " \t") // as Postfix does without SMFIP_HDR_LEADSPC
			}
			if err := cont(ms.HeaderField(f.Name, v, nil)); err != nil {
				return Outcome{}, fmt.Errorf("header: %w", err)
			}
		}
		if err := cont(ms.HeaderEnd()); err != nil {
			return Outcome{}, fmt.Errorf("eoh: %w", err)
		}
		mods, act, err := ms.BodyReadFrom(bytes.NewReader(body))
		if err != nil {
			return Outcome{}, fmt.Errorf("eom: %w", err)
		}
		out.Action = act.Type
		if act.Type != gomilter.ActionAccept && act.Type != gomilter.ActionContinue {
			return out, nil
		}
		fields = apply(fields, mods, !strip, &out)
	}
	return out, nil
}

// apply edits the header as the MTA would before handing the message to
// the next milter, and collects the Authentication-Results added.
func apply(fields []corpus.Field, mods []gomilter.ModifyAction, leadSpace bool, out *Outcome) []corpus.Field {
	fields = append([]corpus.Field(nil), fields...)
	for _, m := range mods {
		v := m.HeaderValue
		if !leadSpace {
			v = " " + v
		}
		switch m.Type {
		case gomilter.ActionAddHeader:
			fields = append(fields, corpus.Field{Name: m.HeaderName, Value: v})
		case gomilter.ActionInsertHeader:
			i := min(int(m.HeaderIndex), len(fields))
			fields = append(fields[:i], append([]corpus.Field{{Name: m.HeaderName, Value: v}}, fields[i:]...)...)
		default:
			continue
		}
		if strings.EqualFold(m.HeaderName, "Authentication-Results") {
			out.Results = append(out.Results, resinfo(v)...)
		}
	}
	return fields
}

// resinfo returns the method=result pairs of an Authentication-Results
// value (RFC 8601 section 2.2), comments dropped.
func resinfo(v string) []string {
	var out []string
	parts := strings.Split(stripComments(v), ";")
	for _, p := range parts[1:] { // parts[0] is the authserv-id
		f := strings.Fields(p)
		if len(f) == 0 || !strings.Contains(f[0], "=") {
			continue
		}
		r := strings.ToLower(f[0])
		if strings.HasPrefix(r, "spf=") && strings.Contains(p, "smtp.helo=") {
			r = "helo-" + r // the HELO identity's SPF, which snowrain also checks
		}
		out = append(out, r)
	}
	return out
}

func stripComments(s string) string {
	var b strings.Builder
	depth := 0
	for _, r := range s {
		switch {
		case r == '(':
			depth++
		case r == ')' && depth > 0:
			depth--
		case depth == 0:
			b.WriteRune(r)
		}
	}
	return b.String()
}
