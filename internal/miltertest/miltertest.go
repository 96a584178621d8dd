// Package miltertest drives a milter the way Postfix and Sendmail do, with
// go-milter's client: their macro sets, one transaction per corpus case.
package miltertest

import (
	"bytes"
	"fmt"
	"strings"

	gomilter "github.com/d--j/go-milter"

	"github.com/snowrain/snowrain/internal/corpus"
)

// Flavor is the macro set one MTA sends.
type Flavor struct {
	Name string
	Fill func(b *gomilter.MacroBag, c corpus.Case)
}

var tlsMacros = map[string][3]string{
	"1.2": {"TLSv1.2", "ECDHE-RSA-AES128-GCM-SHA256", "128"},
	"1.3": {"TLSv1.3", "TLS_AES_256_GCM_SHA384", "256"},
}

// setMacros sets what both MTAs send: the MTA's version v, its daemon
// name, the client ("_" as the MTA writes it), the TLS macros of c's
// session (plus extra ones), and the queue ID.
func setMacros(b *gomilter.MacroBag, c corpus.Case, v, daemon, client string, extraTLS ...string) {
	for _, kv := range [][2]string{{"j", "mx.test.example"}, {"v", v}, {"{daemon_name}", daemon},
		{"{client_addr}", c.ClientIP}, {"_", client}, {"i", c.Name}} {
		b.Set(gomilter.MacroName(kv[0]), kv[1])
	}
	if m, ok := tlsMacros[c.TLS]; ok {
		b.Set("{tls_version}", m[0])
		b.Set("{cipher}", m[1])
		b.Set("{cipher_bits}", m[2])
		for i := 0; i+1 < len(extraTLS); i += 2 {
			b.Set(gomilter.MacroName(extraTLS[i]), extraTLS[i+1])
		}
	}
}

// Postfix sends Postfix 3.7's macros.
var Postfix = Flavor{"postfix", func(b *gomilter.MacroBag, c corpus.Case) {
	setMacros(b, c, "Postfix 3.7.11", "smtpd", "unknown ["+c.ClientIP+"]")
}}

// Sendmail sends Sendmail 8.17's macros.
var Sendmail = Flavor{"sendmail", func(b *gomilter.MacroBag, c corpus.Case) {
	setMacros(b, c, "8.17.1", "MTA", "client.example ["+c.ClientIP+"] (may be forged)", "{verify}", "NO")
}}

// NewClient returns a client offering what Postfix offers.
func NewClient(network, addr string) *gomilter.Client {
	return gomilter.NewClient(network, addr,
		gomilter.WithActions(gomilter.AllClientSupportedActionMasks),
		gomilter.WithProtocols(gomilter.OptHeaderLeadingSpace|gomilter.OptNoUnknown),
		gomilter.WithoutDefaultMacros())
}

// Open connects and greets as c's client.
func Open(cl *gomilter.Client, fl Flavor, c corpus.Case) (*gomilter.ClientSession, error) {
	bag := gomilter.NewMacroBag()
	fl.Fill(bag, c)
	s, err := cl.Session(bag)
	if err != nil {
		return nil, err
	}
	if _, err := s.Conn("["+c.ClientIP+"]", gomilter.FamilyInet, 40000, c.ClientIP); err != nil {
		s.Close()
		return nil, err
	}
	if _, err := s.Helo(c.Helo); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Result is what the milter answered for one message.
type Result struct {
	Mods []gomilter.ModifyAction
	Act  *gomilter.Action
}

// Send runs one transaction of c on an open session.
func Send(s *gomilter.ClientSession, c corpus.Case) (Result, error) {
	step := func(a *gomilter.Action, err error) error {
		if err != nil {
			return fmt.Errorf("%s: %w", c.Name, err)
		}
		if a.Type != gomilter.ActionContinue {
			return fmt.Errorf("%s: unexpected action %v", c.Name, a)
		}
		return nil
	}
	if err := step(s.Mail("<"+c.MailFrom+">", "")); err != nil {
		return Result{}, err
	}
	if err := step(s.Rcpt("<"+c.Rcpt+">", "")); err != nil {
		return Result{}, err
	}
	if err := step(s.DataStart()); err != nil {
		return Result{}, err
	}
	fields, body := corpus.Split(c.Message)
	for _, f := range fields {
		if err := step(s.HeaderField(f.Name, f.Value, nil)); err != nil {
			return Result{}, err
		}
	}
	if err := step(s.HeaderEnd()); err != nil {
		return Result{}, err
	}
	mods, act, err := s.BodyReadFrom(bytes.NewReader(body))
	if err == nil && act == nil {
		mods, act, err = s.End()
	}
	if err != nil {
		return Result{}, fmt.Errorf("%s: end: %w", c.Name, err)
	}
	return Result{mods, act}, nil
}

// SendOne runs c in a connection of its own.
func SendOne(cl *gomilter.Client, fl Flavor, c corpus.Case) (Result, error) {
	s, err := Open(cl, fl, c)
	if err != nil {
		return Result{}, err
	}
	defer s.Close()
	return Send(s, c)
}

// Header returns the value of the first header the milter added or
// inserted under name, without the space after the colon that the milter
// sends itself under SMFIP_HDR_LEADSPC.
func Header(mods []gomilter.ModifyAction, name string) (string, bool) {
	for _, m := range mods {
		if (m.Type == gomilter.ActionInsertHeader || m.Type == gomilter.ActionAddHeader) && m.HeaderName == name {
			return strings.TrimPrefix(m.HeaderValue, " "), true
		}
	}
	return "", false
}
