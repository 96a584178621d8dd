package milter

import (
	"bytes"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"testing"

	gomilter "github.com/d--j/go-milter"

	"github.com/snowrain/snowrain/internal/corpus"
	"github.com/snowrain/snowrain/internal/miltertest"
	"github.com/snowrain/snowrain/policy"
)

// fullClient offers every protocol option of milter protocol 6, as
// Postfix 3.7 (milter_protocol = 6) and Sendmail 8.14+ do.
func (h *harness) fullClient() *gomilter.Client {
	return gomilter.NewClient("unix", h.sock, gomilter.WithActions(gomilter.AllClientSupportedActionMasks),
		gomilter.WithoutDefaultMacros())
}

// TestNoReplyOptions: with an MTA that offers them, the filter takes every
// no-reply option and skips DATA and unknown commands; MAIL FROM keeps its
// reply only when the filter applies the inbound TLS requirement.
func TestNoReplyOptions(t *testing.T) {
	c := pick(t, "dkim-rsa-pass")
	for _, inbound := range []bool{false, true} {
		t.Run(fmt.Sprintf("inbound=%v", inbound), func(t *testing.T) {
			h := newHarness(t, Config{AuthServID: "mx.test.example"})
			want := required | optional | gomilter.OptNoMailReply
			if inbound {
				h.filter.Inbound = (&policy.Inbound{}).Check
				want &^= gomilter.OptNoMailReply
			}
			s := h.openSession(h.fullClient(), postfixFlavor, c)
			defer s.Close()
			for _, o := range optionNames(required | optional | gomilter.OptNoMailReply) {
				if got := s.ProtocolOption(o.opt); got != (want&o.opt != 0) {
					t.Errorf("%s negotiated: %v, want %v", o.name, got, !got)
				}
			}
			if _, err := miltertest.Send(s, c); err != nil {
				t.Fatal(err)
			}
		})
	}
}

type namedOption struct {
	name string
	opt  gomilter.OptProtocol
}

func optionNames(p gomilter.OptProtocol) []namedOption {
	var out []namedOption
	for i := 0; i < 32; i++ {
		if o := gomilter.OptProtocol(1) << i; p&o != 0 {
			out = append(out, namedOption{o.String(), o})
		}
	}
	return out
}

// TestNoReplyOptionsSameVerdicts sends the whole corpus, observing and
// enforcing (reject and quarantine), through a client that offers every
// option and through one that offers only what the filter requires (an
// MTA of before protocol 6, or one configured with fewer options): the
// actions, the header edits and the recorded verdicts are the same.
func TestNoReplyOptionsSameVerdicts(t *testing.T) {
	for _, cfg := range []Config{
		{AuthServID: "mx.test.example"},
		{AuthServID: "mx.test.example", EnforceDMARC: true},
		{AuthServID: "mx.test.example", EnforceDMARC: true, QuarantineAction: "hold"},
	} {
		t.Run(fmt.Sprintf("enforce=%v,%s", cfg.EnforceDMARC, cfg.QuarantineAction), func(t *testing.T) {
			var verdicts [2][]string
			for i, client := range []func(h *harness) *gomilter.Client{
				func(h *harness) *gomilter.Client { return miltertest.NewClient("unix", h.sock) },
				(*harness).fullClient,
			} {
				h := newHarness(t, cfg)
				cl := client(h)
				var results []string
				for _, c := range corpus.Cases() {
					r, err := miltertest.SendOne(cl, postfixFlavor, c)
					if err != nil {
						t.Fatal(err)
					}
					results = append(results, fmt.Sprintf("%s: %v %d %q %v", c.Name, r.Act.Type, r.Act.SMTPCode, r.Act.SMTPReply, r.Mods))
				}
				h.flush()
				rows, err := h.store.DB.Query(`SELECT COALESCE(queue_id, ''), action, COALESCE(spf_result, ''),
					COALESCE(dkim_result, ''), COALESCE(dmarc_result, ''), COALESCE(from_domain, ''), rcpt_count, size
					FROM messages ORDER BY queue_id`)
				if err != nil {
					t.Fatal(err)
				}
				for rows.Next() {
					var id, action, spf, dkim, dmarc, from string
					var rcpts, size int
					if err := rows.Scan(&id, &action, &spf, &dkim, &dmarc, &from, &rcpts, &size); err != nil {
						t.Fatal(err)
					}
					results = append(results, fmt.Sprintf("record %s: %s spf=%s dkim=%s dmarc=%s from=%s rcpts=%d size=%d",
						id, action, spf, dkim, dmarc, from, rcpts, size))
				}
				rows.Close()
				verdicts[i] = results
			}
			if len(verdicts[0]) != 2*len(corpus.Cases()) {
				t.Fatalf("%d results, want %d", len(verdicts[0]), 2*len(corpus.Cases()))
			}
			if !reflect.DeepEqual(verdicts[0], verdicts[1]) {
				for i := range verdicts[0] {
					if i < len(verdicts[1]) && verdicts[0][i] != verdicts[1][i] {
						t.Errorf("without the options: %s\nwith them:          %s", verdicts[0][i], verdicts[1][i])
					}
				}
			}
		})
	}
}

// negotiations collects the filter's "milter options negotiated" debug
// lines: what each MTA connection agreed to.
type negotiations struct {
	mu    sync.Mutex
	lines []string
}

func (n *negotiations) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte("milter options negotiated")) {
		n.mu.Lock()
		n.lines = append(n.lines, string(p))
		n.mu.Unlock()
	}
	return len(p), nil
}

// recordNegotiations makes the filter log at debug level into the
// returned collector. Call it before the MTA connects.
func (h *harness) recordNegotiations() *negotiations {
	n := &negotiations{}
	h.filter.log = slog.New(slog.NewTextHandler(n, &slog.HandlerOptions{Level: slog.LevelDebug}))
	return n
}

// expect fails t unless there was at least one connection and each
// negotiated every option of want and none of not.
func (n *negotiations) expect(t *testing.T, want, not gomilter.OptProtocol) {
	t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.lines) == 0 {
		t.Fatal("no milter connection negotiated")
	}
	for _, l := range n.lines {
		_, p, _ := strings.Cut(l, " protocol=")
		p, _, _ = strings.Cut(p, " ")
		got := map[string]bool{}
		for _, o := range strings.Split(p, "|") {
			got[o] = true
		}
		for _, o := range optionNames(want) {
			if !got[o.name] {
				t.Errorf("%s not negotiated: %s", o.name, l)
			}
		}
		for _, o := range optionNames(not) {
			if got[o.name] {
				t.Errorf("%s negotiated: %s", o.name, l)
			}
		}
	}
}
