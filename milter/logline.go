package milter

import (
	"context"
	"log/slog"
	"strings"
	"unicode"

	"github.com/snowrain/snowrain/measure"
)

// logMessage writes the one info line per message that an admin greps by
// queue ID, as OpenDKIM and OpenDMARC let them: who sent it (address,
// name, HELO), over what TLS, each verdict (SPF; every DKIM signature with
// its d=, result and failure class; DMARC result, policy and disposition),
// the direction and the action taken. Values go through slog, which
// quotes and escapes them for the text and JSON formats; logValue also
// strips what a terminal or log viewer would interpret (C0 and C1
// controls, bidi overrides), so a hostile HELO or PTR cannot forge a line
// or hide a field.
func (s *session) logMessage(rec *measure.Message) {
	log := s.f.log
	if !log.Enabled(context.Background(), slog.LevelInfo) {
		return
	}
	tls := rec.TLSVersion
	if tls == "" {
		tls = "none"
	}
	attrs := []slog.Attr{
		slog.String("queue_id", logValue(rec.QueueID)),
		slog.String("client_addr", logValue(rec.ClientIP)),
		slog.String("client_name", logValue(s.ci.ClientPTR)),
		slog.String("helo", logValue(s.helo)),
		slog.String("direction", string(rec.Direction)),
		slog.String("tls", logValue(tls)),
		slog.String("cipher", logValue(rec.Cipher)),
		slog.String("mail_from", logValue(rec.MailFromDomain)),
		slog.String("from", logValue(fromForLog(rec))),
		slog.String("spf", logValue(rec.SPFResult)),
		slog.String("spf_domain", logValue(rec.SPFDomain)),
		slog.String("dkim", dkimForLog(rec.Signatures)),
		slog.String("dmarc", logValue(orNone(rec.DMARCResult))),
		slog.String("dmarc_policy", logValue(rec.DMARCPolicy)),
		slog.String("dmarc_disposition", logValue(rec.DMARCDisposition)),
		slog.String("action", string(rec.Action)),
	}
	if rec.FailOpen != "" {
		attrs = append(attrs, slog.String("fail_open", logValue(rec.FailOpen)))
	}
	log.LogAttrs(context.Background(), slog.LevelInfo, "message", attrs...)
}

// fromForLog is the From domain, or why there is none (no_from,
// multiple_from, invalid_from).
func fromForLog(rec *measure.Message) string {
	if rec.FromDomain != "" {
		return rec.FromDomain
	}
	return string(rec.FromClass)
}

// dkimForLog renders every signature as d=DOMAIN:RESULT[:CLASS], space
// separated; "none" when the message had none.
func dkimForLog(sigs []measure.Signature) string {
	if len(sigs) == 0 {
		return "none"
	}
	var b strings.Builder
	for i, sg := range sigs {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString("d=" + logValue(sg.Domain) + ":" + logValue(sg.Result))
		if class := sg.Class; class != "" {
			b.WriteString(":" + logValue(class))
		}
	}
	return b.String()
}

func orNone[S ~string](s S) string {
	if s == "" {
		return "none"
	}
	return string(s)
}

// logValue is clean (valid UTF-8, no C0 controls or DEL, at most 255
// bytes) without C1 controls and format characters either: bidi
// overrides and isolates, zero-width characters. It takes a verdict as
// it takes any text.
func logValue[S ~string](v S) string {
	s := string(v)
	return clean(strings.Map(func(r rune) rune {
		if r >= 0x80 && r <= 0x9f || unicode.Is(unicode.Cf, r) {
			return -1
		}
		return r
	}, strings.ToValidUTF8(s, "?")))
}
