package report

import (
	"testing"
	"time"
)

func TestPeriods(t *testing.T) {
	p, err := ParseWeek("2026-W47", time.UTC)
	if err != nil || p.Since != time.Date(2026, 11, 16, 0, 0, 0, 0, time.UTC) || p.Until.Sub(p.Since) != 7*24*time.Hour {
		t.Errorf("2026-W47 = %v, %v", p, err)
	}
	if p, _ := ParseWeek("2026-W01", time.UTC); p.Since != time.Date(2025, 12, 29, 0, 0, 0, 0, time.UTC) {
		t.Errorf("2026-W01 starts %v", p.Since)
	}
	for _, bad := range []string{"2026-47", "2026-W54", "x-W1", "2025-W53"} {
		if _, err := ParseWeek(bad, time.UTC); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
	now := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC) // a Wednesday in W48
	if lw := LastFullWeek(now, time.UTC); lw.Since != time.Date(2026, 11, 16, 0, 0, 0, 0, time.UTC) {
		t.Errorf("last full week %v", lw)
	}
	if prev := p.Previous(); prev.Until != p.Since || prev.Since != p.Since.AddDate(0, 0, -7) {
		t.Errorf("previous %v", prev)
	}
}
