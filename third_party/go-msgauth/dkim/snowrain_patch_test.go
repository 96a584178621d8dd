package dkim

// Tests of the snowrain patches (see ../PATCHES.md): each patched function
// gives what v0.7.0 gave, byte for byte, and its cost grows linearly.

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand"
	"runtime"
	"strings"
	"testing"
)

// readHeaderV070 is readHeader as released.
func readHeaderV070(r *bufio.Reader) (header, error) {
	var h header
	for {
		l, err := readLineV070(r)
		if err != nil {
			return h, fmt.Errorf("failed to read header: %v", err)
		}
		if len(l) == 0 {
			break
		} else if len(h) > 0 && (l[0] == ' ' || l[0] == '\t') {
			h[len(h)-1] += l + crlf
		} else {
			h = append(h, l+crlf)
		}
	}
	return h, nil
}

func readLineV070(r *bufio.Reader) (string, error) {
	l, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	return strings.TrimRight(l, "\r\n"), nil
}

// simpleBodyV070 is the simple body canonicalizer as released.
type simpleBodyV070 struct {
	w         *bytes.Buffer
	crlfBuf   []byte
	crlfFixer crlfFixer
}

func (c *simpleBodyV070) Write(b []byte) {
	b = append(c.crlfBuf, b...)
	b = c.crlfFixer.Fix(b)
	end := len(b)
	if end > 0 && b[end-1] == '\r' {
		end--
	}
	for end >= 2 && b[end-2] == '\r' && b[end-1] == '\n' {
		end -= 2
	}
	c.crlfBuf = b[end:]
	c.w.Write(b[:end])
}

func (c *simpleBodyV070) Close() {
	if len(c.crlfBuf) > 0 && c.crlfBuf[len(c.crlfBuf)-1] == '\r' {
		c.w.Write(c.crlfBuf)
	}
	c.w.WriteString(crlf)
}

func randomBody(rng *rand.Rand, n int) []byte {
	alphabet := []byte("\r\n\r\n\r\n\r\nab \t")
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[rng.Intn(len(alphabet))]
	}
	return b
}

func TestSimpleBodyCanonicalizerMatchesV070(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < 5000; i++ {
		body := randomBody(rng, rng.Intn(64))
		var want, got bytes.Buffer
		old := &simpleBodyV070{w: &want}
		cur := new(simpleCanonicalizer).CanonicalizeBody(&got)
		for rest := body; len(rest) > 0; {
			n := 1 + rng.Intn(len(rest))
			old.Write(rest[:n])
			cur.Write(rest[:n])
			rest = rest[n:]
		}
		old.Close()
		cur.Close()
		if !bytes.Equal(want.Bytes(), got.Bytes()) {
			t.Fatalf("body %q: got %q, want %q", body, got.Bytes(), want.Bytes())
		}
	}
}

func TestReadHeaderMatchesV070(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	lines := []string{"A: b", " c", "\td", "From: x", "e", " ", "X-Y:"}
	for i := 0; i < 2000; i++ {
		var b strings.Builder
		for j := rng.Intn(12); j > 0; j-- {
			b.WriteString(lines[rng.Intn(len(lines))] + "\r\n")
		}
		if rng.Intn(4) > 0 {
			b.WriteString("\r\nbody\r\n")
		}
		want, werr := readHeaderV070(bufio.NewReader(strings.NewReader(b.String())))
		got, gerr := readHeader(bufio.NewReader(strings.NewReader(b.String())))
		if fmt.Sprint(want) != fmt.Sprint(got) || (werr == nil) != (gerr == nil) {
			t.Fatalf("%q: got %q %v, want %q %v", b.String(), got, gerr, want, werr)
		}
	}
}

func TestHeaderPickerMatchesV070(t *testing.T) {
	names := []string{"From", "from", "FROM", "To", "to", "Subject", "K", "\u212a", "s", "\u017f", "X "}
	rng := rand.New(rand.NewSource(3))
	for i := 0; i < 2000; i++ {
		var h header
		for j := rng.Intn(10); j > 0; j-- {
			h = append(h, fmt.Sprintf("%s: %d\r\n", names[rng.Intn(len(names))], j))
		}
		old, cur := newHeaderPicker(h), newHeaderPicker(h)
		for j := 0; j < 12; j++ {
			k := names[rng.Intn(len(names))]
			if want, got := pickV070(old, k), cur.Pick(k); want != got {
				t.Fatalf("%q: Pick(%q) = %q, want %q", h, k, got, want)
			}
		}
	}
}

// pickV070 is headerPicker.Pick as released.
func pickV070(p *headerPicker, key string) string {
	key = strings.ToLower(key)
	at := p.picked[key]
	for i := len(p.h) - 1; i >= 0; i-- {
		kv := p.h[i]
		k, _ := parseHeaderField(kv)
		if !strings.EqualFold(k, key) {
			continue
		}
		if at == 0 {
			p.picked[key]++
			return kv
		}
		at--
	}
	return ""
}

// allocated returns the bytes f allocates.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// foldedBomb is one header field folded into n one-character lines.
func foldedBomb(n int) string {
	return "Subject: x\r\n" + strings.Repeat(" x\r\n", n) + "\r\n"
}

// TestFoldedHeaderLinear: the bytes readHeader allocates for one folded
// field grow with its size, not its square (v0.7.0 copied the field once
// per line: 400 KB of one-character lines allocated ~40 GB).
func TestFoldedHeaderLinear(t *testing.T) {
	for _, n := range []int{25_000, 100_000, 1_000_000} { // 100 KB, 400 KB, 4 MB
		in := foldedBomb(n)
		got := allocated(func() {
			h, err := readHeader(bufio.NewReaderSize(strings.NewReader(in), 4096))
			if err != nil || len(h) != 1 {
				t.Fatalf("%d lines: %d fields, %v", n, len(h), err)
			}
		})
		if limit := uint64(8 * len(in)); got > limit {
			t.Errorf("%d bytes of folded header allocated %d bytes, over %d", len(in), got, limit)
		}
	}
}

// TestHeaderPickerLinear: picking k names among n fields allocates in
// proportion to n + k, not n × k.
func TestHeaderPickerLinear(t *testing.T) {
	const n = 50_000
	h := make(header, n)
	for i := range h {
		h[i] = fmt.Sprintf("X-%d: v\r\n", i)
	}
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("x-%d", n-1-i)
	}
	got := allocated(func() {
		p := newHeaderPicker(h)
		for _, k := range keys {
			if p.Pick(k) == "" {
				t.Fatal("missing field")
			}
		}
	})
	if limit := uint64(1000 * n); got > limit {
		t.Errorf("picking %d of %d fields allocated %d bytes, over %d", n, n, got, limit)
	}
}

// TestEmptyLinesBodyLinear: a body of many empty lines costs no memory per
// line with the simple canonicalization.
func TestEmptyLinesBodyLinear(t *testing.T) {
	chunk := bytes.Repeat([]byte(crlf), 16<<10) // 32 KB
	got := allocated(func() {
		w := new(simpleCanonicalizer).CanonicalizeBody(nopWriter{})
		for i := 0; i < 320; i++ { // 10 MB
			w.Write(chunk)
		}
		w.Close()
	})
	if limit := uint64(320 * 2 * len(chunk)); got > limit {
		t.Errorf("10 MB of empty lines allocated %d bytes, over %d", got, limit)
	}
}

type nopWriter struct{}

func (nopWriter) Write(b []byte) (int, error) { return len(b), nil }
