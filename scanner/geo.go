package scanner

import (
	"net/netip"

	"github.com/oschwald/maxminddb-golang/v2"
)

// Geo attributes addresses to an AS and a country from MMDB files
// (GeoLite2-ASN / GeoLite2-Country or DB-IP equivalents); either may be
// missing.
type Geo struct {
	asn, country *maxminddb.Reader
}

// OpenGeo opens the databases named (empty paths are skipped).
func OpenGeo(asnPath, countryPath string) (*Geo, error) {
	g := &Geo{}
	var err error
	if asnPath != "" {
		if g.asn, err = maxminddb.Open(asnPath); err != nil {
			return nil, err
		}
	}
	if countryPath != "" {
		if g.country, err = maxminddb.Open(countryPath); err != nil {
			return nil, err
		}
	}
	return g, nil
}

// Close closes the databases.
func (g *Geo) Close() {
	if g.asn != nil {
		g.asn.Close()
	}
	if g.country != nil {
		g.country.Close()
	}
}

// Lookup returns the AS number, its organisation and the country code.
func (g *Geo) Lookup(ip string) (asn uint, org, country string) {
	a, err := netip.ParseAddr(ip)
	if g == nil || err != nil {
		return 0, "", ""
	}
	if g.asn != nil {
		var rec struct {
			ASN uint   `maxminddb:"autonomous_system_number"`
			Org string `maxminddb:"autonomous_system_organization"`
		}
		if g.asn.Lookup(a).Decode(&rec) == nil {
			asn, org = rec.ASN, rec.Org
		}
	}
	if g.country != nil {
		var rec struct {
			Country struct {
				ISO string `maxminddb:"iso_code"`
			} `maxminddb:"country"`
		}
		if g.country.Lookup(a).Decode(&rec) == nil {
			country = rec.Country.ISO
		}
	}
	return asn, org, country
}
