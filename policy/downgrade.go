package policy

import (
	"container/list"
	"math/bits"
	"sync"
	"time"

	"github.com/snowrain/snowrain/measure"
	"github.com/snowrain/snowrain/measure/maillog"
)

// Detector flags peers that used TLS in at least N of their last M
// connections and now come or go in plaintext: STARTTLS stripping, or a
// peer that lost its TLS. It keeps the last M outcomes per peer in a
// bounded LRU, so memory stays flat whatever the traffic.
type Detector struct {
	N, M int // defaults 5 of 10
	Max  int // peers remembered; default 100000

	mu    sync.Mutex
	order *list.List
	peers map[string]*list.Element
}

type peerHistory struct {
	key  string
	bits uint64 // 1 = TLS, newest in bit 0
	seen int
}

// Observe records one connection of peer (e.g. "inbound domain x.org") and
// reports whether it is a downgrade, with how many of the previous M used
// TLS.
func (d *Detector) Observe(peer string, tls bool) (downgrade bool, before int) {
	n, m, max := d.N, d.M, d.Max
	if m <= 0 || m > 64 {
		m = 10
	}
	if n <= 0 {
		n = 5
	}
	if max <= 0 {
		max = 100000
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.peers == nil {
		d.peers, d.order = map[string]*list.Element{}, list.New()
	}
	el, ok := d.peers[peer]
	if !ok {
		el = d.order.PushFront(&peerHistory{key: peer})
		d.peers[peer] = el
		for d.order.Len() > max {
			old := d.order.Back()
			d.order.Remove(old)
			delete(d.peers, old.Value.(*peerHistory).key)
		}
	} else {
		d.order.MoveToFront(el)
	}
	h := el.Value.(*peerHistory)
	window := uint64(1)<<m - 1
	if m == 64 {
		window = ^uint64(0)
	}
	before = bits.OnesCount64(h.bits & window)
	downgrade = !tls && before >= n
	h.bits <<= 1
	if tls {
		h.bits |= 1
	}
	h.seen++
	return downgrade, before
}

// Downgrades watches what the milter and the MTA log show of each peer
// (by domain and by address, each direction) with a Detector, and records
// every downgrade it finds (measure.Downgrade) through Recorder.
type Downgrades struct {
	Detector *Detector
	Recorder Recorder
	// OnDowngrade, if set, is told about each (metrics).
	OnDowngrade func(direction measure.Direction, kind string)
}

// Observe takes one connection of a peer: kind is "domain" or "ip".
func (w *Downgrades) Observe(direction measure.Direction, kind, peer string, tls bool) {
	if peer == "" {
		return
	}
	down, before := w.Detector.Observe(string(direction)+" "+kind+" "+peer, tls)
	if !down {
		return
	}
	if w.OnDowngrade != nil {
		w.OnDowngrade(direction, kind)
	}
	m := w.Detector.M
	if m <= 0 || m > 64 {
		m = 10
	}
	w.Recorder.Enqueue(&measure.Downgrade{At: time.Now(), Direction: direction, PeerKind: kind, Peer: peer,
		TLSBefore: before, Window: m})
}

// Message takes a message the milter saw (its Filter.Watch): the peer by
// domain and by address.
func (w *Downgrades) Message(direction measure.Direction, domain, ip string, tls bool) {
	w.Observe(direction, "domain", domain, tls)
	w.Observe(direction, "ip", ip, tls)
}

// Delivery takes a delivery the log follower read: delivered mail, by
// recipient domain.
func (w *Downgrades) Delivery(d *maillog.Delivery) {
	if d.Status == maillog.StatusSent {
		w.Observe(measure.Outbound, "domain", d.Domain, d.TLSVersion != "")
	}
}
