package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/snowrain/snowrain/config"
	"github.com/snowrain/snowrain/measure"
	"github.com/snowrain/snowrain/measure/maillog"
	"github.com/snowrain/snowrain/metrics"
	"github.com/snowrain/snowrain/milter"
	"github.com/snowrain/snowrain/policy"
	"github.com/snowrain/snowrain/resolver"
)

// newEngine builds the policy engine the configuration describes; an
// invalid override is an error. The imported policies are loaded once the
// store can be read (at once, unless serve's PostgreSQL is not reachable
// yet: Watch loads them then).
func newEngine(cfg config.Config, res resolver.Resolver, store *measure.Store, log *slog.Logger) (*policy.Engine, error) {
	fetch := &policy.STSFetcher{Resolver: res, Port: cfg.Policy.MTASTSPort}
	if cfg.Policy.MTASTSRoots != "" {
		pem, err := os.ReadFile(cfg.Policy.MTASTSRoots)
		if err != nil {
			return nil, fmt.Errorf("mta_sts_roots: %w", err)
		}
		fetch.Roots = x509.NewCertPool()
		if !fetch.Roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("mta_sts_roots: no certificate in %s", cfg.Policy.MTASTSRoots)
		}
	}
	pc := policy.ConfigFrom(cfg)
	if err := pc.Validate(); err != nil {
		return nil, fmt.Errorf("policy.overrides: %w", err)
	}
	return policy.NewEngine(pc, res, fetch, store, log), nil
}

// policyReloads are what SIGHUP re-applies to the running policy
// services (reloadPolicy, called from serve's reload).
var policyReloads struct {
	sync.Mutex
	fns []func(config.Config, *slog.Logger)
}

func onPolicyReload(fn func(config.Config, *slog.Logger)) {
	policyReloads.Lock()
	defer policyReloads.Unlock()
	policyReloads.fns = append(policyReloads.fns, fn)
}

// reloadPolicy applies cfg's policy settings to the running engine and
// inbound service, and logs the ones that need a restart.
func reloadPolicy(cfg config.Config, log *slog.Logger) {
	policyReloads.Lock()
	defer policyReloads.Unlock()
	for _, fn := range policyReloads.fns {
		fn(cfg, log)
	}
}

// startPolicy runs the socketmap, the inbound delegation service, the
// MTA-STS refresher and downgrade detection; the returned function stops
// them.
func startPolicy(ctx context.Context, d *instance, cfg config.Config, store *measure.Store, res resolver.Resolver,
	writer *measure.Writer, filter *milter.Filter, mt *metrics.Metrics, log *slog.Logger) (func(), func(*maillog.Delivery), error) {
	var closers []func()
	stop := func() {
		for _, c := range closers {
			c()
		}
	}
	downs := &policy.Downgrades{Detector: &policy.Detector{N: cfg.Policy.DowngradeN, M: cfg.Policy.DowngradeM},
		Recorder: writer, OnDowngrade: func(direction measure.Direction, kind string) {
			mt.Downgrades.WithLabelValues(string(direction), kind).Inc()
		}}
	filter.Watch = downs.Message
	onDelivery := downs.Delivery
	// SIGHUP: the engine and the inbound service take what they can;
	// restartSettings names the rest.
	d.onReload(reloader{name: "policy", keys: []string{"policy."},
		apply: func(_, next config.Config) error { reloadPolicy(next, log); return nil }})
	started := cfg
	onPolicyReload(func(next config.Config, log *slog.Logger) {
		for _, s := range restartSettings(started, next) {
			log.Warn("policy setting changed; it takes effect at the next restart", "setting", s)
		}
	})
	if cfg.Policy.Socket != "" {
		engine, err := newEngine(cfg, res, store, log)
		if err != nil {
			return stop, onDelivery, err
		}
		engine.SetRecorder(writer)
		engine.Classes = func(c string) { mt.Policy.WithLabelValues("socketmap", c).Inc() }
		srv := &policy.SocketmapServer{Engine: engine, Log: log, IdleTimeout: cfg.Policy.IdleTimeout.Duration,
			ReadTimeout: cfg.Policy.ReadTimeout.Duration,
			Classes:     func(c string) { mt.Policy.WithLabelValues("socketmap", c).Inc() }}
		if err := d.start("socketmap", cfg.Policy.Socket, srv.Serve); err != nil {
			engine.Close()
			return stop, onDelivery, fmt.Errorf("policy socket: %w", err)
		}
		closers = append(closers, func() { srv.Close(); engine.Close() })
		go refreshSTS(ctx, engine, cfg.Policy.Refresh.Duration, log)
		go engine.Watch(ctx, policy.DefaultWatchInterval)
		onPolicyReload(func(next config.Config, log *slog.Logger) {
			if err := engine.SetConfig(policy.ConfigFrom(next)); err != nil {
				log.Error("policy reload failed; keeping the running policy configuration", "err", err)
			}
		})
		log.Info("TLS policy socketmap serving", "socket", cfg.Policy.Socket)
	}
	in := cfg.Policy.Inbound
	inbound := &policy.Inbound{Log: log, Store: store, Recorder: writer,
		IdleTimeout: cfg.Policy.IdleTimeout.Duration, ReadTimeout: cfg.Policy.ReadTimeout.Duration,
		OnDecision: func(_, action string) {
			verb, _, _ := strings.Cut(action, " ")
			mt.Policy.WithLabelValues(string(measure.Inbound), verb).Inc()
		},
		Classes: func(c string) { mt.Policy.WithLabelValues(string(measure.Inbound), c).Inc() }}
	if err := inbound.SetConfig(policy.InboundConfigFrom(cfg)); err != nil {
		return stop, onDelivery, err
	}
	onPolicyReload(func(next config.Config, log *slog.Logger) {
		if err := inbound.SetConfig(policy.InboundConfigFrom(next)); err != nil {
			log.Error("inbound policy reload failed; keeping the running requirements", "err", err)
		}
	})
	if in.Milter {
		filter.Inbound = inbound.Check
	}
	if in.Socket != "" {
		if err := d.start("inbound", in.Socket, inbound.Serve); err != nil {
			return stop, onDelivery, fmt.Errorf("inbound policy socket: %w", err)
		}
		closers = append(closers, func() { inbound.Close() })
		log.Info("inbound TLS policy service serving", "socket", in.Socket)
	}
	return stop, onDelivery, nil
}

// restartSettings names the policy settings that differ between a and b
// and that a reload cannot apply.
func restartSettings(a, b config.Config) []string {
	var out []string
	pa, pb := a.Policy, b.Policy
	for _, s := range []struct {
		name    string
		changed bool
	}{
		{"policy.socket", pa.Socket != pb.Socket},
		{"policy.inbound.socket", pa.Inbound.Socket != pb.Inbound.Socket},
		{"policy.inbound.milter", pa.Inbound.Milter != pb.Inbound.Milter},
		{"policy.mta_sts_roots", pa.MTASTSRoots != pb.MTASTSRoots},
		{"policy.mta_sts_port", pa.MTASTSPort != pb.MTASTSPort},
		{"policy.refresh", pa.Refresh != pb.Refresh},
		{"policy.idle_timeout", pa.IdleTimeout != pb.IdleTimeout},
		{"policy.read_timeout", pa.ReadTimeout != pb.ReadTimeout},
		{"policy.downgrade_n", pa.DowngradeN != pb.DowngradeN},
		{"policy.downgrade_m", pa.DowngradeM != pb.DowngradeM},
	} {
		if s.changed {
			out = append(out, s.name)
		}
	}
	return out
}

func refreshSTS(ctx context.Context, e *policy.Engine, every time.Duration, log *slog.Logger) {
	if every <= 0 {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if n, err := e.RefreshSTS(ctx, 2*every); err != nil {
				log.Warn("MTA-STS refresh", "err", err)
			} else if n > 0 {
				log.Info("MTA-STS policies refreshed", "count", n)
			}
		}
	}
}

// The options of the configuration that every policy subcommand takes:
// the database, and the resolver the engine is built with.
var policyOptions = []string{"db", "dns", "dns-timeout"}

// policyCheckFlags is `snowrain policy check DOMAIN`, with the engine's
// options.
func policyCheckFlags(fs *flag.FlagSet) runFunc {
	cf := bindConfig(fs, append(policyOptions, "policy-dane", "policy-mta-sts", "mta-sts-roots", "mta-sts-port",
		"policy-budget", "policy-temp-on-error", "policy-learn", "policy-learn-min", "policy-learn-days")...)
	return func(c *call) error {
		return withEngine(c, cf, true, func(ctx context.Context, engine *policy.Engine) error {
			d := engine.Decide(ctx, c.args[0])
			for _, s := range d.Steps {
				fmt.Fprintln(c.stdout, s)
			}
			answer, _ := d.Reply()
			if answer == "NOTFOUND " {
				answer = "NOTFOUND (Postfix's own smtp_tls_security_level applies)"
			}
			fmt.Fprintf(c.stdout, "\n%s: %s (source %s, %s)\n", d.Domain, answer, d.Source, d.Latency.Round(time.Microsecond))
			if d.Err != nil {
				fmt.Fprintf(c.stdout, "errors: %v\n", d.Err)
			}
			return nil
		})
	}
}

// policyListFlags is `snowrain policy list` and `policy export`.
func policyListFlags(fs *flag.FlagSet) runFunc {
	cf := bindConfig(fs, policyOptions...)
	format := enumFlag(fs, "format", "csv", "output `FORMAT`: csv (domain,policy,source,note) or json", "csv", "json")
	return func(c *call) error {
		return withEngine(c, cf, true, func(ctx context.Context, engine *policy.Engine) error {
			list, err := engine.List(ctx)
			if err != nil {
				return err
			}
			if *format == "json" {
				enc := json.NewEncoder(c.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(list)
			}
			return policy.WriteCSV(c.stdout, list)
		})
	}
}

// policyForgetFlags is `snowrain policy forget DOMAIN`.
func policyForgetFlags(fs *flag.FlagSet) runFunc {
	cf := bindConfig(fs, policyOptions...)
	return func(c *call) error {
		return withEngine(c, cf, false, func(ctx context.Context, engine *policy.Engine) error {
			return engine.Forget(ctx, c.args[0])
		})
	}
}

// maxPolicyImport bounds a policy list read (STARTTLS Everywhere's whole
// list is under 1 MiB).
const maxPolicyImport = 64 << 20

// policyImportFlags is `snowrain policy import FILE`.
func policyImportFlags(fs *flag.FlagSet) runFunc {
	cf := bindConfig(fs, policyOptions...)
	input := inputFlag(fs, "input", "read the policies from `FILE` (- for standard input) instead of the FILE argument")
	return func(c *call) error {
		path := *input
		switch {
		case path != "" && len(c.args) > 0:
			return usagef("--input and a FILE argument: give one")
		case path == "" && len(c.args) == 0:
			return usagef("nothing to import: give FILE, or --input - for standard input")
		case path == "":
			path = c.args[0]
		}
		f, err := stdinOr(c, path)
		if err != nil {
			return err
		}
		data, err := io.ReadAll(io.LimitReader(f, maxPolicyImport+1))
		f.Close()
		if err != nil {
			return err
		}
		if len(data) > maxPolicyImport {
			return fmt.Errorf("%s: more than %d MiB: not a policy list", path, maxPolicyImport>>20)
		}
		list, err := policy.ParseImport(data)
		if err != nil {
			return err
		}
		origin := filepath.Base(path)
		if path == "-" {
			origin = "standard input"
		}
		return withEngine(c, cf, false, func(ctx context.Context, engine *policy.Engine) error {
			if err := engine.Import(ctx, list, origin); err != nil {
				return err
			}
			fmt.Fprintf(c.stdout, "imported %d policies from %s\n", len(list), origin)
			return nil
		})
	}
}

// withEngine runs fn with the policy engine the configuration and flags
// describe; readOnly opens the database read-only (check, list, export).
func withEngine(c *call, cf *configFlags, readOnly bool, fn func(context.Context, *policy.Engine) error) error {
	cfg, err := cf.load(c)
	if err != nil {
		return err
	}
	ctx := context.Background()
	store, res, err := openWithResolver(ctx, cfg, readOnly)
	if err != nil {
		return err
	}
	defer store.Close()
	engine, err := newEngine(cfg, res, store, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return err
	}
	defer engine.Close()
	// The engine logs a failed load and goes on (a daemon must); a
	// command says it.
	if err := engine.Reload(ctx); err != nil {
		return err
	}
	return fn(ctx, engine)
}
