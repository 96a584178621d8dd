package measure

import (
	"database/sql/driver"
	"strings"

	"github.com/snowrain/snowrain/measure/maillog"
)

// rollup accumulates the hourly aggregates of one transaction; write adds
// them to the hourly_* tables, under the node that wrote them.
type rollup struct {
	node    string
	msgs    map[msgKey]int64
	dkim    map[dkimKey]int64
	dkimRes map[dkimResKey]int64
	peers   map[peerKey][2]int64
	clients map[clientKey][2]int64
	deliv   map[delivKey]int64
	prov    map[provKey]int64 // Table 6, providers.go
	peerOf  map[string]string // relay host → provider peer, within the batch
}

// The keys hold strings, not the verdicts' types: their fields go to the
// driver as they are, and it takes only plain strings.
type msgKey struct {
	hour                                               int64
	direction, action, version, cipher                 string
	fs                                                 bool
	spf, spfClass, dkim, dmarc, policy, auth, failOpen string
}

type dkimKey struct {
	hour             int64
	direction, class string
}

type dkimResKey struct {
	hour              int64
	direction, result string
}

type peerKey struct {
	hour              int64
	direction, domain string
}

type clientKey struct {
	hour int64
	ip   string
}

type delivKey struct {
	hour                                   int64
	domain, status, version, cipher, level string
	fs                                     bool
}

func newRollup(node string) *rollup {
	return &rollup{node: node, msgs: map[msgKey]int64{}, dkim: map[dkimKey]int64{}, dkimRes: map[dkimResKey]int64{}, peers: map[peerKey][2]int64{},
		clients: map[clientKey][2]int64{}, deliv: map[delivKey]int64{}}
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// PeerDomain is the domain a message is counted under in per-domain
// tables: the envelope sender's, else the header From's.
func PeerDomain(m *Message) string {
	switch {
	case m.MailFromDomain != "":
		return m.MailFromDomain
	case m.FromDomain != "":
		return m.FromDomain
	}
	return "(none)"
}

func (r *rollup) addMessage(m *Message) {
	h := m.Received.Unix() / 3600
	r.msgs[msgKey{h, string(m.Direction), string(m.Action), m.TLSVersion, m.Cipher, m.ForwardSecret,
		string(m.SPFResult), string(m.SPFClass), string(m.DKIMResult), string(m.DMARCResult),
		string(m.DMARCPolicy), string(m.AuthClass), m.FailOpen}]++
	tls := b2i(m.TLSVersion != "")
	pk := peerKey{h, string(m.Direction), PeerDomain(m)}
	p := r.peers[pk]
	r.peers[pk] = [2]int64{p[0] + 1, p[1] + tls}
	if m.Direction == Inbound {
		ck := clientKey{h, m.ClientIP}
		c := r.clients[ck]
		r.clients[ck] = [2]int64{c[0] + 1, c[1] + tls}
	}
	for _, s := range m.Signatures {
		if s.Class != "" {
			r.dkim[dkimKey{h, string(m.Direction), string(s.Class)}]++
		}
		r.dkimRes[dkimResKey{h, string(m.Direction), string(s.Result)}]++
	}
}

func (r *rollup) addDelivery(d *maillog.Delivery) {
	r.deliv[delivKey{d.Time.Unix() / 3600, d.Domain, string(d.Status), d.TLSVersion, d.Cipher, string(d.Level),
		d.Suite.ForwardSecret}]++
}

// upsert builds "INSERT … ON CONFLICT(pk) DO UPDATE SET counter += …",
// the key led by hour and node: concurrent writers (a fleet's nodes, the
// writer and the log follower) add to a row, never overwrite it.
func upsert(table string, keys, counters []string) string {
	keys = append([]string{"hour", "node"}, keys...)
	cols := append(append([]string{}, keys...), counters...)
	var set []string
	for _, c := range counters {
		// Qualified: PostgreSQL finds a bare name in the table and in
		// excluded alike.
		set = append(set, c+" = "+table+"."+c+" + excluded."+c)
	}
	return "INSERT INTO " + table + " (" + strings.Join(cols, ", ") + ") VALUES (" +
		strings.TrimSuffix(strings.Repeat("?, ", len(cols)), ", ") + ") ON CONFLICT (" +
		strings.Join(keys, ", ") + ") DO UPDATE SET " + strings.Join(set, ", ")
}

var (
	upsertMessages = upsert("hourly_messages", []string{"direction", "action", "tls_version", "cipher",
		"forward_secret", "spf_result", "spf_class", "dkim_result", "dmarc_result", "dmarc_policy", "auth_class",
		"fail_open"}, []string{"messages"})
	upsertDKIM        = upsert("hourly_dkim_failures", []string{"direction", "class"}, []string{"signatures"})
	upsertDKIMResults = upsert("hourly_dkim_results", []string{"direction", "result"}, []string{"signatures"})
	upsertPeers       = upsert("hourly_peers", []string{"direction", "domain"}, []string{"messages", "tls"})
	upsertClients     = upsert("hourly_clients", []string{"client_ip"}, []string{"messages", "tls"})
	upsertDeliveries  = upsert("hourly_deliveries", []string{"domain", "status", "tls_version", "cipher",
		"tls_level", "forward_secret"}, []string{"deliveries"})
)

// execer runs one statement; the writer's raw connection and a sql.Tx
// both provide one.
type execer func(query string, args ...driver.Value) error

func (r *rollup) write(exec execer) error {
	for k, n := range r.msgs {
		if err := exec(upsertMessages, k.hour, r.node, k.direction, k.action, k.version, k.cipher, b2i(k.fs), k.spf,
			k.spfClass, k.dkim, k.dmarc, k.policy, k.auth, k.failOpen, n); err != nil {
			return err
		}
	}
	for k, n := range r.dkim {
		if err := exec(upsertDKIM, k.hour, r.node, k.direction, k.class, n); err != nil {
			return err
		}
	}
	for k, n := range r.dkimRes {
		if err := exec(upsertDKIMResults, k.hour, r.node, k.direction, k.result, n); err != nil {
			return err
		}
	}
	for k, n := range r.peers {
		if err := exec(upsertPeers, k.hour, r.node, k.direction, k.domain, n[0], n[1]); err != nil {
			return err
		}
	}
	for k, n := range r.clients {
		if err := exec(upsertClients, k.hour, r.node, k.ip, n[0], n[1]); err != nil {
			return err
		}
	}
	for k, n := range r.deliv {
		if err := exec(upsertDeliveries, k.hour, r.node, k.domain, k.status, k.version, k.cipher, k.level, b2i(k.fs), n); err != nil {
			return err
		}
	}
	return r.writeProviders(exec)
}
