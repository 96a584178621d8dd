package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/snowrain/snowrain/config"
	"github.com/snowrain/snowrain/internal/supervise"
	"github.com/snowrain/snowrain/measure"
	"github.com/snowrain/snowrain/metrics"
	"github.com/snowrain/snowrain/milter"
	"github.com/snowrain/snowrain/resolver"
)

// loadConfig reads --config (default /etc/snowrain/snowrain.conf, optional
// unless named) and applies the flags over it.
func loadConfig(name string, args []string, extra ...func(*flag.FlagSet)) (config.Config, string, error) {
	probe := config.Default()
	path := config.DefaultPath
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.StringVar(&path, "config", path, "configuration file (TOML)")
	probe.Bind(fs)
	for _, f := range extra {
		f(fs)
	}
	if err := fs.Parse(args); err != nil {
		return probe, "", err
	}
	named := false
	fs.Visit(func(f *flag.Flag) { named = named || f.Name == "config" })
	cfg := config.Default()
	if err := cfg.Load(path, named); err != nil {
		return cfg, path, err
	}
	fs2 := flag.NewFlagSet(name, flag.ContinueOnError)
	fs2.String("config", path, "")
	fs2.SetOutput(io.Discard)
	cfg.Bind(fs2)
	for _, f := range extra {
		f(fs2)
	}
	if err := fs2.Parse(args); err != nil {
		return cfg, path, err
	}
	return cfg, path, cfg.Validate()
}

// instance is a running `snowrain serve`: its configuration, the parts
// SIGHUP reconfigures and the supervisor of its listeners.
type instance struct {
	path      string
	args      []string
	started   config.Config // as at start: settings that need a restart keep these values
	cfg       config.Config // as last applied
	logs      *logging
	log       *slog.Logger
	mt        *metrics.Metrics
	sup       *supervise.Supervisor
	reloaders []reloader
}

func (d *instance) onReload(r reloader) { d.reloaders = append(d.reloaders, r) }

func checkFlag(check *bool) func(*flag.FlagSet) {
	return func(fs *flag.FlagSet) {
		fs.BoolVar(check, "check", false, "check the configuration, database and sockets; exit 0 (usable) or 1")
	}
}

func serve(args []string) error {
	var check bool
	cfg, path, err := loadConfig("serve", args, checkFlag(&check))
	if err != nil {
		if check {
			fmt.Fprintf(os.Stdout, "FAIL  configuration %s: %v\n", path, err)
		}
		return err
	}
	if check {
		return runCheck(context.Background(), cfg, path, os.Stdout)
	}
	tuneGC()
	// Signals from the start: a SIGTERM while starting up is handled once
	// serving, not a kill that skips the flush.
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sig)
	logs := newLogging(cfg, os.Stderr)
	defer logs.close()
	log := logs.Logger
	slog.SetDefault(log)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()

	// The lock first: a second serve touches neither the database nor
	// the sockets of a running one.
	lock, err := lockInstance(cfg.DB)
	if err != nil {
		return err
	}
	defer lock.Close()
	// Mail flows whether or not a PostgreSQL server answers now: the
	// store connects and migrates in the background until it does, and
	// records wait in the writer's queue meanwhile.
	store, err := measure.OpenServing(ctx, cfg.DB, log)
	if err != nil {
		return err
	}
	defer store.Close()
	store.Node = cfg.Node // every record and rollup row names this node
	if store.IsReady() {
		if err := checkDBWritable(ctx, store); err != nil {
			return err
		}
	} else {
		go func() {
			select {
			case <-store.Ready():
			case <-ctx.Done():
				return
			}
			if err := checkDBWritable(ctx, store); err != nil && ctx.Err() == nil {
				log.Error("database reached but not writable: records are dropped", "err", err)
			}
		}()
	}
	mt := metrics.New()
	d := &instance{path: path, args: args, started: cfg, cfg: cfg, logs: logs, log: log, mt: mt,
		sup: supervise.New(log)}
	d.sup.OnAcceptError = func(name, errno string) { mt.AcceptErrors.WithLabelValues(name, errno).Inc() }
	d.sup.OnRestart = func(name string) { mt.Restarts.WithLabelValues(name).Inc() }
	wc := measure.WriterConfigFrom(cfg)
	wc.Logger = log
	writer := measure.NewWriter(store, wc)
	mt.WatchWriter(writer)
	go watchStore(ctx, store, writer, d.sup)
	res, err := newSwapResolver(cfg, mt)
	if err != nil {
		return err
	}
	filter := milter.NewFilter(milter.ConfigFrom(cfg), res, writer, mt, log)
	d.registerReloaders(res, filter)

	var msrv *metrics.Server
	if cfg.Metrics != "" {
		msrv = mt.NewServer(metrics.ServerConfig{}, func() (any, bool) { return d.sup.Status() })
		if err := d.start("metrics", "inet:"+cfg.Metrics, msrv.Serve); err != nil {
			d.sup.Stop()
			return fmt.Errorf("metrics: %w", err)
		}
	}
	stopPolicy, onDelivery, err := startPolicy(ctx, d, cfg, store, res, writer, filter, mt, log)
	if err != nil {
		d.sup.Stop()
		return err
	}
	stopPolicy = sync.OnceFunc(stopPolicy)
	defer stopPolicy()
	// The milter after the policy services: each MTA connection negotiates
	// whether MAIL FROM waits for the milter's reply, which it must when
	// startPolicy gave the filter the inbound TLS check.
	srv := filter.NewServer()
	if err := d.start("milter", cfg.Milter, srv.Serve); err != nil {
		d.sup.Stop()
		return fmt.Errorf("milter socket: %w", err)
	}
	followers := startFollowers(ctx, cfg, store, mt, onDelivery, log)
	log.Info("snowrain serving", "milter", cfg.Milter, "db", store.Path, "node", store.Node, "dns", res.Servers(), "metrics", cfg.Metrics,
		"components", strings.Join(d.sup.Names(), ","))
	printPostfixHint(cfg)

	var fatal error
	for {
		select {
		case s := <-sig:
			if s == syscall.SIGHUP {
				d.reload()
				continue
			}
			log.Info("shutting down", "signal", s.String())
		case fatal = <-d.sup.Fatal():
			log.Error("shutting down: a listener cannot be kept serving", "err", fatal)
		}
		break
	}
	d.sup.Stop()
	stop()
	followers.Wait()
	err = shutdown(d.cfg, srv, msrv, writer, log)
	stopPolicy()
	// Servers still draining sessions (an idle inbound policy client)
	// do not hold the exit.
	wait, cancel := context.WithTimeout(context.Background(), d.cfg.DrainTimeout.Duration)
	defer cancel()
	if d.sup.Wait(wait) != nil {
		log.Warn("listeners still draining at exit")
	}
	if fatal != nil {
		return fatal
	}
	return err
}

// start opens addr and serves it under the supervisor; errors here are
// startup errors.
func (d *instance) start(name, addr string, serveFn func(net.Listener) error) error {
	c := d.cfg
	c.Milter = addr
	ln, err := listen(c)
	if err != nil {
		return err
	}
	d.sup.Start(supervise.Service{Name: name, Addr: addr, Serve: serveFn, Check: checkListener,
		Listen: func() (net.Listener, error) { return listen(c) }}, ln)
	return nil
}

// registerReloaders lists what SIGHUP changes without a restart.
func (d *instance) registerReloaders(res *swapResolver, filter *milter.Filter) {
	d.onReload(reloader{name: "log level", keys: []string{"log_level"},
		apply: func(_, cfg config.Config) error { return d.logs.level.UnmarshalText([]byte(cfg.LogLevel)) }})
	d.onReload(reloader{name: "resolver", keys: []string{"dns", "dns_timeout", "dns_cache_size"},
		apply: func(old, cfg config.Config) error { return reloadResolver(res, old, cfg, d.mt, d.log) }})
	d.onReload(reloader{name: "milter", keys: []string{"authserv_id", "submission_daemons", "internal_networks",
		"max_signatures", "check_helo", "store_localparts", "dns_budget", "enforce."},
		apply: func(_, cfg config.Config) error { filter.SetConfig(milter.ConfigFrom(cfg)); return nil }})
	// drain_timeout is read from d.cfg when the daemon stops: nothing to do now.
	d.onReload(reloader{name: "shutdown", keys: []string{"drain_timeout"},
		apply: func(_, _ config.Config) error { return nil }})
}

// reloadResolver swaps the resolver's client when its servers (from the
// configuration, or /etc/resolv.conf when dns is empty), timeout or cache
// size change; otherwise the cache is kept.
func reloadResolver(res *swapResolver, old, cfg config.Config, mt *metrics.Metrics, log *slog.Logger) error {
	probe, err := resolver.New(resolver.Config{Servers: slices.Clone(cfg.DNS)})
	if err != nil {
		return err
	}
	if slices.Equal(probe.Servers(), res.Servers()) && cfg.DNSTimeout == old.DNSTimeout &&
		cfg.DNSCacheSize == old.DNSCacheSize {
		return nil
	}
	if err := res.configure(cfg, mt); err != nil {
		return err
	}
	log.Info("resolver reconfigured", "dns", res.Servers(), "timeout", cfg.DNSTimeout.Duration,
		"cache_size", cfg.DNSCacheSize)
	return nil
}

// reload reads the configuration again (SIGHUP): every reloader applies
// its settings; changed settings that no reloader owns are named as
// needing a restart (the daemon keeps their old values).
func (d *instance) reload() {
	var check bool
	cfg, _, err := loadConfig("serve", d.args, checkFlag(&check))
	if err != nil {
		d.log.Error("reload failed; keeping the running configuration", "config", d.path, "err", err)
		return
	}
	changed := configKeys(d.cfg, cfg)
	var applied, failed, restart []string
	for _, r := range d.reloaders {
		if err := r.apply(d.cfg, cfg); err != nil {
			d.log.Error("reload: could not apply", "part", r.name, "err", err)
			for _, k := range changed {
				if r.owns(k) {
					failed = append(failed, k)
				}
			}
		}
	}
	d.log.Debug("reload: settings that differ from the running ones", "changed", strings.Join(changed, ","))
	owned := func(k string) bool {
		return slices.ContainsFunc(d.reloaders, func(r reloader) bool { return r.owns(k) })
	}
	for _, k := range configKeys(d.started, cfg) {
		if !owned(k) {
			restart = append(restart, k)
		}
	}
	for _, k := range changed {
		if owned(k) && !slices.Contains(failed, k) {
			applied = append(applied, k)
		}
	}
	d.cfg = cfg
	if len(restart) > 0 {
		d.log.Warn("settings changed that take effect only after a restart; running with the old values",
			"settings", strings.Join(restart, ","))
	}
	// Last: the line that says the reload is done.
	d.log.Info("configuration reloaded", "config", d.path, "applied", strings.Join(applied, ","))
}

// watchStore shows the writer's health: failing while the database is
// not reached yet or batches are dropped after failed commits, ok again
// once writes succeed.
func watchStore(ctx context.Context, store *measure.Store, w *measure.Writer, sup *supervise.Supervisor) {
	if store.IsReady() {
		sup.SetStatus("store", supervise.OK, nil)
	} else {
		sup.SetStatus("store", supervise.Failing, fmt.Errorf("%s: %w; records queued", store.Path, measure.ErrNotReady))
	}
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	last := w.Stats()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		st := w.Stats()
		switch {
		case !store.IsReady():
		case st.FailedBatches > last.FailedBatches:
			sup.SetStatus("store", supervise.Failing,
				fmt.Errorf("%d batches dropped after failed writes", st.FailedBatches-last.FailedBatches))
		case st.Written > last.Written:
			sup.SetStatus("store", supervise.OK, nil)
		}
		last = st
	}
}

type shutdowner interface {
	Shutdown(context.Context) error
	Close() error
}

// shutdown lets sessions finish, then flushes every queued event.
func shutdown(cfg config.Config, srv shutdowner, msrv *metrics.Server, writer *measure.Writer, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(context.Background(), cfg.DrainTimeout.Duration)
	defer cancel()
	// The supervisor closed the listeners already: only a drain that ran
	// out of time leaves sessions open.
	if err := srv.Shutdown(ctx); err != nil && !errors.Is(err, net.ErrClosed) {
		log.Warn("sessions still open at shutdown; closing them", "err", err)
		srv.Close()
	}
	if msrv != nil {
		msrv.Shutdown(ctx)
	}
	flush, cancel2 := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel2()
	if err := writer.Close(flush); err != nil {
		return err
	}
	st := writer.Stats()
	log.Info("flushed", "written", st.Written, "dropped", st.Dropped)
	return nil
}
