package geoip

import (
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

// writeMMDB writes an MMDB database of type kind mapping each CIDR to its
// record, as MaxMind's GeoLite2 files lay them out.
func writeMMDB(t *testing.T, kind string, records map[string]mmdbtype.Map) string {
	t.Helper()
	tree, err := mmdbwriter.New(mmdbwriter.Options{DatabaseType: kind, RecordSize: 24, IncludeReservedNetworks: true})
	if err != nil {
		t.Fatal(err)
	}
	for cidr, rec := range records {
		_, n, err := net.ParseCIDR(cidr)
		if err != nil {
			t.Fatal(err)
		}
		if err := tree.Insert(n, rec); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), kind+".mmdb")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := tree.WriteTo(f); err != nil {
		t.Fatal(err)
	}
	return path
}

func asnDB(t *testing.T) string {
	return writeMMDB(t, "GeoLite2-ASN", map[string]mmdbtype.Map{
		"192.0.2.0/24": {"autonomous_system_number": mmdbtype.Uint32(64500),
			"autonomous_system_organization": mmdbtype.String("Example Transit")},
		"2001:db8::/32": {"autonomous_system_number": mmdbtype.Uint32(64501),
			"autonomous_system_organization": mmdbtype.String("Example v6")},
	})
}

func countryDB(t *testing.T) string {
	return writeMMDB(t, "GeoLite2-Country", map[string]mmdbtype.Map{
		"192.0.2.0/25":    {"country": mmdbtype.Map{"iso_code": mmdbtype.String("DE")}},
		"198.51.100.0/24": {"country": mmdbtype.Map{"iso_code": mmdbtype.String("US")}},
	})
}

func TestLookup(t *testing.T) {
	db, err := Open(asnDB(t), countryDB(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, c := range []struct {
		ip      string
		asn     uint
		org, cc string
	}{
		{"192.0.2.1", 64500, "Example Transit", "DE"},
		{"192.0.2.200", 64500, "Example Transit", ""}, // in the AS, outside the country's /25
		{"198.51.100.7", 0, "", "US"},
		{"2001:db8::25", 64501, "Example v6", ""},
		{"203.0.113.1", 0, "", ""}, // in neither
		{"not an address", 0, "", ""},
		{"", 0, "", ""},
	} {
		asn, org, cc := db.Lookup(c.ip)
		if asn != c.asn || org != c.org || cc != c.cc {
			t.Errorf("Lookup(%q) = %d %q %q, want %d %q %q", c.ip, asn, org, cc, c.asn, c.org, c.cc)
		}
		if got := db.Country(c.ip); got != c.cc {
			t.Errorf("Country(%q) = %q, want %q", c.ip, got, c.cc)
		}
	}
}

// TestOneDatabase: either database may be left out; a nil DB answers
// nothing, as the commands run without --geoip.
func TestOneDatabase(t *testing.T) {
	countryOnly, err := Open("", countryDB(t))
	if err != nil {
		t.Fatal(err)
	}
	defer countryOnly.Close()
	if asn, org, cc := countryOnly.Lookup("192.0.2.1"); asn != 0 || org != "" || cc != "DE" {
		t.Errorf("country only: %d %q %q", asn, org, cc)
	}
	asnOnly, err := Open(asnDB(t), "")
	if err != nil {
		t.Fatal(err)
	}
	defer asnOnly.Close()
	if asn, _, cc := asnOnly.Lookup("192.0.2.1"); asn != 64500 || cc != "" {
		t.Errorf("AS only: %d %q", asn, cc)
	}
	none, err := Open("", "")
	if err != nil {
		t.Fatal(err)
	}
	var null *DB
	for _, db := range []*DB{none, null} {
		if asn, org, cc := db.Lookup("192.0.2.1"); asn != 0 || org != "" || cc != "" {
			t.Errorf("no database: %d %q %q", asn, org, cc)
		}
		if err := db.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}
}

// TestOpenErrors: a path that is not an MMDB file is an error naming the
// database, for either one.
func TestOpenErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.mmdb")
	garbage := filepath.Join(t.TempDir(), "garbage.mmdb")
	if err := os.WriteFile(garbage, []byte("not a MaxMind database"), 0o644); err != nil {
		t.Fatal(err)
	}
	good := asnDB(t)
	for _, c := range []struct{ asn, country string }{
		{missing, ""}, {garbage, ""}, {"", missing}, {good, garbage},
	} {
		if db, err := Open(c.asn, c.country); err == nil {
			db.Close()
			t.Errorf("Open(%q, %q): no error", c.asn, c.country)
		}
	}
}
