package scanner

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strings"
	"time"
)

// STARTTLS outcome classes of Tables 9–11.
const (
	StripHandshake      = "handshake"               // STARTTLS advertised, accepted, TLS completed
	StripUnadvertised   = "accepted_not_advertised" // not advertised, yet accepted
	StripEchoIntact     = "error_echo_intact"       // error reply echoing STARTTLS unchanged
	StripEchoReplaced   = "error_echo_replaced"     // … echoing XXXXXXXX (Cisco PIX/ASA)
	StripEchoLowercased = "error_echo_lowercased"
	StripEchoTruncated  = "error_echo_truncated"
	StripNoEcho         = "error_no_echo"
	StripDropped        = "dropped"
	StripHandshakeFail  = "handshake_failed"
)

// HostResult is one port-25 host's answer to STARTTLS, sent regardless of
// what EHLO advertised.
type HostResult struct {
	Type         string `json:"type"` // "host"
	IP           string `json:"ip"`
	Banner       string `json:"banner,omitempty"`
	BannerESMTP  bool   `json:"banner_esmtp"`
	EHLOMasked   bool   `json:"ehlo_masked"` // XXXX lines or an empty extension list
	Advertised   bool   `json:"starttls_advertised"`
	Reply        string `json:"starttls_reply,omitempty"`
	Class        string `json:"class"`
	ErrorClass   string `json:"error_class,omitempty"`
	Error        string `json:"error,omitempty"`
	ASN          uint   `json:"asn,omitempty"`
	Organization string `json:"as_org,omitempty"`
	Country      string `json:"country,omitempty"`
	HostSoftware        // Table 5: software and TLS version (software.go)
}

var xRun = regexp.MustCompile(`X{4,}`)

// ClassifyEcho tells what an error reply to STARTTLS says about the
// command the server received: middleboxes that rewrite commands show in
// the echo.
func ClassifyEcho(reply string) string {
	switch {
	case strings.Contains(reply, "STARTTLS"):
		return StripEchoIntact
	case xRun.MatchString(reply):
		return StripEchoReplaced
	case strings.Contains(strings.ToUpper(reply), "STARTTLS"):
		return StripEchoLowercased
	case truncatedEcho(reply):
		return StripEchoTruncated
	}
	return StripNoEcho
}

// truncatedEcho finds STARTTLS cut short: "STAR", "START", "STARTT"… as a
// word of its own.
func truncatedEcho(reply string) bool {
	for _, w := range strings.FieldsFunc(reply, func(r rune) bool {
		return r == ' ' || r == '"' || r == '\'' || r == ':' || r == '(' || r == ')' || r == '<' || r == '>'
	}) {
		if len(w) >= 4 && len(w) < 8 && strings.HasPrefix("STARTTLS", strings.ToUpper(w)) {
			return true
		}
	}
	return false
}

// ehloMasked reports extension lists blanked or rewritten by a box.
func ehloMasked(r Reply) bool {
	if len(r.Lines) <= 1 {
		return true
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
	if g.Blocklist.Blocked(ip) {
		res.Class, res.ErrorClass = "", ErrClassBlocked
		return res
	}
	timeout := g.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := g.Dialer.DialContext(ctx, "tcp", netip.AddrPortFrom(ip, uint16(port)).String())
	if err != nil {
		res.ErrorClass, res.Error = ErrClassConnect, err.Error()
		return res
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	g.strip(conn, &res)
	return res
}

func (g *Grabber) strip(conn net.Conn, res *HostResult) {
	r := bufio.NewReader(conn)
	banner, err := ReadReply(r)
	if err != nil {
		res.ErrorClass, res.Error = droppedOr(err, ErrClassBanner), err.Error()
		return
	}
	res.Banner = clip(banner.Text(), 512)
	res.BannerESMTP = strings.Contains(strings.ToUpper(banner.Text()), "ESMTP")
	name := g.EHLOName
	if name == "" {
		name = "snowrain-scanner.invalid"
	}
	fmt.Fprintf(conn, "EHLO %s\r\n", name)
	ehlo, err := ReadReply(r)
	res.Software = softwareOf(banner, ehlo, err)
	if err != nil {
		res.ErrorClass, res.Error = droppedOr(err, ErrClassEHLO), err.Error()
		return
	}
	if ehlo.Code == 250 {
		res.EHLOMasked = ehloMasked(ehlo)
		_, res.Advertised = Extensions(ehlo)["STARTTLS"]
	}
	fmt.Fprintf(conn, "STARTTLS\r\n")
	rep, err := ReadReply(r)
	if err != nil {
		res.Class, res.Error = StripDropped, err.Error()
		return
	}
	res.Reply = clip(fmt.Sprintf("%d %s", rep.Code, rep.Text()), 512)
	if rep.Code != 220 {
		res.Class = ClassifyEcho(rep.Text())
		fmt.Fprintf(conn, "QUIT\r\n")
		return
	}
	tc := tls.Client(conn, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS10,
		CurvePreferences: []tls.CurveID{tls.X25519, tls.CurveP256, tls.CurveP384}})
	if err := tc.Handshake(); err != nil {
		res.Class, res.Error = StripHandshakeFail, err.Error()
		return
	}
	res.Class = StripHandshake
	res.TLSVersion = tlsVersion(tc.ConnectionState().Version)
	if !res.Advertised {
		res.Class = StripUnadvertised
	}
	fmt.Fprintf(tc, "QUIT\r\n")
}
