package milter

// Tests of the snowrain patch to the server's I/O (PATCHES.md, 7–9):
// buffered packet reads under the same bounds, replies left out where a
// no-reply option was negotiated and sent where it was not, modification
// actions written with the final reply.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/d--j/go-milter/internal/wire"
)

// TestReaderLimits: the buffered Reader refuses what ReadPacketLimited
// refuses.
func TestReaderLimits(t *testing.T) {
	cases := []struct {
		name string
		in   []byte
		want error
	}{
		{"zero length", []byte{0, 0, 0, 0}, wire.ErrMalformedPacket},
		{"over the limit", []byte{0, 0x10, 0, 1, 'B'}, wire.ErrPacketTooLarge},
		{"4 GB declared", []byte{0xff, 0xff, 0xff, 0xff}, wire.ErrPacketTooLarge},
		{"truncated length", []byte{0, 0}, io.ErrUnexpectedEOF},
		{"truncated data", []byte{0, 0, 0, 9, 'B', 'x'}, io.ErrUnexpectedEOF},
		{"truncated large data", append([]byte{0, 1, 0, 0, 'B'}, make([]byte, 40000)...), io.ErrUnexpectedEOF},
		{"a good packet, then zero length", append(packet('H', "x"), 0, 0, 0, 0), wire.ErrMalformedPacket},
		{"empty stream", nil, io.EOF},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, b := net.Pipe()
			go func() {
				b.Write(tc.in)
				b.Close()
			}()
			r := wire.NewReader(a)
			defer r.Release()
			var err error
			for err == nil {
				_, err = r.ReadPacket(0, 0, 1<<20)
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v; want %v", err, tc.want)
			}
		})
	}
}

// TestReaderTimeouts: the idle timeout ends a silent peer, the read timeout
// one that stops inside a packet, also when the packet's start came in
// the same read as the packet before it.
func TestReaderTimeouts(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	r := wire.NewReader(a)
	_, err := r.ReadPacket(20*time.Millisecond, time.Hour, 1<<20)
	if !errors.Is(err, wire.ErrIdleTimeout) {
		t.Fatalf("silent peer: %v, want idle timeout", err)
	}
	for _, in := range [][]byte{
		{0, 0, 0, 9, 'B'},
		append(packet('H', "x"), 0, 0, 0, 9, 'B'),
		append(packet('H', "x"), 0, 0),
	} {
		a, b := net.Pipe()
		defer b.Close()
		go b.Write(in)
		r := wire.NewReader(a)
		var err error
		for err == nil {
			_, err = r.ReadPacket(time.Hour, 20*time.Millisecond, 1<<20)
		}
		if errors.Is(err, wire.ErrIdleTimeout) || !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("stalled packet %q: %v, want a read timeout", in, err)
		}
	}
}

// TestReaderPackets: packets that came in one write, one of them larger
// than the buffer, one split over two writes, come out whole and in order.
func TestReaderPackets(t *testing.T) {
	big := strings.Repeat("b", wire.ReaderBufferSize+100)
	want := []string{"D" + "Ci\x00X1", "Hfrom\x00a@b.example\x00", "B" + big, "Lx\x00y\x00", "E"}
	var stream []byte
	for _, p := range want {
		stream = append(stream, packet(p[0], p[1:])...)
	}
	a, b := net.Pipe()
	go func() {
		b.Write(stream[:len(stream)-3])
		b.Write(stream[len(stream)-3:])
		b.Close()
	}()
	r := wire.NewReader(a)
	defer r.Release()
	for i, w := range want {
		msg, err := r.ReadPacket(time.Hour, time.Hour, 1<<20)
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		if got := string(msg.Code) + string(msg.Data); got != w {
			t.Fatalf("packet %d: %.40q, want %.40q", i, got, w)
		}
	}
	if _, err := r.ReadPacket(time.Hour, time.Hour, 1<<20); err != io.EOF {
		t.Fatalf("after the last packet: %v, want EOF", err)
	}
}

// addsHeader adds a header at end-of-message and records what it saw.
type addsHeader struct {
	NoOpMilter
	headers []string
}

func (m *addsHeader) Header(name, value string, _ Modifier) (*Response, error) {
	m.headers = append(m.headers, name+":"+value)
	return RespContinue, nil
}

func (m *addsHeader) EndOfMessage(mod Modifier) (*Response, error) {
	if err := mod.AddHeader("X-Test", "1"); err != nil {
		return nil, err
	}
	if err := mod.InsertHeader(1, "X-Test", "2"); err != nil {
		return nil, err
	}
	return RespAccept, nil
}

// mta plays an MTA on the raw protocol over net.Pipe, where a Read
// returns what one Write of the milter sent (at most).
type mta struct {
	t    *testing.T
	conn net.Conn
}

func (m *mta) send(code wire.Code, data string) {
	m.t.Helper()
	if _, err := m.conn.Write(packet(byte(code), data)); err != nil {
		m.t.Fatalf("sending %c: %v", code, err)
	}
}

// write returns the packets of the milter's next write.
func (m *mta) write() []wire.Message {
	m.t.Helper()
	buf := make([]byte, 1<<16)
	n, err := m.conn.Read(buf)
	if err != nil {
		m.t.Fatalf("reading: %v", err)
	}
	var out []wire.Message
	for b := buf[:n]; len(b) > 0; {
		l := binary.BigEndian.Uint32(b)
		out = append(out, wire.Message{Code: wire.Code(b[4]), Data: b[5 : 4+l]})
		b = b[4+l:]
	}
	return out
}

func codes(ms []wire.Message) string {
	var s []byte
	for _, m := range ms {
		s = append(s, byte(m.Code))
	}
	return string(s)
}

// offer is an OPTNEG packet of protocol 6 with every action.
func offer(proto OptProtocol) string {
	b := binary.BigEndian.AppendUint32(nil, 6)
	b = binary.BigEndian.AppendUint32(b, uint32(AllClientSupportedActionMasks))
	return string(binary.BigEndian.AppendUint32(b, uint32(proto)))
}

// lenient takes the protocol options the MTA offers, as snowrain's filter
// does.
func lenient(mtaVersion, milterVersion uint32, _, milterActions OptAction, mtaProtocol, milterProtocol OptProtocol, offered DataSize) (uint32, OptAction, OptProtocol, DataSize, error) {
	return min(mtaVersion, milterVersion), milterActions, milterProtocol & mtaProtocol, offered, nil
}

// TestNoReplies runs one transaction with an MTA that grants every
// no-reply option and with one that grants none. Where granted, the milter
// sends nothing until end-of-message (a reply the MTA does not read would
// be taken for the answer to its next command); where not, it answers
// every command. Either way the header values arrive and the end-of-message
// actions come in the same write as the final reply.
func TestNoReplies(t *testing.T) {
	for _, tc := range []struct {
		name    string
		offered OptProtocol
		replies string // per command, before end-of-message
	}{
		{"granted", OptNoReplies | OptHeaderLeadingSpace, ""},
		{"not granted", OptHeaderLeadingSpace, "cccccccc"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			backend := &addsHeader{}
			srv := NewServer(WithMilter(func() Milter { return backend }),
				WithActions(OptAddHeader|OptChangeHeader), WithProtocols(OptNoReplies|OptHeaderLeadingSpace),
				WithNegotiationCallback(lenient))
			a, b := net.Pipe()
			defer b.Close()
			// A reply the MTA does not read blocks both ends of the pipe:
			// the deadline turns that into a failure.
			b.SetDeadline(time.Now().Add(10 * time.Second))
			s := &serverSession{}
			s.init(srv, a, srv.options.maxVersion, srv.options.actions, srv.options.protocol)
			done := make(chan struct{})
			go func() {
				s.HandleMilterCommands()
				close(done)
			}()
			m := &mta{t, b}
			m.send(wire.CodeOptNeg, offer(tc.offered))
			neg := m.write()
			if codes(neg) != "O" || OptProtocol(binary.BigEndian.Uint32(neg[0].Data[8:])) != tc.offered {
				t.Fatalf("negotiation reply %q %x, want O with %x", codes(neg), neg[0].Data, tc.offered)
			}
			var replies []byte
			for _, cmd := range []struct {
				code wire.Code
				data string
			}{
				{wire.CodeConn, "host\x004\x00\x19192.0.2.1\x00"},
				{wire.CodeHelo, "client.example\x00"},
				{wire.CodeMail, "<a@b.example>\x00"},
				{wire.CodeRcpt, "<c@d.example>\x00"},
				{wire.CodeData, ""},
				{wire.CodeHeader, "From\x00 a@b.example\x00"},
				{wire.CodeEOH, ""},
				{wire.CodeBody, "body\r\n"},
			} {
				m.send(cmd.code, cmd.data)
				if tc.replies != "" {
					replies = append(replies, codes(m.write())...)
				}
			}
			if string(replies) != tc.replies {
				t.Fatalf("replies %q, want %q", replies, tc.replies)
			}
			m.send(wire.CodeEOB, "")
			if got := codes(m.write()); got != "hia" {
				t.Fatalf("end of message: one write of %q, want \"hia\" (add, insert, accept)", got)
			}
			m.send(wire.CodeQuit, "")
			<-done
			if !bytes.Equal([]byte(strings.Join(backend.headers, "")), []byte("From: a@b.example")) {
				t.Errorf("headers seen: %q", backend.headers)
			}
		})
	}
}
