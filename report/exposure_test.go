package report

import (
	"context"
	"testing"

	"github.com/snowrain/snowrain/geoip"
)

// TestExposureJoin joins known stripping and falsified-answer addresses
// with the generated store's inbound mail.
func TestExposureJoin(t *testing.T) {
	s := generate(t)
	geo, err := geoip.Open("", countryDB(t))
	if err != nil {
		t.Fatal(err)
	}
	defer geo.Close()
	// In the generator, 192.0.2.10 (DE) sends for big.example and
	// 198.51.100.20 (US) for plain.example; each sends 2 of every 5
	// messages of its day… here: count them from the store itself.
	stripping := map[string]bool{"192.0.2.10": true}
	falsified := map[string]bool{"198.51.100.20": true}
	e, err := BuildExposure(context.Background(), s, week47, stripping, falsified, geo)
	if err != nil {
		t.Fatal(err)
	}
	var de, us ExposedCountry
	for _, c := range e.Countries {
		switch c.Code {
		case "DE":
			de = c
		case "US":
			us = c
		}
	}
	var fromStrip, fromFalse int64
	if err := s.DB.QueryRow(`SELECT COUNT(*) FROM messages WHERE client_ip = '192.0.2.10' AND received_at >= ? AND received_at < ?`,
		week47.Since.Unix(), week47.Until.Unix()).Scan(&fromStrip); err != nil {
		t.Fatal(err)
	}
	if err := s.DB.QueryRow(`SELECT COUNT(*) FROM messages WHERE client_ip = '198.51.100.20' AND received_at >= ? AND received_at < ?`,
		week47.Since.Unix(), week47.Until.Unix()).Scan(&fromFalse); err != nil {
		t.Fatal(err)
	}
	if de.FromStripping != fromStrip || us.FromFalse != fromFalse || fromStrip == 0 || fromFalse == 0 {
		t.Errorf("DE %+v US %+v, want %d from stripping and %d from falsified", de, us, fromStrip, fromFalse)
	}
	tables := e.Tables()
	if len(tables[0].Rows) != 1 || tables[0].Rows[0][0] != "DE" || len(tables[1].Rows) != 1 || tables[1].Rows[0][0] != "US" {
		t.Errorf("tables 14/15: %v %v", tables[0].Rows, tables[1].Rows)
	}
	if len(e.Domains) != 2 || e.Domains[0].Domain != "big.example" {
		t.Errorf("domains %+v", e.Domains)
	}
}
