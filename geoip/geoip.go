// Package geoip attributes IP addresses to an autonomous system and a
// country from MaxMind DB files (GeoLite2-ASN and GeoLite2-Country, or
// DB-IP's equivalents). It is snowrain's one reader of them: the sweeps
// name the AS and country of each host (Table 12), the exposure join and
// the report count mail by country (Tables 14 and 15, the country table).
package geoip

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/oschwald/maxminddb-golang/v2"
)

// DB is an AS database, a country database, or both. A nil *DB, or one
// without a database, answers every lookup with nothing.
type DB struct {
	asn, country *maxminddb.Reader
}

// Open opens the databases named; an empty path leaves that one out.
func Open(asnPath, countryPath string) (*DB, error) {
	d := &DB{}
	var err error
	if asnPath != "" {
		if d.asn, err = maxminddb.Open(asnPath); err != nil {
			return nil, fmt.Errorf("geoip: AS database: %w", err)
		}
	}
	if countryPath != "" {
		if d.country, err = maxminddb.Open(countryPath); err != nil {
			d.Close()
			return nil, fmt.Errorf("geoip: country database: %w", err)
		}
	}
	return d, nil
}

// Close closes the databases.
func (d *DB) Close() error {
	if d == nil {
		return nil
	}
	var errs []error
	for _, r := range []*maxminddb.Reader{d.asn, d.country} {
		if r != nil {
			errs = append(errs, r.Close())
		}
	}
	return errors.Join(errs...)
}

// asnRecord is the part of a GeoLite2-ASN record read.
type asnRecord struct {
	ASN uint   `maxminddb:"autonomous_system_number"`
	Org string `maxminddb:"autonomous_system_organization"`
}

// countryRecord is the part of a GeoLite2-Country record read.
type countryRecord struct {
	Country struct {
		ISO string `maxminddb:"iso_code"`
	} `maxminddb:"country"`
}

// Lookup returns the AS number and organisation and the ISO 3166 country
// code of ip; what a database does not hold (or a missing database, or
// an ip that does not parse) is 0 or "".
func (d *DB) Lookup(ip string) (asn uint, org, country string) {
	a, err := netip.ParseAddr(ip)
	if d == nil || err != nil {
		return 0, "", ""
	}
	if d.asn != nil {
		var rec asnRecord
		if d.asn.Lookup(a).Decode(&rec) == nil {
			asn, org = rec.ASN, rec.Org
		}
	}
	if d.country != nil {
		var rec countryRecord
		if d.country.Lookup(a).Decode(&rec) == nil {
			country = rec.Country.ISO
		}
	}
	return asn, org, country
}

// Country returns the ISO 3166 country code of ip, or "".
func (d *DB) Country(ip string) string {
	_, _, cc := d.Lookup(ip)
	return cc
}
