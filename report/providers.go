package report

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/snowrain/snowrain/measure"
	"github.com/snowrain/snowrain/measure/maillog"
)

// builtinProviders names the large providers whose host names are not
// under one registered domain, or not under their brand (the paper's
// Table 6 lists them by brand). The [providers] section of the
// configuration adds to it and overrides it.
var builtinProviders = map[string]string{
	"google.com": "Google", "gmail.com": "Google", "googlemail.com": "Google",
	"outlook.com": "Microsoft", "hotmail.com": "Microsoft", "live.com": "Microsoft", "msn.com": "Microsoft",
	"office365.com": "Microsoft", "microsoft.com": "Microsoft", "outlook.cn": "Microsoft",
	"yahoo.com": "Yahoo", "yahoodns.net": "Yahoo", "yahoo.net": "Yahoo", "ymail.com": "Yahoo",
	"aol.com":    "AOL",
	"icloud.com": "Apple iCloud", "me.com": "Apple iCloud", "mac.com": "Apple iCloud", "apple.com": "Apple iCloud",
	"proton.me": "Proton", "protonmail.ch": "Proton", "protonmail.com": "Proton",
	"zoho.com": "Zoho", "zohomail.com": "Zoho", "zoho.eu": "Zoho",
	"yandex.net": "Yandex", "yandex.ru": "Yandex", "yandex.com": "Yandex",
	"mail.ru": "Mail.ru", "qq.com": "QQ", "facebookmail.com": "Facebook", "facebook.com": "Facebook",
	"secureserver.net": "GoDaddy", "ovh.net": "OVH", "comcast.net": "Comcast",
	"gmx.net": "GMX", "gmx.com": "GMX", "mail.com": "Mail.com", "web.de": "WEB.DE",
	"hushmail.com": "Hushmail", "lycos.com": "Lycos", "att.net": "AT&T", "verizon.net": "Verizon",
	"amazonses.com": "Amazon SES", "sendgrid.net": "SendGrid", "mailgun.org": "Mailgun",
	"pphosted.com": "Proofpoint", "ppe-hosted.com": "Proofpoint", "mimecast.com": "Mimecast",
	"iphmx.com": "Cisco Secure Email", "messagelabs.com": "Broadcom Email Security",
}

// ProviderMap names provider peers: the built-in map with extra over it.
type ProviderMap map[string]string

// NewProviderMap merges extra (the configuration's [providers]) over the
// built-in map; keys are registered domains, compared lower-case without
// a trailing dot.
func NewProviderMap(extra map[string]string) ProviderMap {
	m := ProviderMap{}
	for k, v := range builtinProviders {
		m[k] = v
	}
	for k, v := range extra {
		if k = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(k), ".")); k != "" && strings.TrimSpace(v) != "" {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

// Name is the provider of a peer domain: its mapped name, else the domain.
func (m ProviderMap) Name(peer string) string {
	if n, ok := m[peer]; ok {
		return n
	}
	return peer
}

// Provider is one mail provider's row of Table 6: the mail it sent us and
// the mail we delivered to it.
type Provider struct {
	Name    string   `json:"name"`
	Domains []string `json:"domains"` // the peer domains grouped under it
	// From is the mail its servers sent us (the paper's "Outgoing").
	From ProviderTraffic `json:"from_provider"`
	// To is our deliveries to its MX hosts (the paper's "Incoming"), with
	// the verdict on its certificate.
	To ProviderTraffic `json:"to_provider"`
}

// ProviderTraffic is one direction of a provider's mail.
type ProviderTraffic struct {
	Messages      int64            `json:"messages"` // inbound messages; outbound deliveries sent
	TLS           int64            `json:"tls"`
	ForwardSecret int64            `json:"forward_secret"`
	Versions      map[string]int64 `json:"tls_versions"`  // of the TLS messages
	KeyExchanges  map[string]int64 `json:"key_exchanges"` // of the TLS messages
	Ciphers       map[string]int64 `json:"ciphers"`       // of the TLS messages
	// Certificates counts deliveries by Postfix's verdict on the server's
	// certificate (verified, trusted, untrusted, anonymous, dane; none
	// without TLS) or Sendmail's verify= (OK trusted, FAIL untrusted).
	Certificates map[string]int64 `json:"certificates,omitempty"`
	// ByHELO counts inbound messages named by the client's HELO (no
	// verified reverse name): chosen by the client, not verified.
	ByHELO int64 `json:"named_by_helo,omitempty"`
	// NotDelivered counts outbound attempts deferred or bounced.
	NotDelivered      int64 `json:"not_delivered,omitempty"`
	PrevMessages      int64 `json:"previous_messages"`
	PrevTLS           int64 `json:"previous_tls"`
	PrevForwardSecret int64 `json:"previous_forward_secret"`
}

func newTraffic() ProviderTraffic {
	return ProviderTraffic{Versions: map[string]int64{}, KeyExchanges: map[string]int64{}, Ciphers: map[string]int64{}}
}

// providers groups the period's (and the previous one's) provider rollup
// by provider, busiest first.
func providers(ctx context.Context, s *measure.Store, cur, prev measure.Scope, names ProviderMap) ([]Provider, error) {
	by := map[string]*Provider{}
	domains := map[string]map[string]bool{}
	get := func(peer string) *Provider {
		name := names.Name(peer)
		p, ok := by[name]
		if !ok {
			p = &Provider{Name: name, From: newTraffic(), To: newTraffic()}
			p.To.Certificates = map[string]int64{}
			by[name] = p
			domains[name] = map[string]bool{}
		}
		domains[name][peer] = true
		return p
	}
	for _, period := range []struct {
		sc      measure.Scope
		current bool
	}{{cur, true}, {prev, false}} {
		rows, err := s.ProviderRows(ctx, period.sc)
		if err != nil {
			return nil, err
		}
		for _, r := range rows {
			p := get(r.Peer)
			t := &p.From
			if measure.Direction(r.Direction) == measure.Outbound {
				t = &p.To
				if maillog.Status(r.Status) != maillog.StatusSent {
					if period.current {
						t.NotDelivered += r.Messages
					}
					continue
				}
			}
			tls := r.TLSVersion != ""
			if !period.current {
				t.PrevMessages += r.Messages
				if tls {
					t.PrevTLS += r.Messages
				}
				if r.ForwardSecret {
					t.PrevForwardSecret += r.Messages
				}
				continue
			}
			t.Messages += r.Messages
			if r.Source == measure.PeerByHELO {
				t.ByHELO += r.Messages
			}
			if measure.Direction(r.Direction) == measure.Outbound {
				cert := r.Cert
				if cert == "" {
					cert = string(maillog.LevelNone)
				}
				t.Certificates[cert] += r.Messages
			}
			if !tls {
				continue
			}
			t.TLS += r.Messages
			t.Versions[r.TLSVersion] += r.Messages
			t.KeyExchanges[orUnknown(r.KeyExchange)] += r.Messages
			t.Ciphers[orUnknown(r.Cipher)] += r.Messages
			if r.ForwardSecret {
				t.ForwardSecret += r.Messages
			}
		}
	}
	out := make([]Provider, 0, len(by))
	for name, p := range by {
		for d := range domains[name] {
			p.Domains = append(p.Domains, d)
		}
		sort.Strings(p.Domains)
		if p.From.Messages+p.To.Messages+p.From.PrevMessages+p.To.PrevMessages == 0 && p.To.NotDelivered == 0 {
			continue
		}
		out = append(out, *p)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].From.Messages+out[i].To.Messages, out[j].From.Messages+out[j].To.Messages
		if a != b {
			return a > b
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// top is the most common key of m with its share of total, "-" for none.
func top(m map[string]int64, total int64) string {
	best, n := "", int64(-1)
	for k, v := range m {
		if v > n || v == n && k < best {
			best, n = k, v
		}
	}
	if n <= 0 {
		return "-"
	}
	return fmt.Sprintf("%s (%s)", best, pctS(n, total))
}

// table6 is the paper's Table 6 for this server's peers.
func (r *Report) table6() Table {
	t := Table{ID: "table6", Title: "Table 6: Encryption behaviour of mail providers",
		Note: fmt.Sprintf("The %d busiest providers. Mail from it: messages the milter recorded from the provider's servers, "+
			"named by the registered domain of their verified reverse name, else of their HELO (unverified; named_by_helo in JSON). "+
			"Mail to it: deliveries sent to the MX hosts of its domain, from the MTA log. Version, key exchange and cipher: the most "+
			"common among the TLS messages, with its share; FS: forward-secret share of them. Its certificate: our MTA's verdict on "+
			"the provider's certificate (Postfix Verified/Trusted/Untrusted/Anonymous, Sendmail verify=). Change: TLS share "+
			"against the previous period, in points. The paper's Incoming is Mail to it here, its Outgoing Mail from it.", r.opts.Top),
		Columns: []string{"Provider", "Mail from it", "TLS", "Change", "Version", "Key exchange", "Cipher", "FS",
			"Mail to it", "TLS", "Change", "Version", "Key exchange", "Cipher", "FS", "Its certificate"}}
	for i, p := range r.Providers {
		if i == r.opts.Top {
			break
		}
		row := []string{p.Name}
		for _, d := range []ProviderTraffic{p.From, p.To} {
			row = append(row, fmt.Sprint(d.Messages), pctS(d.TLS, d.Messages), change(d.TLS, d.Messages, d.PrevTLS, d.PrevMessages),
				top(d.Versions, d.TLS), top(d.KeyExchanges, d.TLS), top(d.Ciphers, d.TLS), pctS(d.ForwardSecret, d.TLS))
		}
		row = append(row, top(p.To.Certificates, p.To.Messages))
		t.Rows = append(t.Rows, row)
	}
	if len(t.Rows) == 0 {
		t.Note, t.NoData = "", "No data: no mail from or to a named provider in this period or the previous one."
	}
	return t
}
