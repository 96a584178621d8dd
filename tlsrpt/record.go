package tlsrpt

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// Record is a parsed _smtp._tls TXT record (RFC 8460 3).
type Record struct {
	RUA []*url.URL // mailto: and https: destinations, in record order
}

// Errors of ParseRecord.
var (
	ErrNotTLSRPT     = errors.New("tlsrpt: not a TLSRPTv1 record")
	ErrInvalidRecord = errors.New("tlsrpt: invalid record")
)

// ParseRecord reads "v=TLSRPTv1; rua=mailto:a@example.org,https://…".
// v must come first (RFC 8460 3); rua is required; URIs other than
// mailto: and https: are skipped, as the RFC tells senders to, and a
// record left without any is invalid.
func ParseRecord(txt string) (*Record, error) {
	parts := strings.Split(txt, ";")
	k, v, _ := strings.Cut(parts[0], "=")
	if strings.TrimSpace(k) != "v" || strings.TrimSpace(v) != "TLSRPTv1" {
		return nil, ErrNotTLSRPT
	}
	rec := &Record{}
	seen := false
	for _, p := range parts[1:] {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		k, v, ok := strings.Cut(p, "=")
		if !ok {
			return nil, fmt.Errorf("%w: %.40q", ErrInvalidRecord, p)
		}
		if strings.TrimSpace(k) != "rua" || seen {
			continue
		}
		seen = true
		for _, u := range strings.Split(v, ",") {
			pu, err := url.Parse(strings.TrimSpace(u))
			if err != nil {
				continue
			}
			switch strings.ToLower(pu.Scheme) {
			case "mailto":
				if strings.Contains(pu.Opaque, "@") {
					rec.RUA = append(rec.RUA, pu)
				}
			case "https":
				if pu.Host != "" {
					rec.RUA = append(rec.RUA, pu)
				}
			}
		}
	}
	if len(rec.RUA) == 0 {
		return nil, fmt.Errorf("%w: no usable rua", ErrInvalidRecord)
	}
	return rec, nil
}

// FindRecord picks the one TLSRPTv1 record among a name's TXT records;
// none, or more than one, is no record (RFC 8460 3).
func FindRecord(txts []string) (*Record, error) {
	var found *Record
	n := 0
	var lastErr error
	for _, t := range txts {
		r, err := ParseRecord(t)
		if errors.Is(err, ErrNotTLSRPT) {
			continue
		}
		n++
		found, lastErr = r, err
	}
	switch {
	case n == 0:
		return nil, ErrNotTLSRPT
	case n > 1:
		return nil, fmt.Errorf("%w: %d records", ErrInvalidRecord, n)
	}
	return found, lastErr
}
