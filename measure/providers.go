package measure

import (
	"context"
	"database/sql"
	"fmt"
	"net/netip"
	"strings"

	"github.com/snowrain/snowrain/auth"
	"github.com/snowrain/snowrain/measure/maillog"
)

// How a provider peer was named (Table 6).
const (
	PeerByPTR  = "ptr"  // the client's verified reverse name (inbound)
	PeerByHELO = "helo" // the client's HELO name, when it had no verified reverse name (inbound; unverified)
	PeerByMX   = "mx"   // the MX host that took the delivery (outbound)
)

// provKey is one hourly_providers row: the paper's Table 6 columns for
// one peer domain, one direction, one hour.
type provKey struct {
	hour                    int64
	direction, peer, source string
	version, kx, cipher     string
	fs                      bool
	cert, status            string
}

// ProviderPeer names the peer of an inbound connection for Table 6: the
// registered domain of its verified reverse name, else of its HELO name
// (source PeerByHELO: chosen by the client, unverified), else "".
func ProviderPeer(ptr, helo string) (peer, source string) {
	if d := peerDomain(ptr); d != "" {
		return d, PeerByPTR
	}
	if d := peerDomain(helo); d != "" {
		return d, PeerByHELO
	}
	return "", ""
}

// peerDomain is the registered domain of a host name, or "" for an
// address literal, a bare or malformed name, or a public suffix.
func peerDomain(host string) string {
	host = strings.TrimSuffix(strings.TrimSpace(host), ".")
	if host == "" || len(host) > 253 || strings.ContainsAny(host, "[]:@ /") {
		return ""
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return ""
	}
	d := auth.Registrable(host)
	if d == "" {
		return ""
	}
	// The public suffix list's default rule makes "x.123" registrable;
	// a real top-level domain is never all digits. Anything but letters,
	// digits and hyphens (A-labels) is no host name a peer may claim.
	if tld := d[strings.LastIndexByte(d, '.')+1:]; strings.Trim(tld, "0123456789") == "" {
		return ""
	}
	for _, c := range d {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return ""
		}
	}
	return d
}

// addProviderConnection counts an inbound connection's messages under
// its peer's domain.
func (r *rollup) addProviderConnection(c *Connection) {
	if c.Direction != Inbound || c.Messages <= 0 {
		return
	}
	peer, source := ProviderPeer(c.ClientPTR, c.Helo)
	if peer == "" {
		return
	}
	if r.prov == nil {
		r.prov, r.peerOf = map[provKey]int64{}, map[string]string{}
	}
	r.prov[provKey{c.Started.Unix() / 3600, string(Inbound), peer, source, c.TLSVersion, c.KeyExchange, c.BulkCipher,
		c.ForwardSecret, "", ""}] += int64(c.Messages)
}

// addProviderDelivery counts a delivery under the domain of the MX host
// that took it, with Postfix's or Sendmail's verdict on its certificate
// (maillog's Level: verified, trusted, untrusted, anonymous, dane, none).
func (r *rollup) addProviderDelivery(d *maillog.Delivery) {
	if r.prov == nil {
		r.prov, r.peerOf = map[provKey]int64{}, map[string]string{}
	}
	// A log names few MX hosts many times: look each up once per batch.
	peer, ok := r.peerOf[d.RelayHost]
	if !ok {
		peer = peerDomain(d.RelayHost)
		r.peerOf[d.RelayHost] = peer
	}
	if peer == "" {
		return
	}
	r.prov[provKey{d.Time.Unix() / 3600, string(Outbound), peer, PeerByMX, d.TLSVersion, d.Suite.KeyExchange,
		d.Suite.Cipher, d.Suite.ForwardSecret, string(d.Level), string(d.Status)}]++
}

var upsertProviders = upsert("hourly_providers", []string{"direction", "peer", "source", "tls_version",
	"key_exchange", "cipher", "forward_secret", "cert", "status"}, []string{"messages"})

func (r *rollup) writeProviders(exec execer) error {
	for k, n := range r.prov {
		if err := exec(upsertProviders, k.hour, r.node, k.direction, k.peer, k.source, k.version, k.kx, k.cipher, b2i(k.fs),
			k.cert, k.status, n); err != nil {
			return err
		}
	}
	return nil
}

// ProviderRow is one group of a period's hourly_providers rows.
type ProviderRow struct {
	Direction, Peer, Source string
	TLSVersion, KeyExchange string
	Cipher                  string
	ForwardSecret           bool
	Cert, Status            string
	Messages                int64
}

// ProviderRows reads the provider rollup of the scope.
func (s *Store) ProviderRows(ctx context.Context, sc Scope) ([]ProviderRow, error) {
	where, args := sc.rollup()
	out, err := Rows(ctx, s.DB, `SELECT direction, peer, source, tls_version, key_exchange, cipher,
		forward_secret, cert, status, SUM(messages) FROM hourly_providers WHERE `+where+`
		GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9`, args, func(r *sql.Rows) (ProviderRow, error) {
		var p ProviderRow
		err := r.Scan(&p.Direction, &p.Peer, &p.Source, &p.TLSVersion, &p.KeyExchange, &p.Cipher,
			&p.ForwardSecret, &p.Cert, &p.Status, &p.Messages)
		return p, err
	})
	if err != nil {
		return nil, fmt.Errorf("measure: providers: %w", err)
	}
	return out, nil
}
