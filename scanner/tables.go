package scanner

import (
	"context"
	"database/sql"
	"math"
	"math/big"
	"sort"

	"golang.org/x/net/publicsuffix"

	"github.com/snowrain/snowrain/auth"
)

// Summary aggregates a run's domain results into the paper's tables,
// reading the stored results one at a time.
type Summary struct {
	Domains, WithMX, Connected, STARTTLS int64
	Status                               map[string]int64 // Table 1 rows
	// Table 16: SPF and DMARC of the top-ranked domains.
	Top []TopDomain
	// Table 2: trust class × certificate match.
	Certs map[string]map[string]int64
	// Table 4: domains per mail provider (the MX's registered domain).
	Providers   map[string]int64
	ProviderTLS map[string]bool
	// Tables 19 and 20 (top-level and recursive), Figure 4.
	SPFDomains   int64
	SPFAll       map[string]int64
	SPFTop       map[string]int64
	SPFRecursive map[string]int64
	SPFErrors    map[string]int64
	SPFAddresses []float64 // log2 of permitted IPv4 addresses, per domain with SPF; -1: none
	// Table 18 (domains column), MTA-STS and DANE adoption.
	DMARC  map[string]int64
	MTASTS map[string]int64
	DANE   int64
	Errors map[string]int64
}

// Summarize reads run id's results.
func Summarize(ctx context.Context, db *sql.DB, id int64) (*Summary, error) {
	s := &Summary{Status: map[string]int64{}, Certs: map[string]map[string]int64{}, Providers: map[string]int64{}, ProviderTLS: map[string]bool{},
		SPFAll: map[string]int64{}, SPFTop: map[string]int64{}, SPFRecursive: map[string]int64{},
		SPFErrors: map[string]int64{}, DMARC: map[string]int64{}, MTASTS: map[string]int64{}, Errors: map[string]int64{}}
	if err := eachStored(ctx, db, "scan_domains", id, s.add); err != nil {
		return nil, err
	}
	sort.Float64s(s.SPFAddresses)
	return s, nil
}

// TopDomain is one row of Table 16.
type TopDomain struct {
	Rank               int
	Domain, SPF, DMARC string
}

// topN is how many top-ranked domains Table 16 lists.
const topN = 20

func (s *Summary) add(d *DomainResult) {
	s.Domains++
	s.Status[string(d.Status)]++
	if d.Rank > 0 {
		s.addTop(d)
	}
	if len(d.MX) > 0 {
		s.WithMX++
		provider, err := publicsuffix.EffectiveTLDPlusOne(d.MX[0].Host)
		if err != nil {
			provider = d.MX[0].Host
		}
		s.Providers[provider]++
		if d.STARTTLS {
			s.ProviderTLS[provider] = true
		}
	}
	if d.Connected {
		s.Connected++
	}
	if d.STARTTLS {
		s.STARTTLS++
		if s.Certs[string(d.Trust)] == nil {
			s.Certs[string(d.Trust)] = map[string]int64{}
		}
		s.Certs[string(d.Trust)][string(d.CertMatch)]++
	}
	if d.Error != "" {
		s.Errors[d.Error]++
	}
	if sp := d.SPF; sp != nil {
		if sp.ErrorClass == SPFNone {
			s.SPFErrors[string(SPFNone)]++
		} else {
			s.SPFDomains++
			s.SPFAll[orNone(sp.All)]++
			for k, n := range sp.TopTypes {
				s.SPFTop[k] += int64(n)
			}
			for k, n := range sp.Types {
				s.SPFRecursive[k] += int64(n)
			}
			if sp.ErrorClass != "" {
				s.SPFErrors[string(sp.ErrorClass)]++
			}
			if a, ok := new(big.Int).SetString(sp.Addrs4, 10); ok {
				s.SPFAddresses = append(s.SPFAddresses, Log2Addresses(a))
			}
		}
	}
	if d.DMARC != nil {
		s.DMARC[string(d.DMARC.Policy)]++
	}
	if d.MTASTS != nil {
		s.MTASTS[string(d.MTASTS.Mode)]++
	}
	for _, mx := range d.MX {
		if mx.TLSAValid {
			s.DANE++
			break
		}
	}
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func (s *Summary) addTop(d *DomainResult) {
	spf, dmarc := "-", "-"
	if d.SPF != nil && d.SPF.ErrorClass != SPFNone {
		spf = map[string]string{"-": "fail", "~": "soft fail", "?": "neutral", "+": "pass", "redirect": "redirect", "": "no all"}[d.SPF.All]
		if d.SPF.ErrorClass != "" {
			spf += " (" + string(d.SPF.ErrorClass) + ")"
		}
	}
	if d.DMARC != nil && d.DMARC.Policy != auth.PolicyAbsent {
		dmarc = string(d.DMARC.Policy)
	}
	s.Top = append(s.Top, TopDomain{d.Rank, d.Domain, spf, dmarc})
	sort.Slice(s.Top, func(i, j int) bool { return s.Top[i].Rank < s.Top[j].Rank })
	if len(s.Top) > topN {
		s.Top = s.Top[:topN]
	}
}

// Log2Addresses is log2(n), exact for powers of two (16 addresses: 4, not
// BitLen's 5), and -1 for no address at all.
func Log2Addresses(n *big.Int) float64 {
	if n.Sign() <= 0 {
		return -1
	}
	f, _ := new(big.Float).SetInt(n).Float64()
	return math.Log2(f) // exact for powers of two (math.Log2 uses Frexp)
}
