package milter

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/snowrain/snowrain/measure"
)

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestMessageLogLine: one info line per message carrying every verdict;
// a hostile HELO can neither start a new line nor pose as a field.
func TestMessageLogLine(t *testing.T) {
	h := newHarness(t, Config{AuthServID: "mx.test.example"})
	logs := &lockedBuf{}
	h.filter.log = slog.New(slog.NewTextHandler(logs, nil))
	c := pick(t, "dkim-two-one-fails")
	c.TLS = "1.3"
	c.Helo = "evil.example\nlevel=ERROR msg=forged action=reject\u202e"
	h.send(postfixFlavor, c)
	h.flush()
	var line string
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "msg=message") {
			if line != "" {
				t.Fatalf("two message lines:\n%s", logs)
			}
			line = l
		}
	}
	for _, want := range []string{"level=INFO", "queue_id=dkim-two-one-fails", "client_addr=127.0.2.21",
		`helo="evil.examplelevel=ERROR msg=forged action=reject"`, "direction=inbound", "tls=TLSv1.3",
		"cipher=TLS_AES_256_GCM_SHA384", "mail_from=dkim.example", "from=dkim.example", "spf=pass",
		"spf_domain=dkim.example", `dkim="d=dkim.example:permerror:weak_key d=dkim.example:pass"`, "dmarc=none",
		"dmarc_policy=absent", "dmarc_disposition=none", "action=accept"} {
		if !strings.Contains(line, want) {
			t.Errorf("log line lacks %s:\n%s", want, line)
		}
	}
	if strings.Contains(logs.String(), "level=ERROR") && !strings.Contains(line, "level=ERROR msg=forged") {
		t.Errorf("forged line:\n%s", logs)
	}
}

func TestLogValue(t *testing.T) {
	for in, want := range map[string]string{
		"mx.example":                     "mx.example",
		"a\r\nb\x00c\x1b[31m":            "abc[31m",
		"x\u009bdanger\u202egnp.exe":     "xdangergnp.exe",
		"zero\u200bwidth\u2066iso\ufeff": "zerowidthiso",
		"bad\xffutf8":                    "bad?utf8",
		strings.Repeat("é", 200):         strings.Repeat("é", 127),
	} {
		if got := logValue(in); got != want {
			t.Errorf("logValue(%q) = %q, want %q", in, got, want)
		}
	}
	if got := dkimForLog(nil); got != "none" {
		t.Errorf("no signatures: %q", got)
	}
	sigs := []measure.Signature{{Domain: "a.example", Result: "pass"}, {Domain: "b.example", Result: "fail", Class: "body_hash"}}
	if got := dkimForLog(sigs); got != "d=a.example:pass d=b.example:fail:body_hash" {
		t.Errorf("dkimForLog = %q", got)
	}
}
