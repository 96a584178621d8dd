package maillog

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/snowrain/snowrain/tlsrpt"
)

// TLSFailure is what one log line says went wrong with TLS to a receiving
// MX, as an RFC 8460 result type.
type TLSFailure struct {
	Result tlsrpt.ResultType
	// Reason is the MTA's own words (OpenSSL's verify error, Sendmail's
	// verify= value): the report's failure-reason-code.
	Reason string
	// Relay names the server as the MTA wrote it: Postfix "host[ip]:port",
	// Sendmail "host" (empty when the line does not say).
	Relay string
}

// maxReason bounds the text kept from a log line.
const maxReason = 120

// TLSFailureOf recognises a line of Postfix's smtp(8) or of Sendmail that
// reports a failed TLS negotiation with a receiving MX. A status line's
// text counts too ("TLS is required, but was not offered by host …").
// Words are matched as Postfix 3.7 and Sendmail 8.17 write them; lines
// of other programs are never failures.
func TLSFailureOf(l Line) (TLSFailure, bool) {
	switch {
	case strings.HasPrefix(l.Program, "postfix") && strings.HasSuffix(l.Program, "/smtp"):
		return postfixTLSFailure(l.Message)
	case l.Program == "sendmail" || l.Program == "sm-mta":
		return sendmailTLSFailure(l.Message)
	}
	return TLSFailure{}, false
}

func postfixTLSFailure(msg string) (TLSFailure, bool) {
	// "server certificate verification failed for mx.example[192.0.2.1]:25: num=62:hostname mismatch"
	// "certificate verification failed for mx.example[192.0.2.1]:25: self-signed certificate"
	if i := strings.Index(msg, "certificate verification failed for "); i >= 0 && i <= len("server ") {
		rest := msg[i+len("certificate verification failed for "):]
		relay, reason, _ := strings.Cut(rest, ": ")
		return TLSFailure{Result: verifyResult(reason), Reason: clip(reason), Relay: relay}, true
	}
	// "SSL_connect error to mx.example[192.0.2.1]:25: lost connection"
	if rest, ok := strings.CutPrefix(msg, "SSL_connect error to "); ok {
		relay, reason, _ := strings.Cut(rest, ": ")
		return TLSFailure{Result: tlsrpt.ResultValidationFailure, Reason: clip("SSL_connect error: " + reason), Relay: relay}, true
	}
	// "warning: TLSA lookup error for mx.example:25"
	if rest, ok := strings.CutPrefix(msg, "warning: TLSA lookup error for "); ok {
		return TLSFailure{Result: tlsrpt.ResultDNSSECInvalid, Reason: clip("TLSA lookup error for " + rest)}, true
	}
	// A status line: the reason in parentheses after status=.
	if _, rest, ok := strings.Cut(msg, " status="); ok {
		if _, text, ok := strings.Cut(rest, " ("); ok {
			return postfixStatusFailure(strings.TrimSuffix(text, ")"))
		}
	}
	return TLSFailure{}, false
}

// postfixStatusFailure reads the reason smtp(8) gives a deferral or bounce
// it made itself for TLS (src/smtp/smtp_proto.c, smtp_connect.c).
func postfixStatusFailure(text string) (TLSFailure, bool) {
	// "host mx.example[192.0.2.1] said: …" is the receiver's own reply:
	// its words may imitate Postfix's and never make a TLS failure.
	if strings.HasPrefix(text, "host ") && strings.Contains(text, " said: ") {
		return TLSFailure{}, false
	}
	f := TLSFailure{Reason: clip(text)}
	switch {
	case strings.Contains(text, "TLS is required, but was not offered"),
		strings.Contains(text, "refused to start TLS"):
		f.Result = tlsrpt.ResultSTARTTLSNotSupported
	case strings.Contains(text, "Server certificate not verified"),
		strings.Contains(text, "Server certificate not trusted"):
		f.Result = tlsrpt.ResultCertificateNotTrusted
	case strings.Contains(text, "Cannot start TLS: handshake failure"):
		f.Result = tlsrpt.ResultValidationFailure
	case strings.Contains(text, "TLSA lookup error"):
		f.Result = tlsrpt.ResultDNSSECInvalid
	case strings.Contains(text, "no TLSA records"), strings.Contains(text, "no usable TLSA records"):
		f.Result = tlsrpt.ResultDANERequired
	default:
		return TLSFailure{}, false
	}
	return f, true
}

// verifyResult maps OpenSSL's verification error text, as Postfix logs it
// ("num=62:hostname mismatch", "certificate has expired"), to a result
// type.
func verifyResult(reason string) tlsrpt.ResultType {
	r := strings.ToLower(reason)
	switch {
	case strings.Contains(r, "dane tlsa"), strings.Contains(r, "tlsa record"):
		return tlsrpt.ResultTLSAInvalid
	case strings.Contains(r, "hostname mismatch"), strings.Contains(r, "does not match"),
		strings.Contains(r, "name mismatch"):
		return tlsrpt.ResultCertificateHostMismatch
	case strings.Contains(r, "has expired"), strings.Contains(r, "certificate expired"):
		return tlsrpt.ResultCertificateExpired
	}
	// Untrusted issuers, self-signed certificates, chains, not yet valid:
	// RFC 8460 4.3.2.1's "label that covers multiple certificate-related
	// failures", the reason code carrying OpenSSL's words.
	return tlsrpt.ResultCertificateNotTrusted
}

func sendmailTLSFailure(msg string) (TLSFailure, bool) {
	switch {
	// "STARTTLS=client, error: connect failed=-1, reason=…, relay=mx.example"
	case strings.HasPrefix(msg, "STARTTLS=client, error:"):
		f := logFields(msg)
		return TLSFailure{Result: tlsrpt.ResultValidationFailure,
			Reason: clip("STARTTLS error: reason=" + f["reason"] + ", SSL_error=" + f["SSL_error"]),
			Relay:  strings.TrimSuffix(f["relay"], ".")}, true
	// "STARTTLS=client, relay=mx.example., version=TLSv1.3, verify=FAIL, …"
	case strings.HasPrefix(msg, "STARTTLS=client,"):
		f := logFields(msg)
		if r, ok := sendmailVerify(f["verify"]); ok {
			return TLSFailure{Result: r, Reason: "verify=" + clip(f["verify"]), Relay: strings.TrimSuffix(f["relay"], ".")}, true
		}
	// "STARTTLS: x509 cert verify: depth=0 /CN=…, state=0, reason=certificate has expired"
	case strings.HasPrefix(msg, "STARTTLS: x509 cert verify:"), strings.HasPrefix(msg, "STARTTLS=client: x509 cert verify:"):
		f := logFields(msg)
		if reason := f["reason"]; reason != "" {
			return TLSFailure{Result: verifyResult(reason), Reason: clip(reason)}, true
		}
	// "ruleset=tls_server, arg1=NOT, relay=mx.example, reject=403 4.7.0 TLS handshake."
	case strings.HasPrefix(msg, "ruleset=tls_server,"):
		f := logFields(msg)
		if r, ok := sendmailVerify(f["arg1"]); ok {
			return TLSFailure{Result: r, Reason: clip("tls_server " + f["arg1"] + ": " + f["reject"]),
				Relay: strings.TrimSuffix(f["relay"], ".")}, true
		}
	}
	return TLSFailure{}, false
}

// sendmailVerify maps ${verify} (Sendmail's README.cf, "STARTTLS") to a
// failure: FAIL the certificate did not verify; SOFTWARE and PROTOCOL the
// handshake failed; NOT the server offered no STARTTLS. OK, NO (no
// certificate asked for), NONE, TRUSTED, TEMP are not the peer's failure.
func sendmailVerify(v string) (tlsrpt.ResultType, bool) {
	switch v {
	case "FAIL":
		return tlsrpt.ResultCertificateNotTrusted, true
	case "SOFTWARE", "PROTOCOL":
		return tlsrpt.ResultValidationFailure, true
	case "NOT":
		return tlsrpt.ResultSTARTTLSNotSupported, true
	}
	return "", false
}

func clip(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
	if len(s) > maxReason {
		s = s[:maxReason]
	}
	return s
}

// TLSOutcome is the TLS side of one delivery as a TLS report counts it.
type TLSOutcome struct {
	// Session names the SMTP session within the log: recipients delivered
	// over one connection share it.
	Session string
	Result  tlsrpt.ResultType // "" when nothing failed
	Reason  string
}

// TLSTracker joins the TLS lines of an SMTP client process (handshake,
// certificate verification, SSL errors) to the status lines of the same
// session. Feed it the lines of one log in order, beside a Parser.
type TLSTracker struct {
	// Loc and Now place classic syslog timestamps, as Parser's do.
	Loc *time.Location
	Now func() time.Time

	procs map[string]*smtpProc
}

type smtpProc struct {
	session   string
	relay     string // of the open session
	open      bool   // TLS or failure lines seen, no status line yet
	result    tlsrpt.ResultType
	reason    string
	lastRelay string // of the last status line
	lastQID   string
	started   int64 // second of the last session's start
	n         int   // sessions started in that second
}

// NewTLSTracker returns an empty tracker.
func NewTLSTracker() *TLSTracker { return &TLSTracker{procs: map[string]*smtpProc{}} }

// Feed reads one log line. For a status line, d is the delivery the
// Parser read from the same line; Feed then returns its outcome, and ok
// false for a delivery that had no SMTP session (relay=none).
func (t *TLSTracker) Feed(line string, d *Delivery) (TLSOutcome, bool) {
	// Most lines of a mail log are other programs': skip them unparsed.
	if d == nil && !strings.Contains(line, "/smtp[") && !strings.Contains(line, "sendmail[") && !strings.Contains(line, "sm-mta[") {
		return TLSOutcome{}, false
	}
	now, loc := time.Now(), t.Loc
	if t.Now != nil {
		now = t.Now()
	}
	if loc == nil {
		loc = time.Local
	}
	l, err := ParseSyslog(strings.TrimRight(line, "\r\n"), now, loc)
	if err != nil {
		return TLSOutcome{}, false
	}
	postfix := strings.HasPrefix(l.Program, "postfix") && strings.HasSuffix(l.Program, "/smtp")
	if !postfix && l.Program != "sendmail" && l.Program != "sm-mta" {
		return TLSOutcome{}, false
	}
	key := l.Host + "/" + l.Program + "/" + strconv.Itoa(l.PID)
	p := t.procs[key]
	if p == nil {
		if len(t.procs) >= maxProcs {
			clear(t.procs)
		}
		p = &smtpProc{}
		t.procs[key] = p
	}
	if d != nil {
		if d.RelayIP == "" && (d.RelayHost == "" || d.RelayHost == "none") {
			return TLSOutcome{}, false // no connection (relay=none): no TLS session to count
		}
		return t.status(p, key, l, d, postfix), true
	}
	if f, ok := TLSFailureOf(l); ok {
		t.begin(p, key, l, f.Relay, postfix)
		if p.result == "" {
			p.result, p.reason = f.Result, f.Reason
		} else if p.reason != "" && f.Reason != "" && !strings.Contains(p.reason, f.Reason) && p.result == f.Result {
			p.reason = clip(p.reason + "; " + f.Reason)
		}
		return TLSOutcome{}, false
	}
	if postfix {
		// "Verified TLS connection established to host[ip]:port: …"
		if _, rest, ok := strings.Cut(l.Message, "TLS connection established to "); ok {
			relay, _, _ := strings.Cut(rest, ": ")
			t.begin(p, key, l, relay, postfix)
		}
	} else if strings.HasPrefix(l.Message, "STARTTLS=client,") {
		t.begin(p, key, l, strings.TrimSuffix(logFields(l.Message)["relay"], "."), postfix)
	}
	return TLSOutcome{}, false
}

// begin opens a session for relay, unless one to the same relay is open.
func (t *TLSTracker) begin(p *smtpProc, key string, l Line, relay string, postfix bool) {
	if p.open && (relay == "" || p.relay == "" || sameRelay(p.relay, relay)) {
		if p.relay == "" {
			p.relay = relay // a line that named no server opened it
		}
		return
	}
	t.newSession(p, key, l)
	p.open, p.relay = true, relay
}

func (t *TLSTracker) newSession(p *smtpProc, key string, l Line) {
	sec := l.Time.Unix()
	if sec == p.started {
		p.n++
	} else {
		p.started, p.n = sec, 0
	}
	p.session = key + "@" + strconv.FormatInt(sec, 10) + "." + strconv.Itoa(p.n)
	p.open, p.relay, p.result, p.reason = false, "", "", ""
}

// status finishes the open session, or continues the last one (more
// recipients of the message, a reused connection), or is a session of its
// own that logged nothing before its status (plaintext, no STARTTLS).
func (t *TLSTracker) status(p *smtpProc, key string, l Line, d *Delivery, postfix bool) TLSOutcome {
	relay, qid, reuse := statusRelay(d)
	switch {
	case p.open && (p.relay == "" || sameRelay(p.relay, relay)):
		p.open = false
	case !p.open && p.session != "" && sameRelay(p.lastRelay, relay) && (p.lastQID == qid || reuse):
	default:
		t.newSession(p, key, l)
	}
	p.lastRelay, p.lastQID = relay, qid
	if f, ok := TLSFailureOf(l); ok && p.result == "" {
		p.result, p.reason = f.Result, f.Reason
	}
	return TLSOutcome{Session: p.session, Result: p.result, Reason: p.reason}
}

// statusRelay gives the relay, queue ID and connection reuse of a status
// line, from what the Parser read of it positionally (never from the
// reply text).
func statusRelay(d *Delivery) (relay, qid string, reuse bool) {
	relay = d.RelayHost
	if d.RelayIP != "" {
		relay = fmt.Sprintf("%s[%s]:%d", d.RelayHost, d.RelayIP, d.RelayPort)
	}
	return relay, d.QueueID, d.ConnUse > 1
}

// logFields reads the "key=value, " fields of an MTA's own TLS lines
// (Sendmail's STARTTLS=client and ruleset lines). The first occurrence
// of a key wins and a value ends at the next ", ", so a later field (a
// relay name from DNS, an OpenSSL reason) cannot replace an earlier one.
// Values are capped; the line is no status line, whose reply text the
// Parser alone reads.
func logFields(msg string) map[string]string {
	out := map[string]string{}
	for len(msg) > 0 && len(out) < 16 {
		part, rest, _ := strings.Cut(msg, ", ")
		msg = rest
		k, v, ok := strings.Cut(part, "=")
		k = strings.TrimSpace(k[strings.LastIndexAny(k, ": ")+1:])
		if !ok || k == "" {
			continue
		}
		if _, seen := out[k]; !seen {
			out[k] = clip(v)
		}
	}
	return out
}

func sameRelay(a, b string) bool {
	ha, ipa, pa := splitRelay(a)
	hb, ipb, pb := splitRelay(b)
	if ipa != "" && ipb != "" {
		// Sendmail names no port; Postfix names it on both lines.
		return ipa == ipb && (pa == pb || pa == 0 || pb == 0)
	}
	return strings.EqualFold(ha, hb)
}
