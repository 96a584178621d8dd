package scanner

import "math/bits"

func mul64(a, b uint64) (hi, lo uint64)      { return bits.Mul64(a, b) }
func div64(hi, lo, m uint64) (q, rem uint64) { return bits.Div64(hi%m, lo, m) }
