package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/snowrain/snowrain/measure"
)

func report(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	dbPath := fs.String("db", "/var/lib/snowrain/snowrain.db", "SQLite database path")
	since := fs.String("since", "7d", "start: RFC 3339 time, YYYY-MM-DD, or an age like 24h or 7d")
	until := fs.String("until", "", "end (exclusive), same forms; default now")
	format := fs.String("format", "text", "text or json")
	if err := fs.Parse(args); err != nil {
		return err
	}
	now := time.Now()
	from, err := parseWhen(*since, now)
	if err != nil {
		return fmt.Errorf("--since: %w", err)
	}
	to := now.Add(time.Second)
	if *until != "" {
		if to, err = parseWhen(*until, now); err != nil {
			return fmt.Errorf("--until: %w", err)
		}
	}
	ctx := context.Background()
	store, err := measure.OpenReadOnly(ctx, *dbPath)
	if err != nil {
		return err
	}
	defer store.Close()
	r, err := store.BuildReport(ctx, from, to)
	if err != nil {
		return err
	}
	switch *format {
	case "json":
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	case "text":
		r.WriteText(out)
		return nil
	}
	return fmt.Errorf("--format %q: want text or json", *format)
}

// parseWhen reads an absolute time or an age before now.
func parseWhen(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.ParseInLocation("2006-01-02", s, time.Local); err == nil {
		return t, nil
	}
	d, err := parseAge(s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither a time nor an age", s)
	}
	return now.Add(-d), nil
}

// parseAge extends time.ParseDuration with a day unit: "400d".
func parseAge(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		var n int
		if _, err := fmt.Sscanf(days, "%d", &n); err != nil || n < 0 {
			return 0, fmt.Errorf("bad age %q", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	return time.ParseDuration(s)
}
