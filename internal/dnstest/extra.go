package dnstest

import (
	"slices"
	"strings"

	"github.com/miekg/dns"
)

// AddRR serves records built in code, for data a master file cannot
// carry as given (TXT strings with raw bytes, TXT records of no strings).
func (s *Server) AddRR(rrs ...dns.RR) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rr := range rrs {
		name := strings.ToLower(rr.Header().Name)
		s.records[name] = append(s.records[name], rr)
	}
}

// Silence makes queries for exactly name, of the given types (all when
// none), go unanswered, so the client times out.
func (s *Server) Silence(name string, qtypes ...uint16) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.silent[strings.ToLower(dns.Fqdn(name))] = qtypes
}

func (s *Server) isSilent(q dns.Question) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	types, ok := s.silent[strings.ToLower(q.Name)]
	return ok && (len(types) == 0 || slices.Contains(types, q.Qtype))
}
