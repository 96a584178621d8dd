package milter

// Regression tests of the snowrain patches (see PATCHES.md). Each case used
// to panic, allocate the declared length, or wait forever.

import (
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

func packet(code byte, data string) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(data)+1))
	return append(append(b, code), data...)
}

func TestReadPacketLimited(t *testing.T) {
	cases := []struct {
		name string
		in   []byte
		want error
	}{
		{"zero length", []byte{0, 0, 0, 0}, wire.ErrMalformedPacket},
		{"over the limit", []byte{0, 0x10, 0, 1, 'B'}, wire.ErrPacketTooLarge},
		{"512 MB declared", []byte{0x20, 0, 0, 0}, wire.ErrPacketTooLarge},
		{"4 GB declared", []byte{0xff, 0xff, 0xff, 0xff}, wire.ErrPacketTooLarge},
		{"truncated length", []byte{0, 0}, io.ErrUnexpectedEOF},
		{"truncated data", []byte{0, 0, 0, 9, 'B', 'x'}, io.ErrUnexpectedEOF},
		{"empty stream", nil, io.EOF},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, b := net.Pipe()
			go func() {
				b.Write(tc.in)
				b.Close()
			}()
			msg, err := wire.ReadPacketLimited(a, 0, 0, 1<<20)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, %v; want %v", msg, err, tc.want)
			}
		})
	}
	a, b := net.Pipe()
	go b.Write(packet('B', "body"))
	msg, err := wire.ReadPacketLimited(a, 0, 0, 5)
	if err != nil || msg.Code != 'B' || string(msg.Data) != "body" {
		t.Fatalf("a packet of exactly the limit: %v %v", msg, err)
	}
}

// TestReadPacketTimeouts: the idle timeout ends a silent peer, the read
// timeout one that stops inside a packet. The deadlines are short; the
// assertions are on the error kinds, not on durations.
func TestReadPacketTimeouts(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	_, err := wire.ReadPacketLimited(a, 20*time.Millisecond, time.Hour, 1<<20)
	if !errors.Is(err, wire.ErrIdleTimeout) {
		t.Fatalf("silent peer: %v, want idle timeout", err)
	}
	a, b = net.Pipe()
	defer b.Close()
	go b.Write([]byte{0, 0, 0, 9, 'B'})
	_, err = wire.ReadPacketLimited(a, time.Hour, 20*time.Millisecond, 1<<20)
	if err == nil || errors.Is(err, wire.ErrIdleTimeout) || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("stalled packet: %v, want a read timeout", err)
	}
}

// TestProcessMsgMalformed sends every command with data that lacks what
// the command needs: each must be an ErrMalformedPacket, none a panic.
func TestProcessMsgMalformed(t *testing.T) {
	cases := []struct {
		code wire.Code
		data string
	}{
		{wire.CodeConn, ""},
		{wire.CodeConn, "host"},
		{wire.CodeConn, "host\x00"},
		{wire.CodeConn, "host\x004"},
		{wire.CodeConn, "host\x004\x00"},
		{wire.CodeConn, "host\x004\x00\x19"},
		{wire.CodeConn, "host\x00X"},
		{wire.CodeConn, "host\x004\x00\x19not-an-ip\x00"},
		{wire.CodeConn, "host\x006\x00\x19"},
		{wire.CodeHelo, ""},
		{wire.CodeMail, ""},
		{wire.CodeMail, "<a@b.example>"},
		{wire.CodeRcpt, ""},
		{wire.CodeRcpt, "<a@b.example>"},
		{wire.CodeHeader, ""},
		{wire.CodeHeader, "x"},
		{wire.CodeHeader, "a\x00b\x00c\x00"},
		{wire.CodeMacro, ""},
		{wire.CodeOptNeg, ""},
		{wire.Code(0), ""},
		{wire.Code('Z'), "junk"},
	}
	s := &serverSession{}
	s.init(&Server{}, nil, 6, 0, 0)
	s.modifier = newModifier(s, modifierStateReadOnly)
	for _, tc := range cases {
		_, err := s.processMsg(NoOpMilter{}, &wire.Message{Code: tc.code, Data: []byte(tc.data)})
		if !errors.Is(err, wire.ErrMalformedPacket) {
			t.Errorf("%c %q: %v, want ErrMalformedPacket", tc.code, tc.data, err)
		}
	}
	// Well-formed packets still pass.
	for _, tc := range []struct {
		code wire.Code
		data string
	}{
		{wire.CodeConn, "host\x004\x00\x19192.0.2.1\x00"},
		{wire.CodeConn, "host\x00U"},
		{wire.CodeMail, "<a@b.example>\x00SIZE=10\x00"},
		{wire.CodeRcpt, "<a@b.example>\x00"},
		{wire.CodeHeader, "From\x00a@b.example\x00"},
	} {
		if _, err := s.processMsg(NoOpMilter{}, &wire.Message{Code: tc.code, Data: []byte(tc.data)}); err != nil {
			t.Errorf("%c %q: %v", tc.code, tc.data, err)
		}
	}
}

type panicky struct{ NoOpMilter }

func (panicky) Helo(string, Modifier) (*Response, error) { panic("boom") }

// TestServeRecovers: a panic in one connection closes it, is reported as a
// *PanicError, and the server goes on serving.
func TestServeRecovers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// The report follows the close the client sees: collect it from the
	// handler rather than after the client's last call.
	errs := make(chan error, 8)
	srv := NewServer(WithMilter(func() Milter { return panicky{} }), WithErrorHandler(func(err error) {
		errs <- err
	}))
	go srv.Serve(ln)
	defer srv.Close()
	for i := 0; i < 2; i++ {
		cl := NewClient("tcp", ln.Addr().String())
		s, err := cl.Session(nil)
		if err != nil {
			t.Fatalf("session %d: %v", i, err)
		}
		if _, err := s.Conn("host", FamilyInet, 25, "192.0.2.1"); err != nil {
			t.Fatalf("conn %d: %v", i, err)
		}
		if _, err := s.Helo("x"); err == nil {
			t.Fatalf("helo %d: the connection was not closed", i)
		}
		s.Close()
	}
	for i := 0; i < 2; i++ {
		select {
		case err := <-errs:
			var pe *PanicError
			if !errors.As(err, &pe) || pe.Value != "boom" || len(pe.Stack) == 0 {
				t.Errorf("report %d: %v, want the panic", i, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of 2 panics reported", i)
		}
	}
}

// TestNegotiateMismatch: an option negotiation the server cannot accept
// wraps ErrNegotiation (the application classifies it with errors.Is),
// with the same text as before the patch.
func TestNegotiateMismatch(t *testing.T) {
	optneg := func(version uint32, actions OptAction, proto OptProtocol) *wire.Message {
		b := binary.BigEndian.AppendUint32(nil, version)
		b = binary.BigEndian.AppendUint32(b, uint32(actions))
		b = binary.BigEndian.AppendUint32(b, uint32(proto))
		return &wire.Message{Code: wire.CodeOptNeg, Data: b}
	}
	cases := []struct {
		msg     *wire.Message
		actions OptAction
		proto   OptProtocol
		text    string
	}{
		{optneg(9, 0, 0), 0, 0, "milter: negotiate: unsupported protocol version: 9"},
		{optneg(1, 0, 0), 0, 0, "milter: negotiate: unsupported protocol version: 1"},
		{optneg(6, 0, 0), OptAddHeader, 0, "milter: negotiate: MTA does not offer required actions."},
		{optneg(6, 0, 0), 0, OptNoConnect, "milter: negotiate: MTA does not offer required protocol options."},
	}
	for _, tc := range cases {
		s := &serverSession{}
		s.init(&Server{}, nil, 6, 0, 0)
		_, err := s.negotiate(tc.msg, 6, tc.actions, tc.proto, nil, nil, 0)
		if !errors.Is(err, ErrNegotiation) || errors.Is(err, ErrMalformedPacket) {
			t.Errorf("%v: want ErrNegotiation", err)
		}
		if err == nil || !strings.HasPrefix(err.Error(), tc.text) {
			t.Errorf("%v: want text %q…", err, tc.text)
		}
	}
	// A malformed negotiation packet stays ErrMalformedPacket; an
	// acceptable one passes.
	s := &serverSession{}
	s.init(&Server{}, nil, 6, 0, 0)
	if _, err := s.negotiate(&wire.Message{Code: wire.CodeOptNeg, Data: []byte{0, 0, 0, 6}}, 6, 0, 0, nil, nil, 0); !errors.Is(err, ErrMalformedPacket) || errors.Is(err, ErrNegotiation) {
		t.Errorf("short packet: %v, want ErrMalformedPacket", err)
	}
	if _, err := s.negotiate(optneg(6, OptAddHeader, 0), 6, OptAddHeader, 0, nil, nil, 0); err != nil {
		t.Errorf("acceptable negotiation: %v", err)
	}
}
