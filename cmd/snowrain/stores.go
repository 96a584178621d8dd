package main

import (
	"context"

	"github.com/snowrain/snowrain/config"
	"github.com/snowrain/snowrain/measure"
	"github.com/snowrain/snowrain/resolver"
)

// openWithResolver opens the store cfg names (read-only when asked) and
// the resolver it configures, for the commands that need both.
func openWithResolver(ctx context.Context, cfg config.Config, readOnly bool) (*measure.Store, resolver.Resolver, error) {
	open := measure.Open
	if readOnly {
		open = measure.OpenReadOnly
	}
	store, err := open(ctx, cfg.DB)
	if err != nil {
		return nil, nil, err
	}
	res, err := resolver.New(resolver.ConfigFrom(cfg))
	if err != nil {
		store.Close()
		return nil, nil, err
	}
	return store, res, nil
}
