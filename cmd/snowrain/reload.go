package main

import (
	"context"
	"net"
	"reflect"
	"strings"
	"sync/atomic"

	"github.com/snowrain/snowrain/config"
	"github.com/snowrain/snowrain/metrics"
	"github.com/snowrain/snowrain/resolver"
)

// A reloader applies the settings it owns from a new configuration on
// SIGHUP. Keys are TOML keys ("dns_budget", "enforce.dmarc"); a key
// ending in "." covers a whole table ("enforce."). A changed setting no
// reloader owns needs a restart, and reload logs it by name.
//
// A part of the daemon that can take new settings registers one with
// instance.onReload where it is built, e.g. the policy engine:
//
//	d.onReload(reloader{name: "policy engine", keys: []string{"policy.overrides", …},
//		apply: func(old, cfg config.Config) error { engine.SetConfig(…); return nil }})
type reloader struct {
	name  string
	keys  []string
	apply func(old, cfg config.Config) error
}

func (r reloader) owns(key string) bool {
	for _, k := range r.keys {
		if k == key || strings.HasSuffix(k, ".") && strings.HasPrefix(key, k) {
			return true
		}
	}
	return false
}

// configKeys lists the TOML keys whose values differ between a and b.
func configKeys(a, b config.Config) []string {
	var out []string
	diffStruct(reflect.ValueOf(a), reflect.ValueOf(b), "", &out)
	return out
}

func diffStruct(a, b reflect.Value, prefix string, out *[]string) {
	t := a.Type()
	for i := 0; i < t.NumField(); i++ {
		tag, _, _ := strings.Cut(t.Field(i).Tag.Get("toml"), ",")
		if tag == "" || tag == "-" {
			continue
		}
		fa, fb := a.Field(i), b.Field(i)
		if fa.Kind() == reflect.Struct && hasTOMLFields(fa.Type()) {
			diffStruct(fa, fb, prefix+tag+".", out)
			continue
		}
		if !reflect.DeepEqual(fa.Interface(), fb.Interface()) {
			*out = append(*out, prefix+tag)
		}
	}
}

func hasTOMLFields(t reflect.Type) bool {
	for i := 0; i < t.NumField(); i++ {
		if t.Field(i).Tag.Get("toml") != "" {
			return true
		}
	}
	return false
}

// swapResolver is the daemon's one Resolver: every part (milter, policy
// engine, MTA-STS fetcher) holds it, and SIGHUP swaps the client behind
// it when dns, dns_timeout or dns_cache_size change.
type swapResolver struct {
	cur atomic.Pointer[resolver.Client]
}

func newSwapResolver(cfg config.Config, mt *metrics.Metrics) (*swapResolver, error) {
	r := &swapResolver{}
	if err := r.configure(cfg, mt); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *swapResolver) configure(cfg config.Config, mt *metrics.Metrics) error {
	rc := resolver.ConfigFrom(cfg)
	rc.Observe = mt.ObserveDNS
	c, err := resolver.New(rc)
	if err != nil {
		return err
	}
	r.cur.Store(c)
	return nil
}

// Servers returns the servers asked now.
func (r *swapResolver) Servers() []string { return r.cur.Load().Servers() }

func (r *swapResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	return r.cur.Load().LookupTXT(ctx, name)
}

func (r *swapResolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	return r.cur.Load().LookupMX(ctx, name)
}

func (r *swapResolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	return r.cur.Load().LookupIPAddr(ctx, host)
}

func (r *swapResolver) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	return r.cur.Load().LookupAddr(ctx, addr)
}

func (r *swapResolver) Query(ctx context.Context, name string, qtype uint16) (*resolver.Answer, error) {
	return r.cur.Load().Query(ctx, name, qtype)
}

var _ resolver.Resolver = (*swapResolver)(nil)
