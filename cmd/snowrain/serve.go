package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/snowrain/snowrain/config"
	"github.com/snowrain/snowrain/measure"
	"github.com/snowrain/snowrain/metrics"
	"github.com/snowrain/snowrain/milter"
	"github.com/snowrain/snowrain/resolver"
)

// loadConfig reads --config (default /etc/snowrain/snowrain.conf, optional
// unless named) and applies the flags over it.
func loadConfig(name string, args []string) (config.Config, string, error) {
	probe := config.Default()
	path := config.DefaultPath
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.StringVar(&path, "config", path, "configuration file (TOML)")
	probe.Bind(fs)
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
	if err := fs2.Parse(args); err != nil {
		return cfg, path, err
	}
	return cfg, path, cfg.Validate()
}

func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func milterConfig(cfg config.Config) milter.Config {
	nets, _ := cfg.Networks()
	return milter.Config{AuthServID: cfg.AuthServID, SubmissionDaemons: cfg.SubmissionDaemons,
		InternalNets: nets, DNSBudget: cfg.DNSBudget.Duration, MaxSignatures: cfg.MaxSignatures,
		StoreLocalparts: cfg.StoreLocalparts, CheckHelo: cfg.CheckHelo,
		EnforceDMARC: cfg.Enforce.DMARC, EnforceDomains: cfg.Enforce.Domains,
		QuarantineAction: cfg.Enforce.Quarantine, InvalidFrom: cfg.Enforce.InvalidFrom,
		MaxHeaderBytes: cfg.MaxHeaderBytes, MaxPacket: cfg.MilterMaxPacket,
		ReadTimeout: cfg.MilterReadTimeout.Duration, IdleTimeout: cfg.MilterIdleTimeout.Duration}
}

func serve(args []string) error {
	cfg, path, err := loadConfig("serve", args)
	if err != nil {
		return err
	}
	log := newLogger(cfg, os.Stderr)
	slog.SetDefault(log)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()

	store, err := measure.Open(ctx, cfg.DB)
	if err != nil {
		return err
	}
	defer store.Close()
	mt := metrics.New()
	writer := measure.NewWriter(store, measure.WriterConfig{QueueSize: cfg.QueueSize,
		BatchSize: cfg.BatchSize, Interval: cfg.BatchInterval.Duration, Logger: log})
	mt.WatchWriter(writer)
	res, err := resolver.New(resolver.Config{Servers: cfg.DNS, Timeout: cfg.DNSTimeout.Duration,
		CacheSize: cfg.DNSCacheSize, Observe: mt.ObserveDNS})
	if err != nil {
		return err
	}
	filter := milter.NewFilter(milterConfig(cfg), res, writer, mt, log)
	ln, err := listen(cfg)
	if err != nil {
		return err
	}
	if cfg.Metrics != "" {
		mln, err := net.Listen("tcp", cfg.Metrics)
		if err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
		go mt.Serve(ctx, mln)
	}
	stopPolicy, onDelivery, err := startPolicy(ctx, cfg, store, res, writer, filter, mt, log)
	if err != nil {
		return err
	}
	defer stopPolicy()
	followers := startFollowers(ctx, cfg, store, mt, onDelivery, log)
	srv := filter.NewServer()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Info("snowrain serving", "milter", cfg.Milter, "db", cfg.DB, "dns", res.Servers(), "metrics", cfg.Metrics)
	printPostfixHint(cfg)

	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	for {
		select {
		case s := <-sig:
			if s == syscall.SIGHUP {
				reload(path, args, filter, log)
				continue
			}
			log.Info("shutting down", "signal", s.String())
		case err := <-served:
			log.Error("milter server stopped", "err", err)
		}
		break
	}
	stop()
	followers.Wait()
	return shutdown(cfg, srv, writer, log)
}

type shutdowner interface {
	Shutdown(context.Context) error
	Close() error
}

// shutdown lets sessions finish, then flushes every queued event.
func shutdown(cfg config.Config, srv shutdowner, writer *measure.Writer, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(context.Background(), cfg.DrainTimeout.Duration)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		log.Warn("sessions still open at shutdown; closing them", "err", err)
		srv.Close()
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

func reload(path string, args []string, f *milter.Filter, log *slog.Logger) {
	cfg, _, err := loadConfig("serve", args)
	if err != nil {
		log.Error("reload failed; keeping the running configuration", "config", path, "err", err)
		return
	}
	f.SetConfig(milterConfig(cfg))
	reloadPolicy(cfg, log)
	log.Info("configuration reloaded", "config", path)
}

func listen(cfg config.Config) (net.Listener, error) {
	network, addr, err := config.SplitListen(cfg.Milter)
	if err != nil {
		return nil, err
	}
	if network != "unix" {
		return net.Listen(network, addr)
	}
	if err := os.MkdirAll(filepath.Dir(addr), 0o755); err != nil {
		return nil, err
	}
	if fi, err := os.Stat(addr); err == nil && fi.Mode()&os.ModeSocket != 0 {
		os.Remove(addr) // stale socket of a previous run
	}
	ln, err := net.Listen("unix", addr)
	if err != nil {
		return nil, err
	}
	if err := socketPerms(addr, cfg.SocketMode, cfg.SocketOwner); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

func socketPerms(path, mode, owner string) error {
	if mode != "" {
		m, err := strconv.ParseUint(mode, 8, 32)
		if err != nil {
			return fmt.Errorf("socket_mode %q: %w", mode, err)
		}
		if err := os.Chmod(path, os.FileMode(m)); err != nil {
			return err
		}
	}
	if owner == "" {
		return nil
	}
	uname, gname, _ := strings.Cut(owner, ":")
	u, err := user.Lookup(uname)
	if err != nil {
		return fmt.Errorf("socket_owner: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if gname != "" {
		g, err := user.LookupGroup(gname)
		if err != nil {
			return fmt.Errorf("socket_owner: %w", err)
		}
		gid, _ = strconv.Atoi(g.Gid)
	}
	return os.Chown(path, uid, gid)
}
