package milter

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/snowrain/snowrain/auth"
	"github.com/snowrain/snowrain/internal/corpus"
	"github.com/snowrain/snowrain/internal/miltertest"
)

// withFields returns c with extra header fields in front.
func withFields(c corpus.Case, fields string) corpus.Case {
	c.Message = append([]byte(fields), c.Message...)
	return c
}

// TestThousandSignatures: 1,000 DKIM-Signature fields make one A-R within
// the protocol's limit and MaxSignatures + 1 signature rows, the last one
// standing for the rest (issue 10: no A-R at all, 1,000 rows).
func TestThousandSignatures(t *testing.T) {
	h := newHarness(t, Config{AuthServID: "mx.test.example"})
	var b strings.Builder
	for i := 0; i < 1000; i++ {
		fmt.Fprintf(&b, "DKIM-Signature: v=1; a=rsa-sha256; d=%s.evil.example; s=%s; h=from; bh=x; b=y\r\n",
			strings.Repeat("d", 60), strings.Repeat("s", 60))
	}
	r := h.send(postfixFlavor, withFields(pick(t, "dkim-rsa-pass"), b.String()))
	ar, ok := miltertest.Header(r.mods, "Authentication-Results")
	if !ok || len(ar) > auth.MaxAuthResults {
		t.Fatalf("A-R missing or %d bytes", len(ar))
	}
	// The corpus signature comes 1,001st: 8 listed, 993 summed up.
	if strings.Count(ar, "dkim=permerror") != 8 || !strings.Contains(ar, "dkim=policy (over_limit, 993 more signatures not listed)") {
		t.Errorf("A-R %q", ar)
	}
	h.flush()
	var rows, over int
	if err := h.store.DB.QueryRow(`SELECT COUNT(*), COALESCE(SUM(detail = 'over_limit'), 0) FROM signatures`).Scan(&rows, &over); err != nil {
		t.Fatal(err)
	}
	if rows != 9 || over != 1 {
		t.Errorf("%d signature rows (%d over_limit), want 9 (1)", rows, over)
	}
	var verdict string
	if err := h.store.DB.QueryRow(`SELECT dkim_result FROM messages`).Scan(&verdict); err != nil {
		t.Fatal(err)
	}
	if verdict != "permerror" { // the real signature is the 1,001st: not verified; the others are malformed
		t.Errorf("DKIM verdict %q", verdict)
	}
}

// TestHeaderLimit: past max_header_bytes no signature is verified (none
// passes), the fields are counted, and forged A-R fields are still removed.
func TestHeaderLimit(t *testing.T) {
	h := newHarness(t, Config{AuthServID: "mx.test.example", MaxHeaderBytes: 64 << 10})
	c := pick(t, "dkim-rsa-pass")
	filler := "X-Filler: " + strings.Repeat("f", 1000) + "\r\n"
	c = withFields(c, strings.Repeat(filler, 100)+"Authentication-Results: mx.test.example.; dkim=pass\r\n")
	r := h.send(postfixFlavor, c)
	if r.act.Type != gomilter.ActionAccept {
		t.Errorf("action %v", r.act)
	}
	removed := 0
	for _, m := range r.mods {
		if m.Type == gomilter.ActionChangeHeader && m.HeaderName == "Authentication-Results" && m.HeaderValue == "" {
			removed++
		}
	}
	if removed != 1 {
		t.Errorf("%d forged A-R removed past the header limit, want 1", removed)
	}
	// The signature and the From come after the limit: the signature is
	// not verified, the From is evaluated all the same.
	ar, _ := miltertest.Header(r.mods, "Authentication-Results")
	if !strings.Contains(ar, "dkim=policy (over_limit, 1 more signatures not listed)") ||
		!strings.Contains(ar, "dmarc=none (p=absent dis=none) header.from=dkim.example") {
		t.Errorf("A-R %q", ar)
	}
	h.flush()
	var failOpen, detail, from string
	if err := h.store.DB.QueryRow(`SELECT from_domain FROM messages`).Scan(&from); err != nil {
		t.Fatal(err)
	}
	if from != "dkim.example" {
		t.Errorf("From domain %q", from)
	}
	if err := h.store.DB.QueryRow(`SELECT fail_open FROM messages`).Scan(&failOpen); err != nil {
		t.Fatal(err)
	}
	if err := h.store.DB.QueryRow(`SELECT detail FROM signatures`).Scan(&detail); err != nil {
		t.Fatal(err)
	}
	if failOpen != "header_limit" || detail != "over_limit" {
		t.Errorf("fail_open %q, signature detail %q", failOpen, detail)
	}
}

// TestForgedAuthResultsNormalised: a forged A-R claiming our authserv-id
// with a trailing dot or in another case is removed (issue 10).
func TestForgedAuthResultsNormalised(t *testing.T) {
	h := newHarness(t, Config{AuthServID: "mx.test.example"})
	c := withFields(pick(t, "dkim-rsa-pass"),
		"Authentication-Results: mx.test.example.; dkim=pass header.d=bank.example\r\n"+
			"Authentication-Results: MX.Test.Example; dmarc=pass\r\n"+
			"Authentication-Results: \"mx.test.example.\"; spf=pass\r\n"+
			"Authentication-Results: mx.test.example.evil; spf=pass\r\n")
	r := h.send(postfixFlavor, c)
	var removed []int
	for _, m := range r.mods {
		if m.Type == gomilter.ActionChangeHeader && m.HeaderName == "Authentication-Results" && m.HeaderValue == "" {
			removed = append(removed, int(m.HeaderIndex))
		}
	}
	if fmt.Sprint(removed) != "[3 2 1]" {
		t.Errorf("removed A-R occurrences %v, want [3 2 1]", removed)
	}
}

// TestConnectionErrorsCounted: a malformed packet closes that connection
// only; the count is in /metrics and the next client is served.
func TestConnectionErrorsCounted(t *testing.T) {
	h := newHarness(t, Config{AuthServID: "mx.test.example"})
	for _, p := range miltertest.HostileStreams {
		if err := miltertest.RawExchange("unix", h.sock, p, 30*time.Second); err != nil {
			t.Errorf("%s: %v", p.Name, err)
		}
	}
	h.send(postfixFlavor, pick(t, "spf-pass"))
	malformed := testutil.ToFloat64(h.metrics.MilterConnErrors.WithLabelValues("malformed"))
	large := testutil.ToFloat64(h.metrics.MilterConnErrors.WithLabelValues("too_large"))
	if malformed != float64(len(miltertest.HostileStreams)-4) || large != 4 {
		t.Errorf("%v malformed and %v too large counted, want %d and 4", malformed, large, len(miltertest.HostileStreams)-4)
	}
	if n := testutil.ToFloat64(h.metrics.MilterConnErrors.WithLabelValues("panic")); n != 0 {
		t.Errorf("%v panics", n)
	}
}

// TestConnErrorReasons: every error the server reports is counted under
// its class, a panic included.
func TestConnErrorReasons(t *testing.T) {
	f := NewFilter(Config{}, nil, nil, nil, quiet)
	cases := map[string]error{
		"panic":        fmt.Errorf("serving connection: %w", &gomilter.PanicError{Value: "boom"}),
		"malformed":    fmt.Errorf("performing milter command: %w", gomilter.ErrMalformedPacket),
		"too_large":    fmt.Errorf("reading milter command: %w", gomilter.ErrPacketTooLarge),
		"idle_timeout": fmt.Errorf("reading milter command: %w", gomilter.ErrIdleTimeout),
		"timeout":      fmt.Errorf("reading milter command: %w", os.ErrDeadlineExceeded),
		"negotiation":  fmt.Errorf("negotiating: %w: unsupported protocol version: 9", gomilter.ErrNegotiation),
		"io":           fmt.Errorf("writing packet: %w", syscall.EPIPE),
	}
	for want, err := range cases {
		if got := connErrorReason(err); got != want {
			t.Errorf("%v: %s, want %s", err, got, want)
		}
		f.connError(err)
		if n := testutil.ToFloat64(f.metrics.MilterConnErrors.WithLabelValues(want)); n != 1 {
			t.Errorf("%s counted %v times", want, n)
		}
	}
}
