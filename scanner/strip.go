package scanner

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strings"
	"time"
)

// StripClass is what a host did with STARTTLS sent regardless of EHLO:
// the rows of Tables 9 ("IPv4 SMTP Scan Results"), 10 ("STARTTLS
// Manipulation") and 11 ("Prevalence of STARTTLS Stripping").
type StripClass string

// STARTTLS outcome classes of Tables 9–11.
const (
	StripHandshake      StripClass = "handshake"               // STARTTLS advertised, accepted, TLS completed
	StripUnadvertised   StripClass = "accepted_not_advertised" // not advertised, yet accepted
	StripEchoIntact     StripClass = "error_echo_intact"       // error reply echoing STARTTLS unchanged
	StripEchoReplaced   StripClass = "error_echo_replaced"     // … echoing XXXXXXXX (Cisco PIX/ASA)
	StripEchoLowercased StripClass = "error_echo_lowercased"   // … echoing starttls
	StripEchoTruncated  StripClass = "error_echo_truncated"    // … echoing STAR, TTLS and the like
	StripNoEcho         StripClass = "error_no_echo"           // an error reply that echoes nothing
	StripDropped        StripClass = "dropped"                 // the connection closed after STARTTLS
	StripHandshakeFail  StripClass = "handshake_failed"        // STARTTLS accepted, TLS failed
)

// HostResult is one port-25 host's answer to STARTTLS, sent regardless of
// what EHLO advertised.
type HostResult struct {
	Type         string     `json:"type"` // "host"
	IP           string     `json:"ip"`
	Banner       string     `json:"banner,omitempty"`
	BannerESMTP  bool       `json:"banner_esmtp"`
	EHLOMasked   bool       `json:"ehlo_masked"` // extension lines turned into runs of X
	Advertised   bool       `json:"starttls_advertised"`
	Reply        string     `json:"starttls_reply,omitempty"`
	Class        StripClass `json:"class"`
	ErrorClass   ErrClass   `json:"error_class,omitempty"`
	Error        string     `json:"error,omitempty"`
	ASN          uint       `json:"asn,omitempty"`
	Organization string     `json:"as_org,omitempty"`
	Country      string     `json:"country,omitempty"`
	HostSoftware            // Table 5: software and TLS version (software.go)
}

var xRun = regexp.MustCompile(`X{4,}`)

// ClassifyEcho tells what an error reply to STARTTLS says about the
// command the server received (the paper's Table 10): middleboxes that
// rewrite commands show in servers that echo unknown commands back, as
// Sendmail does (`500 5.5.1 Command unrecognized: "XXXXXXXX"`).
//
// Only what the server received can be an echo. A server answering 454
// or 501 received STARTTLS (RFC 3207 section 4 defines those replies to
// it), so the rest of its text is its own wording, not the command: a
// real Sendmail without TLS says "454 4.3.3 TLS not available after
// start", which is no truncated echo. Words are compared whole and with
// their case, since a truncating or lower-casing box changes nothing else.
func ClassifyEcho(code int, reply string) StripClass {
	words := strings.FieldsFunc(reply, func(r rune) bool {
		return !('A' <= r && r <= 'Z' || 'a' <= r && r <= 'z' || '0' <= r && r <= '9')
	})
	var intact, lower, replaced, truncated bool
	for _, w := range words {
		switch {
		case w == "STARTTLS":
			intact = true
		case strings.EqualFold(w, "STARTTLS") && w == strings.ToLower(w):
			lower = true
		case strings.EqualFold(w, "STARTTLS"):
			intact = true // the server's own spelling of a command it knew (StartTLS)
		case xRun.MatchString(w):
			replaced = true
		case truncatedEcho(w):
			truncated = true
		}
	}
	if code == 454 || code == 501 {
		lower, replaced, truncated = false, false, false
	}
	switch {
	case replaced:
		return StripEchoReplaced
	case intact:
		return StripEchoIntact
	case lower:
		return StripEchoLowercased
	case truncated:
		return StripEchoTruncated
	}
	return StripNoEcho
}

// truncatedEcho reports a word that is STARTTLS cut short, as old software
// and some boxes do (the paper saw STAR and TTLS): an upper-case prefix or
// suffix of four to seven letters.
func truncatedEcho(w string) bool {
	if len(w) < 4 || len(w) >= 8 || w != strings.ToUpper(w) {
		return false
	}
	return strings.HasPrefix("STARTTLS", w) || strings.HasSuffix("STARTTLS", w)
}

// ehloMasked reports extension lines rewritten by a box: Cisco's ESMTP
// inspection turns the keywords it does not allow into runs of X
// (250-XXXXXXXA). A bare "250" without extensions is what a server with
// none to offer says (RFC 5321 section 4.1.1.1), not a mask.
func ehloMasked(r Reply) bool {
	if len(r.Lines) < 2 {
		return false
	}
	for _, l := range r.Lines[1:] {
		if xRun.MatchString(l) {
			return true
		}
	}
	return false
}

// HostGrab connects to ip:port, says EHLO, and sends STARTTLS whatever
// EHLO said, classifying the answer.
func (g *Grabber) HostGrab(ctx context.Context, ip netip.Addr, port int) HostResult {
	res := HostResult{Type: "host", IP: ip.String()}
	timeout := g.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	conn, cancel, err := g.dial(ctx, ip, port, timeout)
	if err != nil {
		res.ErrorClass, res.Error = dialClass(err), err.Error()
		return res
	}
	defer cancel()
	defer conn.Close()
	g.strip(conn, &res)
	return res
}

func (g *Grabber) strip(conn net.Conn, res *HostResult) {
	r := getReader(conn)
	defer putReader(r)
	banner, err := ReadReply(r)
	if err != nil {
		res.ErrorClass, res.Error = droppedOr(err, ErrClassBanner), err.Error()
		return
	}
	res.Banner = clip(banner.Text(), 512)
	res.BannerESMTP = strings.Contains(strings.ToUpper(banner.Text()), "ESMTP")
	ehlo, err := g.ehlo(conn, r)
	res.Software = softwareOf(banner, ehlo, err)
	if err != nil {
		res.ErrorClass, res.Error = droppedOr(err, ErrClassEHLO), err.Error()
		return
	}
	if ehlo.Code == 250 {
		res.EHLOMasked = ehloMasked(ehlo)
		_, res.Advertised = Extensions(ehlo)["STARTTLS"]
	}
	conn.Write(cmdSTARTTLS)
	rep, err := ReadReply(r)
	if err != nil {
		res.Class, res.Error = StripDropped, err.Error()
		return
	}
	res.Reply = clip(fmt.Sprintf("%d %s", rep.Code, rep.Text()), 512)
	if rep.Code != 220 {
		res.Class = ClassifyEcho(rep.Code, rep.Text())
		quit(conn, r)
		return
	}
	if r.Buffered() > 0 {
		res.Class, res.Error = StripHandshakeFail, "plaintext after STARTTLS reply"
		return
	}
	tc := tls.Client(conn, scanTLSConfig())
	if err := tc.Handshake(); err != nil {
		res.Class, res.Error = StripHandshakeFail, err.Error()
		return
	}
	res.Class = StripHandshake
	res.TLSVersion = tlsVersion(tc.ConnectionState().Version)
	if !res.Advertised {
		res.Class = StripUnadvertised
	}
	br := getReader(tc)
	quit(tc, br)
	putReader(br)
}
