package miltertest

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"time"
)

// Packet frames one milter packet: length, command byte, data.
func Packet(code byte, data string) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(data)+1))
	return append(append(b, code), data...)
}

// Declare is the length prefix of a packet of n bytes, without the packet.
func Declare(n uint32) []byte { return binary.BigEndian.AppendUint32(nil, n) }

// Negotiation is an option negotiation offering protocol version 6 with
// every action and protocol option, as Postfix does.
func Negotiation() []byte {
	var d []byte
	for _, v := range []uint32{6, 0x1ff, 0x1fffff} {
		d = binary.BigEndian.AppendUint32(d, v)
	}
	return Packet('O', string(d))
}

// Connect is a well-formed Connect packet from 192.0.2.1.
func Connect() []byte { return Packet('C', "client.example\x004\x00\x19192.0.2.1\x00") }

// Hostile is one class of malformed milter input.
type Hostile struct {
	Name string
	// Raw streams are sent as the first bytes of the connection; the
	// others after a successful negotiation.
	Raw  bool
	Data []byte
}

func cat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// HostileStreams are the malformed packet classes of issue 10 and their
// neighbours: each used to panic, allocate or be accepted.
var HostileStreams = []Hostile{
	{"zero length first", true, []byte{0, 0, 0, 0}},
	{"huge length first", true, Declare(0xffffffff)},
	{"short negotiation", true, Packet('O', "\x00\x00\x00\x06")},
	{"zero length", false, []byte{0, 0, 0, 0}},
	{"connect without NUL", false, Packet('C', "client.example")},
	{"connect without family", false, Packet('C', "client.example\x00")},
	{"connect with truncated port", false, Packet('C', "client.example\x004\x19")},
	{"connect with bad address", false, Packet('C', "client.example\x004\x00\x19not-an-ip\x00")},
	{"mail without NUL", false, cat(Connect(), Packet('M', "<a@evil.example>"))},
	{"rcpt without NUL", false, cat(Connect(), Packet('M', "<a@evil.example>\x00"), Packet('R', "<b@dest.example>"))},
	{"empty mail", false, cat(Connect(), Packet('M', ""))},
	{"header with one string", false, cat(Connect(), Packet('M', "<a@evil.example>\x00"), Packet('L', "From"))},
	{"header with three strings", false, cat(Connect(), Packet('M', "<a@evil.example>\x00"), Packet('L', "a\x00b\x00c\x00"))},
	{"empty macro", false, Packet('D', "")},
	{"unknown command", false, Packet('Z', "junk")},
	{"command byte 0", false, Packet(0, "")},
	{"second negotiation", false, Negotiation()},
	{"oversized packet", false, cat(Declare(2<<20+1), []byte{'B'}, make([]byte, 64<<10))},
	{"128 MiB declared", false, cat(Declare(128<<20), []byte{'B'})},
	{"4 GiB declared", false, Declare(0xffffffff)},
}

// RawExchange opens a connection to a milter, negotiates unless h is Raw,
// sends h's bytes and reads until the milter closes the connection. It
// returns an error if the negotiation fails or the milter does not close
// the connection within limit.
func RawExchange(network, addr string, h Hostile, limit time.Duration) error {
	c, err := net.Dial(network, addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(limit))
	if !h.Raw {
		if _, err := c.Write(Negotiation()); err != nil {
			return err
		}
		if _, err := ReadPacket(c); err != nil {
			return errors.Join(errors.New("negotiation"), err)
		}
	}
	c.Write(h.Data) // may fail half-way: the milter closes as soon as it knows
	return WaitClosed(c)
}

// WaitClosed reads and discards until the peer closes c; an error when
// the deadline of c passes first.
func WaitClosed(c net.Conn) error {
	_, err := io.Copy(io.Discard, c)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return errors.New("the milter did not close the connection")
	}
	return nil // EOF or reset: closed
}

// ReadPacket reads one packet: command byte and data.
func ReadPacket(r io.Reader) ([]byte, error) {
	var n uint32
	if err := binary.Read(r, binary.BigEndian, &n); err != nil {
		return nil, err
	}
	if n == 0 || n > 1<<20 {
		return nil, errors.New("bad packet length")
	}
	b := make([]byte, n)
	_, err := io.ReadFull(r, b)
	return b, err
}
