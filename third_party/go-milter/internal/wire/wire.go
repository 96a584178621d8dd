// Package wire includes constants and functions for the raw libmilter protocol
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

//go:generate go tool stringer -type=Code,ActionCode,ModifyActCode -output=wire_string.go

type Code byte

// Message represents a command sent from milter client
type Message struct {
	Code Code
	Data []byte
}

// MacroCode returns the Code this CodeMacro message is about.
// If the message is not a CodeMacro message, it returns the Code itself.
func (m *Message) MacroCode() Code {
	if m.Code == CodeMacro && len(m.Data) > 0 {
		return Code(m.Data[0])
	}
	return m.Code
}

type ActionCode byte

const (
	ActAccept    ActionCode = 'a' // SMFIR_ACCEPT
	ActContinue  ActionCode = 'c' // SMFIR_CONTINUE
	ActDiscard   ActionCode = 'd' // SMFIR_DISCARD
	ActReject    ActionCode = 'r' // SMFIR_REJECT
	ActTempFail  ActionCode = 't' // SMFIR_TEMPFAIL
	ActReplyCode ActionCode = 'y' // SMFIR_REPLYCODE
	ActSkip      ActionCode = 's' // SMFIR_SKIP [v6]
	ActProgress  ActionCode = 'p' // SMFIR_PROGRESS [v6]
)

type ModifyActCode byte

const (
	ActAddRcpt      ModifyActCode = '+' // SMFIR_ADDRCPT
	ActDelRcpt      ModifyActCode = '-' // SMFIR_DELRCPT
	ActReplBody     ModifyActCode = 'b' // SMFIR_ACCEPT
	ActAddHeader    ModifyActCode = 'h' // SMFIR_ADDHEADER
	ActChangeHeader ModifyActCode = 'm' // SMFIR_CHGHEADER
	ActInsertHeader ModifyActCode = 'i' // SMFIR_INSHEADER
	ActQuarantine   ModifyActCode = 'q' // SMFIR_QUARANTINE
	ActChangeFrom   ModifyActCode = 'e' // SMFIR_CHGFROM [v6]
	ActAddRcptPar   ModifyActCode = '2' // SMFIR_ADDRCPT_PAR [v6]
)

const (
	CodeOptNeg      Code = 'O' // SMFIC_OPTNEG
	CodeMacro       Code = 'D' // SMFIC_MACRO
	CodeConn        Code = 'C' // SMFIC_CONNECT
	CodeQuit        Code = 'Q' // SMFIC_QUIT
	CodeHelo        Code = 'H' // SMFIC_HELO
	CodeMail        Code = 'M' // SMFIC_MAIL
	CodeRcpt        Code = 'R' // SMFIC_RCPT
	CodeHeader      Code = 'L' // SMFIC_HEADER
	CodeEOH         Code = 'N' // SMFIC_EOH
	CodeBody        Code = 'B' // SMFIC_BODY
	CodeEOB         Code = 'E' // SMFIC_BODYEOB
	CodeAbort       Code = 'A' // SMFIC_ABORT
	CodeData        Code = 'T' // SMFIC_DATA
	CodeQuitNewConn Code = 'K' // SMFIC_QUIT_NC [v6]
	CodeUnknown     Code = 'U' // SMFIC_UNKNOWN [v6]
)

// We reject reading/writing messages larger than 512 MB outright.
const maxPacketSize = 512 * 1024 * 1024

// MaxPacketSize is the largest packet ReadPacket accepts, the data size the
// server uses unless told otherwise (snowrain patch).
const MaxPacketSize = maxPacketSize

// ErrPacketTooLarge is returned by ReadPacketLimited when the declared length
// of a packet exceeds the limit. Nothing of the packet has been allocated.
// (snowrain patch)
var ErrPacketTooLarge = errors.New("milter: packet too large")

// ErrMalformedPacket is wrapped by every error about a packet whose content
// does not have the layout its command needs (snowrain patch).
var ErrMalformedPacket = errors.New("milter: malformed packet")

// ErrIdleTimeout wraps the timeout of a peer that sent nothing within the
// idle timeout (snowrain patch).
var ErrIdleTimeout = errors.New("milter: idle timeout")

func ReadPacket(conn net.Conn, timeout time.Duration) (*Message, error) {
	return ReadPacketLimited(conn, timeout, timeout, maxPacketSize)
}

// ReadPacketLimited reads one packet. idle bounds the wait for its first
// byte, read the time from there to its last byte (0: no limit), so a peer
// can neither hold a connection silently nor trickle a packet in. A declared
// length above maxSize is refused before anything is allocated, and a
// length of 0 (no command byte) is malformed. (snowrain patch: ReadPacket
// had one timeout, a 512 MB limit and indexed data[0] of an empty packet.)
func ReadPacketLimited(conn net.Conn, idle, read time.Duration, maxSize uint32) (*Message, error) {
	if maxSize == 0 || maxSize > maxPacketSize {
		maxSize = maxPacketSize
	}
	if idle != 0 || read != 0 {
		defer func(conn net.Conn) {
			_ = conn.SetReadDeadline(time.Time{})
		}(conn)
	}
	if idle != 0 {
		_ = conn.SetReadDeadline(time.Now().Add(idle))
	}
	var hdr [4]byte
	if _, err := io.ReadFull(conn, hdr[:1]); err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, fmt.Errorf("%w: %w", ErrIdleTimeout, err)
		}
		return nil, err
	}
	if read != 0 {
		_ = conn.SetReadDeadline(time.Now().Add(read))
	} else if idle != 0 {
		_ = conn.SetReadDeadline(time.Time{})
	}
	if _, err := io.ReadFull(conn, hdr[1:]); err != nil {
		return nil, noEOF(err)
	}
	length := binary.BigEndian.Uint32(hdr[:])
	if length == 0 {
		return nil, fmt.Errorf("%w: zero length", ErrMalformedPacket)
	}
	if length > maxSize {
		return nil, fmt.Errorf("%w: %d bytes declared, limit %d", ErrPacketTooLarge, length, maxSize)
	}

	// read packet data
	data := make([]byte, length)
	if _, err := io.ReadFull(conn, data); err != nil {
		return nil, noEOF(err)
	}

	// prepare response data
	message := Message{
		Code: Code(data[0]),
		Data: data[1:],
	}

	return &message, nil
}

// noEOF turns an EOF inside a packet into io.ErrUnexpectedEOF: only an EOF
// between packets is an orderly close.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

func WritePacket(conn net.Conn, msg *Message, timeout time.Duration) error {
	if msg == nil {
		return errors.New("msg nil pointer")
	}
	if timeout != 0 {
		_ = conn.SetWriteDeadline(time.Now().Add(timeout))
		defer func(conn net.Conn) {
			_ = conn.SetWriteDeadline(time.Time{})
		}(conn)
	}
	buf, err := AppendPacket(make([]byte, 0, 5+len(msg.Data)), msg)
	if err != nil {
		return err
	}
	// snowrain patch: one write per packet (it was two: the length and
	// code, then the data), as libmilter and Postfix send them.
	_, err = conn.Write(buf)
	return err
}

// AppendPacket appends msg as it goes on the wire (length, code, data) to
// dst (snowrain patch: the server collects several packets for one write).
func AppendPacket(dst []byte, msg *Message) ([]byte, error) {
	length := len(msg.Data) + 1
	if length > maxPacketSize {
		return dst, fmt.Errorf("milter: cannot write %d bytes in one message", length)
	}
	dst = binary.BigEndian.AppendUint32(dst, uint32(length))
	dst = append(dst, byte(msg.Code))
	return append(dst, msg.Data...), nil
}

// AppendUint16 appends the big endian encoding of val to dest. It returns the new dest like append does.
func AppendUint16(dest []byte, val uint16) []byte {
	return append(dest, byte(val>>8), byte(val))
}
