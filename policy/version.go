package policy

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/snowrain/snowrain/measure"
)

// The policy tables change under a running daemon: `snowrain policy
// import` and `policy forget` write them from another process. Each such
// change bumps the one row of policy_version in the same transaction; the
// daemon polls that row (one indexed read, no write) and, when it moved,
// reloads the imported policies and empties its decision cache.

// DefaultWatchInterval is how often Watch polls the policy version.
const DefaultWatchInterval = 200 * time.Millisecond

// Reload reads the imported policies and the policy version from the
// store and empties the decision cache.
func (e *Engine) Reload(ctx context.Context) error {
	tx, err := e.store.DB.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("policy: reload: %w", err)
	}
	defer tx.Rollback()
	version, err := policyVersion(ctx, tx)
	if err != nil {
		return fmt.Errorf("policy: reload: %w", err)
	}
	imported := map[string]string{}
	err = eachOverride(ctx, tx, func(domain, pol string) {
		// Rows are validated on import; one that fails now (written by
		// an older version, or by hand) keeps its level and loses the
		// attributes outside the grammar, loudly.
		key, ok := CanonicalPattern(domain)
		if !ok {
			e.log.Error("policy: imported policy left out: not a domain", "domain", clip(domain, 200))
			return
		}
		answer, clean, ok := encodeAnswer(pol)
		if !clean {
			e.log.Error("policy: imported policy outside the grammar", "domain", key, "policy", clip(pol, 200),
				"kept", answer)
			e.count("invalid_stored")
		}
		if ok {
			imported[key] = answer
		}
	})
	if err != nil {
		return fmt.Errorf("policy: reload: %w", err)
	}
	e.imported.Store(&imported)
	e.version.Store(version)
	e.cache.clear()
	return nil
}

// Watch polls the policy version every interval until ctx ends and
// reloads when it changed.
func (e *Engine) Watch(ctx context.Context, every time.Duration) {
	if every <= 0 {
		every = DefaultWatchInterval
	}
	t := time.NewTicker(every)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := e.checkVersion(ctx, every)
		switch {
		case err != nil && !failing:
			e.log.Warn("policy: checking the policy version", "err", err)
		case err == nil && failing:
			e.log.Info("policy: policy version readable again")
		}
		failing = err != nil
	}
}

func (e *Engine) checkVersion(ctx context.Context, every time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, max(every*10, 2*time.Second))
	defer cancel()
	if !e.store.IsReady() {
		return measure.ErrNotReady
	}
	version, err := policyVersion(ctx, e.store.DB)
	if err != nil {
		return err
	}
	if version == e.version.Load() {
		return nil
	}
	if err := e.Reload(ctx); err != nil {
		return err
	}
	e.log.Info("policy: store changed; imported policies reloaded, decision cache emptied", "version", version)
	return nil
}
