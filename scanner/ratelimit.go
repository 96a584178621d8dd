package scanner

import (
	"context"
	"net"

	"golang.org/x/time/rate"

	"github.com/snowrain/snowrain/resolver"
)

// limitedResolver spaces out DNS queries: the sweep's global DNS rate.
type limitedResolver struct {
	r resolver.Resolver
	l *rate.Limiter
}

// RateLimited returns r with at most limit queries per second.
func RateLimited(r resolver.Resolver, limit rate.Limit) resolver.Resolver {
	if limit <= 0 {
		return r
	}
	return &limitedResolver{r: r, l: rate.NewLimiter(limit, 10)}
}

func (l *limitedResolver) wait(ctx context.Context) error { return l.l.Wait(ctx) }

func (l *limitedResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	if err := l.wait(ctx); err != nil {
		return nil, &net.DNSError{Err: err.Error(), Name: name, IsTimeout: true, IsTemporary: true}
	}
	return l.r.LookupTXT(ctx, name)
}

func (l *limitedResolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	if err := l.wait(ctx); err != nil {
		return nil, &net.DNSError{Err: err.Error(), Name: name, IsTimeout: true, IsTemporary: true}
	}
	return l.r.LookupMX(ctx, name)
}

func (l *limitedResolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	if err := l.wait(ctx); err != nil {
		return nil, &net.DNSError{Err: err.Error(), Name: host, IsTimeout: true, IsTemporary: true}
	}
	return l.r.LookupIPAddr(ctx, host)
}

func (l *limitedResolver) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	if err := l.wait(ctx); err != nil {
		return nil, &net.DNSError{Err: err.Error(), Name: addr, IsTimeout: true, IsTemporary: true}
	}
	return l.r.LookupAddr(ctx, addr)
}

func (l *limitedResolver) Query(ctx context.Context, name string, qtype uint16) (*resolver.Answer, error) {
	if err := l.wait(ctx); err != nil {
		return nil, &net.DNSError{Err: err.Error(), Name: name, IsTimeout: true, IsTemporary: true}
	}
	return l.r.Query(ctx, name, qtype)
}
