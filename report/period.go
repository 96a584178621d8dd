// Package report builds the weekly report an admin reads on Monday: the
// paper's Gmail tables (Figure 3, Tables 3, 8, 17, 18, 21) for their own
// mail, per peer domain and per country, each with the change against the
// previous period, rendered as text, Markdown, JSON, CSV or HTML.
package report

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Period is a half-open interval [Since, Until).
type Period struct {
	Since, Until time.Time
}

// Previous is the period of the same length just before p.
func (p Period) Previous() Period {
	return Period{Since: p.Since.Add(-p.Until.Sub(p.Since)), Until: p.Since}
}

// LastFullWeek is the ISO week (Monday to Monday, in loc) before the one
// holding now.
func LastFullWeek(now time.Time, loc *time.Location) Period {
	now = now.In(loc)
	day := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, loc)
	monday := day.AddDate(0, 0, -((int(day.Weekday()) + 6) % 7))
	return Period{Since: monday.AddDate(0, 0, -7), Until: monday}
}

// ParseWeek reads an ISO week such as 2026-W47.
func ParseWeek(s string, loc *time.Location) (Period, error) {
	y, w, ok := strings.Cut(strings.ToUpper(s), "-W")
	year, err1 := strconv.Atoi(y)
	week, err2 := strconv.Atoi(w)
	if !ok || err1 != nil || err2 != nil || week < 1 || week > 53 {
		return Period{}, fmt.Errorf("report: week %q: want YYYY-Www", s)
	}
	// January 4th is always in week 1.
	jan4 := time.Date(year, 1, 4, 0, 0, 0, 0, loc)
	monday := jan4.AddDate(0, 0, -((int(jan4.Weekday())+6)%7)+7*(week-1))
	if _, wk := monday.ISOWeek(); wk != week {
		return Period{}, fmt.Errorf("report: %d has no week %d", year, week)
	}
	return Period{Since: monday, Until: monday.AddDate(0, 0, 7)}, nil
}
