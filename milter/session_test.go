package milter

import (
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/snowrain/snowrain/internal/corpus"
	"github.com/snowrain/snowrain/measure"
)

func pick(t testing.TB, name string) corpus.Case {
	for _, c := range corpus.Cases() {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no corpus case %s", name)
	return corpus.Case{}
}

func countMessages(t *testing.T, h *harness, where string, args ...any) int {
	t.Helper()
	var n int
	if err := h.store.DB.QueryRow(`SELECT COUNT(*) FROM messages WHERE `+where, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestSeveralMessagesAbortAndReset(t *testing.T) {
	h := newHarness(t, Config{AuthServID: "mx.test.example"})
	c := pick(t, "dkim-rsa-pass")
	s := h.openSession(h.client(), postfixFlavor, c)
	sendOn(t, s, c)
	// An aborted transaction (RSET after DATA started) is not recorded.
	s.Mail("<a@dkim.example>", "")
	s.Rcpt("<x@dest.example>", "")
	s.DataStart()
	s.HeaderField("From", " <a@dkim.example>", nil)
	if err := s.Abort(nil); err != nil {
		t.Fatal(err)
	}
	sendOn(t, s, pick(t, "spf-pass"))
	sendOn(t, s, c)
	s.Close()
	h.flush()
	if n := countMessages(t, h, "client_ip = ?", c.ClientIP); n != 3 {
		t.Errorf("recorded %d messages on one connection, want 3", n)
	}
	var msgs int
	if err := h.store.DB.QueryRow(`SELECT messages FROM connections WHERE client_ip = ?`, c.ClientIP).Scan(&msgs); err != nil {
		t.Fatal(err)
	}
	if msgs != 3 {
		t.Errorf("connection counts %d messages, want 3", msgs)
	}
}

func TestDisconnectMidMessage(t *testing.T) {
	h := newHarness(t, Config{AuthServID: "mx.test.example"})
	c := pick(t, "dkim-rsa-pass")
	s := h.openSession(h.client(), postfixFlavor, c)
	s.Mail("<a@dkim.example>", "")
	s.Rcpt("<x@dest.example>", "")
	s.DataStart()
	fields, body := corpus.Split(c.Message)
	for _, f := range fields {
		s.HeaderField(f.Name, f.Value, nil)
	}
	s.HeaderEnd()
	s.BodyChunk(body[:10])
	s.Close() // the MTA's client went away
	// The filter keeps serving others.
	h.send(postfixFlavor, pick(t, "spf-pass"))
	h.flush()
	if n := countMessages(t, h, "1"); n != 1 {
		t.Errorf("recorded %d messages, want only the complete one", n)
	}
	var conns int
	if err := h.store.DB.QueryRow(`SELECT COUNT(*) FROM connections`).Scan(&conns); err != nil {
		t.Fatal(err)
	}
	if conns != 2 {
		t.Errorf("recorded %d connections, want 2", conns)
	}
}

// bigBody streams n bytes of 72-byte body lines without holding them.
type bigBody struct {
	left, pos int
}

const bigLine = "0123456789012345678901234567890123456789012345678901234567890123456789\r\n"

func (b *bigBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, io.EOF
	}
	n := 0
	for n < len(p) && b.left > 0 {
		c := copy(p[n:min(len(p), n+b.left)], bigLine[b.pos:])
		n += c
		b.left -= c
		b.pos = (b.pos + c) % len(bigLine)
	}
	return n, nil
}

func TestLargeMessageBoundedMemory(t *testing.T) {
	h := newHarness(t, Config{AuthServID: "mx.test.example"})
	c := pick(t, "dkim-rsa-pass") // signed over a short body: the big one fails body_hash
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	var peak atomic.Uint64
	stop := make(chan struct{})
	go func() {
		var m runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
				runtime.ReadMemStats(&m)
				if m.HeapInuse > peak.Load() {
					peak.Store(m.HeapInuse)
				}
			}
		}
	}()
	s := h.openSession(h.client(), postfixFlavor, c)
	s.Mail("<a@dkim.example>", "")
	s.Rcpt("<x@dest.example>", "")
	s.DataStart()
	fields, _ := corpus.Split(c.Message)
	for _, f := range fields {
		s.HeaderField(f.Name, f.Value, nil)
	}
	s.HeaderEnd()
	const size = 25 << 20
	mods, act, err := s.BodyReadFrom(&bigBody{left: size})
	if err == nil && act == nil {
		mods, act, err = s.End()
	}
	close(stop)
	if err != nil || act.Type != gomilter.ActionAccept {
		t.Fatalf("25 MB message: %v %v", act, err)
	}
	if _, ok := header(mods, "Authentication-Results"); !ok {
		t.Error("no Authentication-Results")
	}
	s.Close()
	h.flush()
	growth := int64(peak.Load()) - int64(base.HeapInuse)
	t.Logf("heap in use grew by %d KiB while streaming 25 MiB", growth>>10)
	if growth > 16<<20 {
		t.Errorf("heap grew %d MiB for a 25 MiB message: not streamed", growth>>20)
	}
	var class string
	var msgSize int64
	if err := h.store.DB.QueryRow(`SELECT s.class, m.size FROM signatures s JOIN messages m ON m.id = s.message_id`).Scan(&class, &msgSize); err != nil {
		t.Fatal(err)
	}
	if class != "body_hash" || msgSize < size {
		t.Errorf("class %q size %d, want body_hash and ≥ 25 MiB", class, msgSize)
	}
}

func TestBadEncodingsAndHostileHeaders(t *testing.T) {
	h := newHarness(t, Config{AuthServID: "mx.test.example"})
	c := pick(t, "spf-pass")
	hostile := []corpus.Field{
		{Name: "From", Value: " =?x-unknown?B?////?= <a@spf-pass.example>"},
		{Name: "From", Value: " second@other.example"},
		{Name: "Subject", Value: " \xff\xfe invalid UTF-8 \x01 control"},
		{Name: "DKIM-Signature", Value: " v=1; a=rsa-sha256; d=; s=; b=!!!; bh="},
		{Name: "DKIM-Signature", Value: " garbage without tags"},
		{Name: "Authentication-Results", Value: " mx.test.example; spf=pass smtp.mailfrom=forged.example"},
		{Name: "Authentication-Results", Value: " other.example; dkim=pass"},
		{Name: "Authentication-Results", Value: " (comment) MX.TEST.EXAMPLE; dmarc=pass"},
		{Name: "X-Folded", Value: " line one\n\tline two\n line three"},
	}
	s := h.openSession(h.client(), sendmailFlavor, c)
	s.Mail("<a@spf-pass.example>", "")
	s.Rcpt("<x@dest.example>", "")
	s.DataStart()
	for _, f := range hostile {
		s.HeaderField(f.Name, f.Value, nil)
	}
	s.HeaderEnd()
	mods, act, err := s.BodyReadFrom(strings.NewReader("body\r\n"))
	if err == nil && act == nil {
		mods, act, err = s.End()
	}
	if err != nil || act.Type != gomilter.ActionAccept {
		t.Fatalf("hostile headers: %v %v", act, err)
	}
	s.Close()
	var removed []int
	for _, m := range mods {
		if m.Type == gomilter.ActionChangeHeader && m.HeaderName == "Authentication-Results" && m.HeaderValue == "" {
			removed = append(removed, int(m.HeaderIndex))
		}
	}
	if len(removed) != 2 || removed[0] != 3 || removed[1] != 1 {
		t.Errorf("removed A-R occurrences %v, want [3 1] (ours, last first)", removed)
	}
	h.flush()
	var fromClass, dkim string
	var sigs int
	if err := h.store.DB.QueryRow(`SELECT from_class, dkim_result, dkim_signatures FROM messages`).Scan(&fromClass, &dkim, &sigs); err != nil {
		t.Fatal(err)
	}
	if fromClass != "multiple_from" || dkim != "permerror" || sigs != 2 {
		t.Errorf("from_class %q dkim %q signatures %d", fromClass, dkim, sigs)
	}
}

func TestPanicInHandlerFailsOpen(t *testing.T) {
	for _, stage := range []string{"helo", "header", "body", "eom"} {
		t.Run(stage, func(t *testing.T) {
			h := newHarness(t, Config{AuthServID: "mx.test.example"})
			testHook = func(s string) {
				if s == stage {
					panic("injected panic at " + s)
				}
			}
			defer func() { testHook = nil }()
			r := h.send(postfixFlavor, pick(t, "dkim-rsa-pass"))
			if r.act.Type != gomilter.ActionAccept {
				t.Errorf("action %v, want accept", r.act)
			}
			if n := testutil.ToFloat64(h.metrics.Panics); n < 1 {
				t.Errorf("panics counted %v", n)
			}
			testHook = nil
			h.flush()
			if n := countMessages(t, h, "1"); n != 1 {
				t.Errorf("recorded %d messages, want 1", n)
			}
			if stage != "helo" {
				if n := countMessages(t, h, "fail_open LIKE '%panic%'"); n != 1 {
					t.Errorf("message not marked fail_open=panic")
				}
			}
		})
	}
}

func TestDNSDownAcceptsWithinBudget(t *testing.T) {
	for _, mode := range []string{"drop", "slow"} {
		t.Run(mode, func(t *testing.T) {
			h := newHarness(t, Config{AuthServID: "mx.test.example", DNSBudget: 800 * time.Millisecond})
			if mode == "drop" {
				h.dns.SetDrop(true)
			} else {
				h.dns.SetDelay(2 * time.Second)
			}
			c := pick(t, "dkim-rsa-pass")
			r := h.send(postfixFlavor, c)
			if r.act.Type != gomilter.ActionAccept {
				t.Fatalf("action %v", r.act)
			}
			h.flush()
			var spf, class, dkim, dmarc string
			if err := h.store.DB.QueryRow(`SELECT spf_result, spf_class, dkim_result, dmarc_result FROM messages`).Scan(&spf, &class, &dkim, &dmarc); err != nil {
				t.Fatal(err)
			}
			if spf != "temperror" || class != "dns_timeout" || dmarc != "temperror" {
				t.Errorf("spf %s/%s dkim %s dmarc %s, want temperror/dns_timeout and dmarc temperror", spf, class, dkim, dmarc)
			}
			var sigResult, detail string
			if err := h.store.DB.QueryRow(`SELECT result, detail FROM signatures`).Scan(&sigResult, &detail); err != nil {
				t.Fatal(err)
			}
			if sigResult != "temperror" || detail != "dns_temp" {
				t.Errorf("signature %s/%s, want temperror/dns_temp", sigResult, detail)
			}
		})
	}
}

func TestStoreFailureMailFlows(t *testing.T) {
	h := newHarness(t, Config{AuthServID: "mx.test.example"})
	// Make the database unwritable under the writer: a read-only file
	// system is what an admin sees when the disk fails.
	if _, err := h.store.DB.Exec(`PRAGMA query_only = 1`); err != nil {
		t.Fatal(err)
	}
	h.store.DB.SetMaxOpenConns(1)
	c := pick(t, "spf-pass")
	for i := 0; i < 5; i++ {
		if r := h.send(postfixFlavor, c); r.act.Type != gomilter.ActionAccept {
			t.Fatalf("message %d: %v", i, r.act)
		}
	}
	h.flush()
	st := h.writer.Stats()
	if st.Dropped == 0 || st.Written != 0 {
		t.Errorf("stats %+v: want drops counted and nothing written", st)
	}
}

func TestQueueFullDropsAndCounts(t *testing.T) {
	h := newHarness(t, Config{AuthServID: "mx.test.example"})
	// Swap in a recorder that is always full.
	h.filter.recorder = fullRecorder{}
	r := h.send(postfixFlavor, pick(t, "spf-pass"))
	if r.act.Type != gomilter.ActionAccept {
		t.Fatal(r.act)
	}
	if n := testutil.ToFloat64(h.metrics.FailOpen.WithLabelValues("store_queue_full")); n < 1 {
		t.Errorf("queue-full drops counted %v", n)
	}
}

type fullRecorder struct{}

func (fullRecorder) Enqueue(measure.Event) bool { return false }

func TestDiskFullMailFlows(t *testing.T) {
	h := newHarness(t, Config{AuthServID: "mx.test.example"})
	// SQLITE_FULL, as on a full disk: cap the file at its current size.
	h.store.DB.SetMaxOpenConns(1)
	var pages int
	if err := h.store.DB.QueryRow(`PRAGMA page_count`).Scan(&pages); err != nil {
		t.Fatal(err)
	}
	if _, err := h.store.DB.Exec(fmt.Sprintf(`PRAGMA max_page_count = %d`, pages)); err != nil {
		t.Fatal(err)
	}
	c := pick(t, "dkim-rsa-pass")
	for i := 0; i < 50; i++ {
		if r := h.send(postfixFlavor, c); r.act.Type != gomilter.ActionAccept {
			t.Fatalf("message %d: %v", i, r.act)
		}
	}
	h.flush()
	if st := h.writer.Stats(); st.Dropped == 0 || st.FailedBatches == 0 {
		t.Errorf("stats %+v: want failed batches and drops counted", st)
	}
}

func TestStoreLocalparts(t *testing.T) {
	for _, store := range []bool{false, true} {
		h := newHarness(t, Config{AuthServID: "mx.test.example", StoreLocalparts: store})
		h.send(postfixFlavor, pick(t, "spf-pass"))
		h.flush()
		var local *string
		if err := h.store.DB.QueryRow(`SELECT mail_from_local FROM messages`).Scan(&local); err != nil {
			t.Fatal(err)
		}
		if got := local != nil && *local == "a"; got != store {
			t.Errorf("store_localparts=%v: stored %v", store, local)
		}
	}
}
