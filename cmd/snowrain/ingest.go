package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"

	"github.com/snowrain/snowrain/config"
	"github.com/snowrain/snowrain/measure"
	"github.com/snowrain/snowrain/measure/maillog"
	"github.com/snowrain/snowrain/metrics"
)

// ingestFlags is `snowrain ingest`: MTA logs (plain or gzip) read once.
func ingestFlags(fs *flag.FlagSet) runFunc {
	dbPath := dbFlag(fs)
	input := inputFlag(fs, "input", "read the log from `FILE` (- for standard input), as well as the FILE arguments")
	return func(c *call) error {
		files := c.args
		if *input != "" {
			files = append([]string{*input}, files...)
		}
		if len(files) == 0 {
			return usagef("nothing to read: give FILE arguments, or --input - for standard input")
		}
		ctx := context.Background()
		store, err := measure.Open(ctx, *dbPath)
		if err != nil {
			return err
		}
		defer store.Close()
		for _, path := range files {
			f, err := stdinOr(c, path)
			if err != nil {
				return err
			}
			p := maillog.NewParser()
			n, err := store.IngestReader(ctx, f, p)
			f.Close()
			name := path
			if path == "-" {
				name = "standard input"
			}
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			fmt.Fprintf(c.stdout, "%s: %d delivery attempts (one per recipient and status line); lines by class: %s\n", name, n, formatCounts(p.Counts()))
		}
		return nil
	}
}

func formatCounts(m map[string]int64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	s := ""
	for _, k := range keys {
		s += fmt.Sprintf("%s=%d ", k, m[k])
	}
	return s
}

// startFollowers follows the configured MTA log or journal until ctx
// ends, once the store can be written (serve's PostgreSQL may not answer
// yet: the log waits, it is read later from where it was left).
func startFollowers(ctx context.Context, cfg config.Config, store *measure.Store, mt *metrics.Metrics,
	onDelivery func(*maillog.Delivery), log *slog.Logger) *sync.WaitGroup {
	var wg sync.WaitGroup
	ready := func() bool {
		select {
		case <-store.Ready():
			return true
		case <-ctx.Done():
			return false
		}
	}
	if cfg.Maillog != "" {
		p := maillog.NewParser()
		mt.WatchMaillog(p)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !ready() {
				return
			}
			fw := &measure.Follower{Store: store, Path: cfg.Maillog, Parser: p, Log: log, OnDelivery: onDelivery}
			if err := fw.Run(ctx); err != nil {
				log.Error("maillog follower stopped", "path", cfg.Maillog, "err", err)
			}
		}()
	}
	if cfg.Journal {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !ready() {
				return
			}
			// The cursor is this host's: in its state directory, not
			// beside a database the fleet shares.
			if err := followJournal(ctx, store, filepath.Join(cfg.State(), "journal.cursor"), log); err != nil {
				log.Error("journal follower stopped", "err", err)
			}
		}()
	}
	return &wg
}

// followJournal reads `journalctl --follow` for the MTAs' delivery agents;
// journalctl's cursor file keeps the position across restarts.
func followJournal(ctx context.Context, store *measure.Store, cursor string, log *slog.Logger) error {
	cmd := exec.CommandContext(ctx, "journalctl", "--follow", "--output=short-iso", "--no-pager",
		"--cursor-file="+cursor, "-t", "postfix/smtp", "-t", "sendmail", "-t", "sm-mta")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("journalctl: %w", err)
	}
	p := maillog.NewParser()
	rd := &measure.LogReader{Parser: p}
	lr := maillog.NewLineReader(stdout, maillog.MaxLine)
	for {
		line, _, err := lr.Next()
		if errors.Is(err, maillog.ErrLineTooLong) {
			p.Overlong() // dropped while reading: an endless line costs no memory
			continue
		}
		if err != nil {
			break
		}
		if rd.Feed(string(line)) {
			if err := rd.Flush(context.WithoutCancel(ctx), store, nil); err != nil {
				log.Error("journal: writing deliveries", "err", err)
			}
		}
	}
	return cmd.Wait()
}
