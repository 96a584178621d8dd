package corpus

import (
	"strings"
	"testing"

	"github.com/miekg/dns"
)

func TestCorpusBuilds(t *testing.T) {
	zp := dns.NewZoneParser(strings.NewReader(Zone()), "", "")
	zp.SetDefaultTTL(300)
	n := 0
	for _, ok := zp.Next(); ok; _, ok = zp.Next() {
		n++
	}
	if err := zp.Err(); err != nil {
		t.Fatal(err)
	}
	cs := Cases()
	names := map[string]bool{}
	for _, c := range cs {
		if names[c.Name] {
			t.Errorf("duplicate case %s", c.Name)
		}
		names[c.Name] = true
		if !strings.Contains(string(c.Message), "\r\n\r\n") {
			t.Errorf("%s: no header/body separator", c.Name)
		}
	}
	t.Logf("%d records, %d cases", n, len(cs))
}

func TestUniqueClientIPs(t *testing.T) {
	seen := map[string]string{}
	for _, c := range Cases() {
		if other, ok := seen[c.ClientIP]; ok {
			t.Errorf("%s and %s share %s: tests map records back by client IP", c.Name, other, c.ClientIP)
		}
		seen[c.ClientIP] = c.Name
	}
}
