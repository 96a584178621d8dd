package milter

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/d--j/go-milter/internal/wire"
)

var errCloseSession = errors.New("stop current milter processing")

// serverSession keeps session state during MTA communication
type serverSession struct {
	server      *Server
	version     uint32
	actions     OptAction
	protocol    OptProtocol
	maxDataSize DataSize
	conn        net.Conn
	macros      *macrosStages
	backendId   uint64
	mu          sync.Mutex
	modifier    *modifier
	// snowrain patch: buffered packet reads, coalesced writes, one
	// modifier per state instead of a copy per command.
	reader *wire.Reader
	wmu    sync.Mutex
	wbuf   []byte
	mods   [modifierStateReadWrite + 1]*modifier
}

// init sets up the internal state of the session
func (m *serverSession) init(server *Server, conn net.Conn, version uint32, actions OptAction, protocol OptProtocol) {
	m.server = server
	m.conn = conn
	m.version = version
	m.actions = actions
	m.protocol = protocol
	m.macros = newMacroStages()
	m.reader = wire.NewReader(conn)
}

// readPacket reads incoming milter packet. idle bounds the wait for the
// packet, read its transfer (snowrain patch: limits from the server
// options; through the session's buffered Reader, so the Data of the packet
// is valid until the next readPacket).
func (m *serverSession) readPacket(idle, read time.Duration) (*wire.Message, error) {
	m.mu.Lock()
	conn := m.conn
	m.mu.Unlock()
	if conn == nil {
		return nil, errCloseSession
	}
	return m.reader.ReadPacket(idle, read, m.server.options.maxPacketSize)
}

// sessionError reports an error that ends the session: to the handler of
// WithErrorHandler when there is one, else as a warning (snowrain patch).
func (m *serverSession) sessionError(what string, err error) {
	if h := m.server.options.errorHandler; h != nil {
		h(fmt.Errorf("%s: %w", what, err))
		return
	}
	LogWarning("%s: %v", what, err)
}

// writePacket sends a milter response packet to socket stream, with the
// packets queued before it in the same write (snowrain patch).
func (m *serverSession) writePacket(msg *wire.Message) error {
	m.wmu.Lock()
	defer m.wmu.Unlock()
	var err error
	if m.wbuf, err = wire.AppendPacket(m.wbuf, msg); err != nil {
		return err
	}
	return m.flushLocked()
}

// maxQueued is how many bytes of queued packets queuePacket holds before it
// writes them (snowrain patch).
const maxQueued = 64 << 10

// queuePacket queues a packet that needs no answer before the MTA gets the
// reply that ends the command: the modification actions of end-of-message
// go out in one write with the final reply (snowrain patch; each was a
// write of its own, two for a packet with data).
func (m *serverSession) queuePacket(msg *wire.Message) error {
	m.wmu.Lock()
	defer m.wmu.Unlock()
	var err error
	if m.wbuf, err = wire.AppendPacket(m.wbuf, msg); err != nil {
		return err
	}
	if len(m.wbuf) >= maxQueued {
		return m.flushLocked()
	}
	return nil
}

// flushLocked writes the queued packets in one write, under the write
// timeout. Every write sets its own deadline, so none is lifted after.
func (m *serverSession) flushLocked() error {
	if len(m.wbuf) == 0 {
		return nil
	}
	m.mu.Lock()
	conn := m.conn
	m.mu.Unlock()
	buf := m.wbuf
	m.wbuf = m.wbuf[:0]
	if cap(m.wbuf) > maxQueued {
		m.wbuf = nil // a burst of actions: do not keep its buffer
	}
	if conn == nil {
		return errCloseSession
	}
	if t := m.server.options.writeTimeout; t != 0 {
		_ = conn.SetWriteDeadline(time.Now().Add(t))
	}
	_, err := conn.Write(buf)
	return err
}

// mod returns the session's modifier in state (snowrain patch: withState
// copied it for every command).
func (m *serverSession) mod(state modifierState) *modifier {
	if m.mods[state] == nil {
		m.mods[state] = m.modifier.withState(state)
	}
	return m.mods[state]
}

func (m *serverSession) negotiate(msg *wire.Message, milterVersion uint32, milterActions OptAction, milterProtocol OptProtocol, callback NegotiationCallbackFunc, macroRequests macroRequests, usedMaxData DataSize) (*Response, error) {
	if msg.Code != wire.CodeOptNeg {
		return nil, fmt.Errorf("%w: negotiate: unexpected package with code %c", wire.ErrMalformedPacket, msg.Code)
	}
	if len(msg.Data) < 4*3 /* version + action mask + proto mask */ {
		return nil, fmt.Errorf("%w: negotiate: unexpected data size: %d", wire.ErrMalformedPacket, len(msg.Data))
	}
	mtaVersion := binary.BigEndian.Uint32(msg.Data[:4])
	mtaActionMask := OptAction(binary.BigEndian.Uint32(msg.Data[4:]))
	mtaProtoMask := OptProtocol(binary.BigEndian.Uint32(msg.Data[8:]))
	offeredMaxDataSize := DataSize64K
	if uint32(mtaProtoMask)&optMds1M == optMds1M {
		offeredMaxDataSize = DataSize1M
	} else if uint32(mtaProtoMask)&optMds256K == optMds256K {
		offeredMaxDataSize = DataSize256K
	}
	mtaProtoMask = mtaProtoMask & (^OptProtocol(optInternal))

	var err error
	var maxDataSize DataSize
	// snowrain patch: a mismatch wraps ErrNegotiation (same text as before).
	if callback != nil {
		if m.version, m.actions, m.protocol, maxDataSize, err = callback(mtaVersion, milterVersion, mtaActionMask, milterActions, mtaProtoMask, milterProtocol, offeredMaxDataSize); err != nil {
			return nil, err
		}
		if m.version < 2 || m.version > MaxServerProtocolVersion {
			return nil, fmt.Errorf("%w: unsupported protocol version: %d", ErrNegotiation, m.version)
		}
	} else {
		if mtaVersion < 2 || mtaVersion > MaxServerProtocolVersion {
			return nil, fmt.Errorf("%w: unsupported protocol version: %d", ErrNegotiation, mtaVersion)
		}
		m.version = mtaVersion
		if milterActions&mtaActionMask != milterActions {
			return nil, fmt.Errorf("%w: MTA does not offer required actions. offered: %q requested: %q", ErrNegotiation, mtaActionMask, milterActions)
		}
		m.actions = milterActions & mtaActionMask
		if milterProtocol&mtaProtoMask != milterProtocol {
			return nil, fmt.Errorf("%w: MTA does not offer required protocol options. offered: %q requested: %q", ErrNegotiation, mtaProtoMask, milterProtocol)
		}
		m.protocol = milterProtocol & mtaProtoMask
		maxDataSize = offeredMaxDataSize
	}
	if maxDataSize != DataSize64K && maxDataSize != DataSize256K && maxDataSize != DataSize1M {
		maxDataSize = DataSize64K
	}
	if usedMaxData == 0 {
		usedMaxData = maxDataSize
	}
	m.maxDataSize = usedMaxData
	m.modifier = newModifier(m, modifierStateReadOnly)

	// TODO: activate skip response according to m.version

	sizeMask := uint32(0)
	if maxDataSize == DataSize256K {
		sizeMask = optMds256K
	} else if maxDataSize == DataSize1M {
		sizeMask = optMds1M
	}

	// prepare response data
	var buffer bytes.Buffer
	for _, value := range []uint32{m.version, uint32(m.actions), uint32(m.protocol) | sizeMask} {
		buffer.Write([]byte{byte(value >> 24), byte(value >> 16), byte(value >> 8), byte(value)})
	}
	// send the macros we want to have in the response
	if macroRequests != nil && mtaActionMask&OptSetMacros != 0 {
		for st := 0; st < int(StageEndMarker) && st < len(macroRequests); st++ {
			if macroRequests[st] != nil && len(macroRequests[st]) > 0 {
				stValue := uint32(st)
				buffer.Write([]byte{byte(stValue >> 24), byte(stValue >> 16), byte(stValue >> 8), byte(stValue)})
				buffer.WriteString(strings.Join(macroRequests[st], " "))
				buffer.WriteByte(0)
			}
		}
	} else if macroRequests != nil {
		LogWarning("milter could not send the needed macros since MTA does not support this")
	}
	// build negotiation response
	return newResponse(wire.CodeOptNeg, buffer.Bytes()), nil
}

// processMsg processes incoming milter commands
func (m *serverSession) processMsg(backend Milter, msg *wire.Message) (*Response, error) {
	switch msg.Code {
	case wire.CodeOptNeg:
		return nil, fmt.Errorf("%w: negotiate: can only be called once in a connection", wire.ErrMalformedPacket)

	case wire.CodeConn:
		if len(msg.Data) == 0 {
			return nil, fmt.Errorf("%w: conn: unexpected data size: %d", wire.ErrMalformedPacket, len(msg.Data))
		}
		m.macros.DelStageAndAbove(StageHelo)
		hostname, rest, ok := wire.CutCString(msg.Data)
		if !ok || len(rest) == 0 {
			// snowrain patch: without the null-byte or the family byte
			// this indexed past the packet.
			return nil, fmt.Errorf("%w: conn: no family after the host name", wire.ErrMalformedPacket)
		}
		msg.Data = rest
		// get protocol family
		protocolFamily := msg.Data[0]
		msg.Data = msg.Data[1:]
		// get port and address
		var port uint16
		var address string
		if protocolFamily == 'L' || protocolFamily == '4' || protocolFamily == '6' {
			if len(msg.Data) < 2 {
				return nil, fmt.Errorf("%w: conn: unexpected data size: %d", wire.ErrMalformedPacket, len(msg.Data))
			}
			port = binary.BigEndian.Uint16(msg.Data)
			msg.Data = msg.Data[2:]
			// get address
			address = wire.ReadCString(msg.Data)
		}
		// convert family to human-readable string and validate
		family := ""
		switch protocolFamily {
		case 'U':
			family = "unknown"
		case 'L':
			family = "unix"
		case '4':
			family = "tcp4"
			addr := net.ParseIP(address)
			if addr == nil || addr.To4() == nil {
				return nil, fmt.Errorf("%w: conn: unexpected ip4 address: %q", wire.ErrMalformedPacket, address)
			}
		case '6':
			family = "tcp6"
			var addr net.IP
			// remove optional IPv6: prefix
			address = strings.TrimPrefix(address, "IPv6:")
			// also accept [dead::cafe] style IPv6 addresses
			if len(address) > 2 && address[0] == '[' && address[len(address)-1] == ']' {
				addr = net.ParseIP(address[1 : len(address)-1])
			} else {
				addr = net.ParseIP(address)
			}
			if addr == nil {
				return nil, fmt.Errorf("%w: conn: unexpected ip6 address: %q", wire.ErrMalformedPacket, address)
			}
			address = addr.String()
		default:
			return nil, fmt.Errorf("%w: conn: unexpected protocol family: %c", wire.ErrMalformedPacket, protocolFamily)
		}
		// run handler and return
		resp, err := backend.Connect(hostname, family, port, address, m.mod(modifierStateProgressOnly))
		return resp, err

	case wire.CodeHelo:
		if len(msg.Data) == 0 {
			return nil, fmt.Errorf("%w: helo: unexpected data size: %d", wire.ErrMalformedPacket, len(msg.Data))
		}
		m.macros.DelStageAndAbove(StageMail)
		name := wire.ReadCString(msg.Data)
		resp, err := backend.Helo(name, m.mod(modifierStateProgressOnly))
		return resp, err

	case wire.CodeMail:
		if len(msg.Data) == 0 {
			return nil, fmt.Errorf("%w: mail: unexpected data size: %d", wire.ErrMalformedPacket, len(msg.Data))
		}
		m.macros.DelStageAndAbove(StageRcpt)
		from, data, ok := wire.CutCString(msg.Data)
		if !ok {
			// snowrain patch: msg.Data[len(from)+1:] panicked here.
			return nil, fmt.Errorf("%w: mail: sender not null-terminated", wire.ErrMalformedPacket)
		}

		// the rest of the data are ESMTP arguments, separated by a zero byte.
		esmtpArgs := strings.Join(wire.DecodeCStrings(data), " ")
		resp, err := backend.MailFrom(RemoveAngle(from), esmtpArgs, m.mod(modifierStateProgressOnly))
		return resp, err

	case wire.CodeRcpt:
		if len(msg.Data) == 0 {
			return nil, fmt.Errorf("%w: rcpt: unexpected data size: %d", wire.ErrMalformedPacket, len(msg.Data))
		}
		m.macros.DelStageAndAbove(StageData)
		to, rest, ok := wire.CutCString(msg.Data)
		if !ok {
			// snowrain patch: msg.Data[len(to)+1:] panicked here.
			return nil, fmt.Errorf("%w: rcpt: recipient not null-terminated", wire.ErrMalformedPacket)
		}

		// the rest of the data are ESMTP arguments, separated by a zero byte.
		esmtpArgs := strings.Join(wire.DecodeCStrings(rest), " ")
		resp, err := backend.RcptTo(RemoveAngle(to), esmtpArgs, m.mod(modifierStateProgressOnly))
		return resp, err

	case wire.CodeData:
		m.macros.DelStageAndAbove(StageEOH)
		resp, err := backend.Data(m.mod(modifierStateProgressOnly))
		return resp, err

	case wire.CodeHeader:
		if len(msg.Data) < 2 {
			return nil, fmt.Errorf("%w: header: unexpected data size: %d", wire.ErrMalformedPacket, len(msg.Data))
		}
		name, value, n := splitHeader(msg.Data)
		if n != 2 {
			return nil, fmt.Errorf("%w: header: unexpected number of strings: %d", wire.ErrMalformedPacket, n)
		}
		resp, err := backend.Header(name, value, m.mod(modifierStateProgressOnly))
		m.macros.DelStageAndAbove(StageEndMarker)
		return resp, err

	case wire.CodeEOH:
		m.macros.DelStageAndAbove(StageEOM)
		resp, err := backend.Headers(m.mod(modifierStateProgressOnly))
		return resp, err

	case wire.CodeBody:
		resp, err := backend.BodyChunk(msg.Data, m.mod(modifierStateProgressOnly))
		m.macros.DelStageAndAbove(StageEndMarker)
		return resp, err

	case wire.CodeEOB:
		resp, err := backend.EndOfMessage(m.mod(modifierStateReadWrite))
		if err == nil && (resp == nil || resp.Continue()) {
			// if the backend does not return a response or one that does not terminate, we assume it is a success
			resp = RespAccept
		}
		return resp, err

	case wire.CodeUnknown:
		cmd := wire.ReadCString(msg.Data)
		resp, err := backend.Unknown(cmd, m.mod(modifierStateProgressOnly))
		m.macros.DelStageAndAbove(StageEndMarker)
		return resp, err

	case wire.CodeMacro:
		if len(msg.Data) == 0 {
			return nil, fmt.Errorf("%w: macro: unexpected data size: %d", wire.ErrMalformedPacket, len(msg.Data))
		}
		var stage MacroStage
		switch msg.MacroCode() {
		case wire.CodeConn:
			stage = StageConnect
		case wire.CodeHelo:
			stage = StageHelo
		case wire.CodeMail:
			stage = StageMail
		case wire.CodeRcpt:
			stage = StageRcpt
		case wire.CodeData:
			stage = StageData
		case wire.CodeEOH:
			stage = StageEOH
		case wire.CodeEOB:
			stage = StageEOM
		case wire.CodeUnknown, wire.CodeHeader, wire.CodeAbort, wire.CodeBody:
			stage = StageEndMarker // this stage gets cleared after the command
		default:
			// ignored (snowrain patch: without the warning, which a peer
			// could repeat once per packet to flood the log)
			return nil, nil
		}
		m.macros.DelStageAndAbove(stage)
		// convert data to Go strings
		data := wire.DecodeCStrings(msg.Data[1:])
		if len(data) != 0 {
			if len(data)%2 == 1 {
				data = append(data, "")
			}
			m.macros.SetStage(stage, data...)
		}
		// do not send response
		return nil, nil

	case wire.CodeAbort:
		// abort current message and start over
		err := backend.Abort(m.mod(modifierStateReadOnly))
		m.macros.DelStageAndAbove(StageHelo)
		return nil, err

	case wire.CodeQuitNewConn:
		// abort current connection and start over
		m.macros.DelStageAndAbove(StageConnect)
		return nil, backend.NewConnection(m.mod(modifierStateReadOnly))

	case wire.CodeQuit:
		// client requested session close, we handle the session end in HandleMilterCommands
		return nil, nil

	default:
		// close session (snowrain patch: an error, not errCloseSession, so
		// that it is reported)
		return nil, fmt.Errorf("%w: unrecognized command code %q", wire.ErrMalformedPacket, byte(msg.Code))
	}
}

// splitHeader reads a header packet's name and value as DecodeCStrings
// does (one optional NUL at the end, strings split at NUL), from one string
// (snowrain patch: a slice and a string per field were allocated). n is the
// number of strings; name and value are set only when it is 2.
func splitHeader(data []byte) (name, value string, n int) {
	if len(data) > 0 && data[len(data)-1] == 0 {
		data = data[:len(data)-1]
	}
	i := bytes.IndexByte(data, 0)
	if i < 0 {
		return "", "", 1
	}
	if j := bytes.IndexByte(data[i+1:], 0); j >= 0 {
		return "", "", 2 + bytes.Count(data[i+1+j+1:], []byte{0}) + 1
	}
	s := string(data)
	return s[:i], s[i+1:], 2
}

// ignoreError checks if the error is a closing error
// It checks for EOF, net.ErrClosed, and errCloseSession
func ignoreError(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, errCloseSession) || errors.Is(err, net.ErrClosed)
}

func (m *serverSession) closeConn() {
	m.mu.Lock()
	conn := m.conn
	m.conn = nil
	m.mu.Unlock()
	if conn != nil {
		if err := conn.Close(); err != nil && !ignoreError(err) {
			LogWarning("Error closing connection: %v", err)
		}
	}
}

// HandleMilterCommands processes all milter commands in the same connection
func (m *serverSession) HandleMilterCommands() {
	defer m.reader.Release()
	defer m.closeConn()

	// first do the negotiation - with a hard-coded timeout of 1 second
	msg, err := m.readPacket(time.Second, time.Second)
	if err != nil {
		if !ignoreError(err) {
			m.sessionError("reading milter negotiation", err)
		}
		return
	}
	resp, err := m.negotiate(msg, m.server.options.maxVersion, m.server.options.actions, m.server.options.protocol, m.server.options.negotiationCallback, m.server.options.macrosByStage, 0)
	if err != nil {
		if !ignoreError(err) {
			m.sessionError("negotiating", err)
		}
		return
	}
	if err = m.writePacket(resp.Response()); err != nil {
		if !ignoreError(err) {
			m.sessionError("writing packet", err)
		}
		return
	}
	var backend Milter
	backend, m.backendId = m.server.newMilter(m.version, m.actions, m.protocol, m.maxDataSize)
	m.modifier.milterId = m.backendId
	defer func() {
		backend.Cleanup(m.mod(modifierStateReadOnly))
	}()
	if err := backend.NewConnection(m.mod(modifierStateReadOnly)); err != nil {
		return
	}

	lastCode := wire.CodeOptNeg
	lastOrder := 0
	readTimeout := m.server.options.readTimeout
	idleTimeout := m.server.options.idleTimeout
	if idleTimeout == 0 {
		idleTimeout = readTimeout
	}
	hasDecision := false

	// now we can process the events
	for {
		msg, err = m.readPacket(idleTimeout, readTimeout)
		if err != nil {
			if !ignoreError(err) {
				m.sessionError("reading milter command", err)
			}
			return
		}

		// Postfix always sends us an Abort when an SMTP connection gets reused.
		// Sendmail does not do that when we accepted/rejected the message before EOB.
		// We synthesize an Abort message to the backend when we detect that an Abort was not sent.
		// This is not really necessary (the backend should be able to handle this), but it does not hurt
		// and makes Milter backend development less error-prone.
		code := msg.MacroCode()
		currentCommand, ok := codeOrder(code)
		if ok {
			if lastOrder > currentCommand && lastCode != wire.CodeAbort {
				_, err = m.processMsg(backend, &wire.Message{Code: wire.CodeAbort})
				if err != nil {
					if !ignoreError(err) {
						// log error condition
						m.sessionError("performing milter command", err)
						if resp != nil && !m.skipResponse(msg.Code) {
							_ = m.writePacket(resp.Response())
						}
					}
					return
				}
			}
			lastOrder = currentCommand
		} else {
			// Postfix sometimes sends us multiple Aborts - one is totally enough, so filter them out
			if code == wire.CodeAbort && lastCode == wire.CodeAbort {
				continue
			}
		}
		lastCode = code

		var resp *Response
		resp, err = m.processMsg(backend, msg)
		if err != nil {
			if !ignoreError(err) {
				// log error condition
				m.sessionError("performing milter command", err)
				if resp != nil && !m.skipResponse(msg.Code) {
					_ = m.writePacket(resp.Response())
				}
			}
			return
		}
		hasDecision = resp != nil && !resp.Continue()
		if msg.Code == wire.CodeRcpt && hasDecision && resp != RespDiscard {
			hasDecision = false
		}
		if hasDecision {
			m.macros.DelStageAndAbove(StageMail)
		}

		// if we have a response and did not tell the MTA to skip the response
		if resp != nil && !m.skipResponse(msg.Code) {
			// send back response message
			if err = m.writePacket(resp.Response()); err != nil {
				if !ignoreError(err) {
					m.sessionError("writing packet", err)
				}
				return
			}
		}

		if msg.Code == wire.CodeQuit {
			return
		}

		// Gracefully exit only after MTA send CodeQuitNewConn (CodeQuit always exits anyway)
		// We cannot exit at other commands since this would break the milter connection mid-way in an SMTP connection.
		// The MTA would temp fail (depends on configuration) all commands of this SMTP connection after we broke the
		// milter connection.
		if msg.Code == wire.CodeQuitNewConn && m.server.shuttingDown() {
			return
		}
	}
}

// codeOrder is the place of a command in a transaction (snowrain patch: a
// map made for every connection).
func codeOrder(code wire.Code) (int, bool) {
	switch code {
	case wire.CodeConn:
		return 1, true
	case wire.CodeHelo:
		return 2, true
	case wire.CodeMail:
		return 3, true
	case wire.CodeRcpt:
		return 4, true
	case wire.CodeData:
		return 5, true
	case wire.CodeHeader:
		return 6, true
	case wire.CodeEOH:
		return 7, true
	case wire.CodeBody:
		return 8, true
	case wire.CodeEOB:
		return 9, true
	}
	return 0, false
}

func (m *serverSession) skipResponse(code wire.Code) bool {
	switch code {
	case wire.CodeConn:
		return m.protocol&OptNoConnReply != 0
	case wire.CodeHelo:
		return m.protocol&OptNoHeloReply != 0
	case wire.CodeMail:
		return m.protocol&OptNoMailReply != 0
	case wire.CodeRcpt:
		return m.protocol&OptNoRcptReply != 0
	case wire.CodeData:
		return m.protocol&OptNoDataReply != 0
	case wire.CodeUnknown:
		return m.protocol&OptNoUnknownReply != 0
	case wire.CodeEOH:
		return m.protocol&OptNoEOHReply != 0
	case wire.CodeHeader:
		return m.protocol&OptNoHeaderReply != 0
	case wire.CodeBody:
		return m.protocol&OptNoBodyReply != 0
	default:
		return false
	}
}
