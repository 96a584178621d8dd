package measure

import (
	"context"
	"testing"
	"time"
)

// waitWritten waits until w has written n events; the bound only keeps a
// broken writer from hanging the test.
func waitWritten(t *testing.T, w *Writer, n int64) {
	t.Helper()
	for end := time.Now().Add(20 * time.Second); w.Stats().Written < n; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("written %d of %d events: %+v", w.Stats().Written, n, w.Stats())
		}
	}
}

// TestWriterWakes: the writer's goroutine is woken by a full batch, and a
// partial one is written when the interval ends, without a Close.
func TestWriterWakes(t *testing.T) {
	s := openTemp(t)
	full := NewWriter(s, WriterConfig{BatchSize: 10, Interval: time.Hour})
	defer full.Close(context.Background())
	for i := 0; i < 25; i++ {
		full.Enqueue(sampleMessage(i))
	}
	waitWritten(t, full, 20) // two batches; five wait for the hour or Close

	partial := NewWriter(s, WriterConfig{BatchSize: 500, Interval: 20 * time.Millisecond})
	defer partial.Close(context.Background())
	for i := 0; i < 3; i++ {
		partial.Enqueue(sampleMessage(100 + i))
	}
	waitWritten(t, partial, 3)

	if err := full.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := full.Stats(); st.Written != 25 || st.Queued != 0 {
		t.Errorf("after Close: %+v, want all 25 written", st)
	}
}
