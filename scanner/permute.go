package scanner

import (
	"math/big"
	"math/rand/v2"
)

// Permutation walks 0..N-1 in a random order without state per element,
// as ZMap does: the multiplicative group modulo a prime p > N, from a
// random start, by a random primitive root; values ≥ N are skipped.
// Shards of one seed split the walk by taking every n-th element.
type Permutation struct {
	n, p, g, start, cur uint64
	shard, shards       uint64
	step                uint64 // elements of the cycle visited
	done                bool
}

// NewPermutation returns shard i of n (0 ≤ i < n) of a walk over size
// elements, reproducible from seed.
func NewPermutation(size uint64, seed uint64, shard, shards int) *Permutation {
	p := nextPrime(size + 1)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	g := primitiveRoot(p, rng)
	start := 1 + rng.Uint64N(p-1)
	return &Permutation{n: size, p: p, g: g, start: start, cur: start, shard: uint64(shard), shards: uint64(max(shards, 1))}
}

// Next returns the next element of this shard.
func (pm *Permutation) Next() (uint64, bool) {
	for !pm.done {
		v := pm.cur
		idx := pm.step
		pm.step++
		pm.cur = mulmod(pm.cur, pm.g, pm.p)
		if pm.cur == pm.start {
			pm.done = true
		}
		if idx%pm.shards != pm.shard {
			continue
		}
		if v-1 < pm.n { // group elements are 1..p-1
			return v - 1, true
		}
	}
	return 0, false
}

func mulmod(a, b, m uint64) uint64 {
	hi, lo := mul64(a, b)
	_, rem := div64(hi, lo, m)
	return rem
}

func nextPrime(n uint64) uint64 {
	if n < 5 {
		return 5 // small groups leave no room to pick a random root
	}
	for p := n | 1; ; p += 2 {
		if new(big.Int).SetUint64(p).ProbablyPrime(20) {
			return p
		}
	}
}

// primitiveRoot picks a random generator of the group modulo prime p.
func primitiveRoot(p uint64, rng *rand.Rand) uint64 {
	phi := p - 1
	factors := primeFactors(phi)
	for {
		g := 2 + rng.Uint64N(p-3)
		ok := true
		for _, q := range factors {
			if powmod(g, phi/q, p) == 1 {
				ok = false
				break
			}
		}
		if ok {
			return g
		}
	}
}

func primeFactors(n uint64) []uint64 {
	var out []uint64
	for f := uint64(2); f*f <= n; f++ {
		if n%f == 0 {
			out = append(out, f)
			for n%f == 0 {
				n /= f
			}
		}
	}
	if n > 1 {
		out = append(out, n)
	}
	return out
}

func powmod(b, e, m uint64) uint64 {
	r := uint64(1)
	b %= m
	for e > 0 {
		if e&1 == 1 {
			r = mulmod(r, b, m)
		}
		b = mulmod(b, b, m)
		e >>= 1
	}
	return r
}
