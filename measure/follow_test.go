package measure

import (
	"bytes"
	"compress/gzip"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/snowrain/snowrain/measure/maillog"
)

// logWriter appends numbered Postfix delivery lines to a log file.
type logWriter struct {
	t    *testing.T
	path string
	n    int
}

func (w *logWriter) write(count int, partialTail bool) {
	f, err := os.OpenFile(w.path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		w.t.Fatal(err)
	}
	defer f.Close()
	for i := 0; i < count; i++ {
		w.n++
		line := fmt.Sprintf("Nov 24 10:00:01 mx postfix/smtp[%d]: Q%07d: to=<u@d%d.example>, relay=mx.d.example[192.0.2.1]:25, delay=0.1, delays=0/0/0/0.1, dsn=2.0.0, status=sent (250 ok)\n", 100+w.n%7, w.n, w.n)
		if partialTail && i == count-1 {
			f.WriteString(line[:40]) // the MTA is mid-write
			f.Sync()
			time.Sleep(60 * time.Millisecond)
			f.WriteString(line[40:])
			continue
		}
		f.WriteString(line)
	}
}

func countDeliveries(t *testing.T, s *Store) (total, distinct int) {
	t.Helper()
	if err := s.DB.QueryRow(`SELECT COUNT(*), COUNT(DISTINCT queue_id) FROM deliveries`).Scan(&total, &distinct); err != nil {
		t.Fatal(err)
	}
	return
}

func waitDeliveries(t *testing.T, s *Store, want int) {
	t.Helper()
	for i := 0; i < 200; i++ {
		if n, _ := countDeliveries(t, s); n >= want {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func startFollower(s *Store, path string) (cancel func()) {
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		(&Follower{Store: s, Path: path, Poll: 20 * time.Millisecond, Batch: 7}).Run(ctx)
		close(done)
	}()
	return func() { stop(); <-done }
}

func TestFollowerRotationAndRestart(t *testing.T) {
	s := openTemp(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "mail.log")
	w := &logWriter{t: t, path: path}
	w.write(10, false)
	stop := startFollower(s, path)
	w.write(10, true)
	waitDeliveries(t, s, 20)

	// Rotation by rename, with lines written to the old file just before.
	w.write(5, false)
	os.Rename(path, path+".1")
	w.write(5, false)
	waitDeliveries(t, s, 30)

	// copytruncate: the same file shrinks to nothing and grows again.
	os.Truncate(path, 0)
	w.write(4, false)
	waitDeliveries(t, s, 34)
	stop()

	// Restart: nothing read twice, nothing skipped.
	w.write(6, false)
	stop = startFollower(s, path)
	waitDeliveries(t, s, 40)
	stop()

	// Rotation while snowrain is down: the rest of PATH.1 is read first.
	w.write(3, false)
	os.Rename(path, path+".1")
	w.write(2, false)
	stop = startFollower(s, path)
	waitDeliveries(t, s, 45)
	stop()

	total, distinct := countDeliveries(t, s)
	if total != w.n || distinct != w.n {
		t.Errorf("recorded %d deliveries (%d distinct), wrote %d", total, distinct, w.n)
	}
}

// TestFollowerTailF: like tail -F, a log that does not exist yet is
// picked up when it appears, and one removed and created again is read
// from its start; lines written to the removed file before that are not
// lost.
func TestFollowerTailF(t *testing.T) {
	s := openTemp(t)
	path := filepath.Join(t.TempDir(), "mail.log")
	stop := startFollower(s, path) // nothing there yet
	defer func() { stop() }()
	w := &logWriter{t: t, path: path}
	w.write(4, false)
	waitDeliveries(t, s, 4)

	// Removed, with a last line still written to the open file (as an
	// MTA that has not reopened its log yet does), then created again.
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(path)
	old := &logWriter{t: t, path: path, n: w.n}
	fmt.Fprintf(f, "Nov 24 10:00:01 mx postfix/smtp[1]: QLAST0001: to=<u@last.example>, relay=mx[192.0.2.1]:25, delay=0.1, delays=0/0/0/0.1, dsn=2.0.0, status=sent (ok)\n")
	f.Close()
	w.n = old.n + 1
	w.write(8, false) // a new file, longer than the old one was
	waitDeliveries(t, s, 13)

	// Removed and created again at once, between two polls.
	os.Remove(path)
	w.write(2, false)
	waitDeliveries(t, s, 15)
	stop()
	stop = func() {}
	total, distinct := countDeliveries(t, s)
	if total != 15 || distinct != 15 {
		t.Errorf("recorded %d deliveries (%d distinct), want 15", total, distinct)
	}
}

// TestFollowerOverlongLine: a line longer than maillog.MaxLine, written
// in pieces as a hostile or broken writer would, is dropped while it is
// read and counted as malformed; the lines around it are read.
func TestFollowerOverlongLine(t *testing.T) {
	s := openTemp(t)
	path := filepath.Join(t.TempDir(), "mail.log")
	w := &logWriter{t: t, path: path}
	w.write(2, false)
	p := maillog.NewParser()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		(&Follower{Store: s, Path: path, Parser: p, Poll: 20 * time.Millisecond}).Run(ctx)
		close(done)
	}()
	waitDeliveries(t, s, 2)
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	chunk := strings.Repeat("x", 64<<10)
	f.WriteString("Nov 24 10:00:01 mx postfix/smtp[1]: QLONG0001: to=<u@")
	for i := 0; i < 16; i++ { // 1 MiB without a newline, read while it grows
		f.WriteString(chunk)
		waitMalformedProgress(t, s, path, int64(i+1)*int64(len(chunk)))
	}
	f.WriteString(".example>, relay=mx[192.0.2.1]:25, delay=0.1, delays=0/0/0/0.1, dsn=2.0.0, status=sent (ok)\n")
	f.Close()
	w.write(2, false)
	waitDeliveries(t, s, 4)
	cancel()
	<-done
	total, _ := countDeliveries(t, s)
	if total != 4 || p.Counts()[maillog.ClassMalformed] != 1 {
		t.Errorf("recorded %d deliveries, counts %v; want 4 and one malformed line", total, p.Counts())
	}
	var off int64
	if err := s.DB.QueryRow(`SELECT offset FROM log_positions`).Scan(&off); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); off != fi.Size() {
		t.Errorf("position %d, file size %d", off, fi.Size())
	}
}

// waitMalformedProgress waits until the follower's stored position has
// passed at least n bytes of the over-long line: it drops as it reads.
func waitMalformedProgress(t *testing.T, s *Store, path string, n int64) {
	t.Helper()
	for i := 0; i < 200; i++ {
		var off int64
		// No row yet: the follower has not stored a position.
		if err := s.DB.QueryRow(`SELECT offset FROM log_positions WHERE source = ?`, path).Scan(&off); err != nil && !errors.Is(err, sql.ErrNoRows) {
			t.Fatal(err)
		}
		if off >= n {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("follower did not read past byte %d of an over-long line", n)
}

func TestIngestOverlong(t *testing.T) {
	s := openTemp(t)
	line := "Nov 24 10:00:01 mx postfix/smtp[1]: Q0000001: to=<u@d.example>, relay=mx[192.0.2.1]:25, delay=0.1, delays=0/0/0/0.1, dsn=2.0.0, status=sent (ok)\n"
	huge := "Nov 24 10:00:01 mx postfix/smtp[1]: Q0000002: to=<u@" + strings.Repeat("a", 10<<20) + ".example>, relay=mx[192.0.2.1]:25, delay=0.1, delays=0/0/0/0.1, dsn=2.0.0, status=sent (ok)\n"
	p := maillog.NewParser()
	n, err := s.IngestReader(context.Background(), strings.NewReader(line+huge+line+"no newline at the end "+strings.Repeat("y", maillog.MaxLine)), p)
	if err != nil || n != 2 || p.Counts()[maillog.ClassMalformed] != 2 {
		t.Errorf("ingested %d, %v, counts %v; want 2 deliveries, 2 malformed", n, err, p.Counts())
	}
	var long int
	if err := s.DB.QueryRow(`SELECT COUNT(*) FROM deliveries WHERE length(domain) > 255`).Scan(&long); err != nil {
		t.Fatal(err)
	}
	if long != 0 {
		t.Errorf("%d over-long domains stored", long)
	}
}

func TestIngestGzip(t *testing.T) {
	s := openTemp(t)
	var raw bytes.Buffer
	for i := 0; i < 12; i++ {
		fmt.Fprintf(&raw, "Nov 24 10:00:01 mx postfix/smtp[1]: Q%07d: to=<u@d.example>, relay=mx[192.0.2.1]:25, delay=0.1, delays=0/0/0/0.1, dsn=2.0.0, status=sent (ok)\n", i)
	}
	raw.WriteString("not a log line\n")
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(raw.Bytes())
	zw.Close()
	for _, in := range []*bytes.Buffer{bytes.NewBuffer(raw.Bytes()), &gz} {
		p := maillog.NewParser()
		n, err := s.IngestReader(context.Background(), in, p)
		if err != nil || n != 12 || p.Counts()[maillog.ClassMalformed] != 1 {
			t.Errorf("ingested %d, %v, counts %v", n, err, p.Counts())
		}
	}
}

// BenchmarkLogIngest parses and stores a Postfix 3.7 log: per delivery a
// qmgr line, a TLS line (two in three) and a status line, plus noise.
func BenchmarkLogIngest(b *testing.B) {
	var log bytes.Buffer
	lines := 0
	for i := 0; log.Len() < 64<<20; i++ {
		pid := 1000 + i%50
		fmt.Fprintf(&log, "Nov 24 10:00:01 mx postfix/qmgr[900]: Q%08X: from=<a@example.org>, size=1234, nrcpt=1 (queue active)\n", i)
		if i%3 != 0 {
			fmt.Fprintf(&log, "Nov 24 10:00:01 mx postfix/smtp[%d]: Trusted TLS connection established to mx%d.example[192.0.2.%d]:25: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519 server-signature RSA-PSS (2048 bits) server-digest SHA256\n", pid, i%97, i%250)
			lines++
		}
		fmt.Fprintf(&log, "Nov 24 10:00:01 mx postfix/smtp[%d]: Q%08X: to=<u@d%d.example>, relay=mx%d.example[192.0.2.%d]:25, delay=0.21, delays=0.01/0.01/0.1/0.09, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 1)\n", pid, i, i%97, i%97, i%250)
		fmt.Fprintf(&log, "Nov 24 10:00:01 mx postfix/qmgr[900]: Q%08X: removed\n", i)
		lines += 3
	}
	data := log.Bytes()
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s := openTemp(b)
		start := time.Now()
		if _, err := s.IngestReader(context.Background(), bytes.NewReader(data), maillog.NewParser()); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(lines)/time.Since(start).Seconds(), "lines/s")
	}
}
