package policy

import (
	"fmt"
	"testing"
)

func TestDetector(t *testing.T) {
	d := &Detector{N: 3, M: 4, Max: 2}
	seq := []struct {
		tls  bool
		want bool
	}{{true, false}, {true, false}, {false, false}, {true, false}, {false, true}, {false, false}, {false, false}}
	for i, s := range seq {
		if got, before := d.Observe("a", s.tls); got != s.want {
			t.Errorf("step %d: downgrade %v (before %d), want %v", i, got, before, s.want)
		}
	}
	// The LRU forgets the oldest peer beyond Max.
	d.Observe("b", true)
	d.Observe("c", true)
	if _, before := d.Observe("a", false); before != 0 {
		t.Errorf("evicted peer remembered %d", before)
	}
	for i := 0; i < 1000; i++ {
		d.Observe(fmt.Sprint(i), true)
	}
	if len(d.peers) != 2 {
		t.Errorf("%d peers kept, bound 2", len(d.peers))
	}
}
