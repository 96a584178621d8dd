package scanner

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestPermutationCoversOnceAcrossShards(t *testing.T) {
	for _, size := range []uint64{1, 2, 10, 1000, 65536} {
		seen := make([]int, size)
		for shard := 0; shard < 3; shard++ {
			p := NewPermutation(size, 42, shard, 3)
			for v, ok := p.Next(); ok; v, ok = p.Next() {
				seen[v]++
			}
		}
		for v, n := range seen {
			if n != 1 {
				t.Fatalf("size %d: %d seen %d times", size, v, n)
			}
		}
	}
	a, b := NewPermutation(1000, 1, 0, 1), NewPermutation(1000, 2, 0, 1)
	x, _ := a.Next()
	y, _ := b.Next()
	c := NewPermutation(1000, 1, 0, 1)
	z, _ := c.Next()
	if x != z {
		t.Error("same seed, different order")
	}
	_ = y
}

// TestSlashZeroSize checks the README's figures for a sweep of 0.0.0.0/0:
// the permutation's prime, and the addresses the default blocklist leaves
// (its IPv4 prefixes are disjoint or nested: one inside another is not
// counted again).
func TestSlashZeroSize(t *testing.T) {
	all := NewTargets([]netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")})
	if p := NewPermutation(all.Len(), 1, 0, 1).p; all.Len() != 1<<32 || p != 4_294_967_311 {
		t.Errorf("a /0 has %d addresses, permuted modulo %d", all.Len(), p)
	}
	b, err := ParseBlocklist(strings.NewReader(DefaultBlocklist))
	if err != nil {
		t.Fatal(err)
	}
	var blocked uint64
	for _, p := range b.prefixes {
		nested := slices.ContainsFunc(b.prefixes, func(q netip.Prefix) bool { return q.Bits() < p.Bits() && q.Contains(p.Addr()) })
		if p.Addr().Is4() && !nested {
			blocked += 1 << (32 - p.Bits())
		}
	}
	if blocked != 592_708_864 || all.Len()-blocked != 3_702_258_432 {
		t.Errorf("the default blocklist takes %d addresses of a /0, leaving %d", blocked, all.Len()-blocked)
	}
}
