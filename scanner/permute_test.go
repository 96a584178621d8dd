package scanner

import "testing"

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
