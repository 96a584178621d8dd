package measure

import (
	"bufio"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"syscall"
	"time"

	"github.com/snowrain/snowrain/measure/maillog"
)

// Follower tails an MTA log into the store, as `tail -F` does: it waits
// for a log that does not exist yet, survives rotation by rename (it
// finishes the old file, then opens the new one), removal and
// re-creation, and copytruncate (the file shrinks: it starts over), and
// keeps its position in the database in the same transaction as the
// deliveries it read. Lines longer than maillog.MaxLine are dropped while
// reading and counted as malformed.
type Follower struct {
	Store  *Store
	Path   string
	Parser *maillog.Parser
	Poll   time.Duration // how often to look for new lines; default 1s
	Batch  int           // deliveries per transaction; default 1000
	Log    *slog.Logger
	// OnDelivery, if set, sees every delivery read (downgrade detection).
	OnDelivery func(*maillog.Delivery)

	f         *os.File
	lr        *maillog.LineReader
	inode     uint64
	offset    int64
	batch     []*maillog.Delivery
	lines     logLines
	committed LogPosition
}

// Run follows the log until ctx ends; it returns after writing what it
// read. A log that cannot be opened yet is waited for.
func (fw *Follower) Run(ctx context.Context) error {
	fw.defaults()
	pos, ok, err := fw.Store.LogPosition(ctx, fw.Path)
	if err != nil {
		return err
	}
	if !fw.waitOpen(ctx, pos, ok) {
		return nil
	}
	defer func() { fw.f.Close() }()
	for {
		if err := fw.readAvailable(ctx, false); err != nil {
			return err
		}
		if err := fw.commit(ctx); err != nil {
			fw.Log.Error("maillog: writing deliveries", "err", err)
		}
		select {
		case <-ctx.Done():
			return fw.commit(context.Background())
		case <-time.After(fw.Poll):
		}
		if err := fw.checkRotation(ctx); err != nil {
			fw.Log.Warn("maillog: rotation", "path", fw.Path, "err", err)
		}
	}
}

func (fw *Follower) defaults() {
	if fw.Parser == nil {
		fw.Parser = maillog.NewParser()
	}
	if fw.Poll <= 0 {
		fw.Poll = time.Second
	}
	if fw.Batch <= 0 {
		fw.Batch = 1000
	}
	if fw.Log == nil {
		fw.Log = slog.Default()
	}
}

// waitOpen opens the log, polling until it can; false when ctx ended
// first.
func (fw *Follower) waitOpen(ctx context.Context, pos LogPosition, ok bool) bool {
	var logged string
	for {
		err := fw.open(ctx, pos, ok)
		if err == nil {
			if logged != "" {
				fw.Log.Info("maillog: log file appeared", "path", fw.Path)
			}
			return true
		}
		if err.Error() != logged {
			logged = err.Error()
			fw.Log.Warn("maillog: waiting for the log file", "path", fw.Path, "err", err)
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(fw.Poll):
		}
	}
}

// open opens the log at the stored position; if the log was rotated while
// we were away, the rest of the old file (PATH.1) is read first.
func (fw *Follower) open(ctx context.Context, pos LogPosition, ok bool) error {
	f, err := os.Open(fw.Path)
	if err != nil {
		return fmt.Errorf("maillog: %w", err)
	}
	ino := inodeOfFile(f)
	if ok && ino != pos.Inode {
		if old := fw.Path + ".1"; inodeOf(old) == pos.Inode {
			if err := fw.drainFile(ctx, old, pos.Offset); err != nil {
				fw.Log.Warn("maillog: reading rotated log", "path", old, "err", err)
			}
		}
	}
	fw.setFile(f)
	if ok && fw.inode == pos.Inode {
		if fi, err := f.Stat(); err == nil && fi.Size() >= pos.Offset {
			f.Seek(pos.Offset, io.SeekStart)
			fw.offset = pos.Offset
			fw.lr.Reset(f)
		}
	}
	return nil
}

func (fw *Follower) setFile(f *os.File) {
	fw.f = f
	fw.inode = inodeOfFile(f)
	fw.offset = 0
	if fw.lr == nil {
		fw.lr = maillog.NewLineReader(f, maillog.MaxLine)
	} else {
		fw.lr.Reset(f)
	}
}

// drainFile reads a rotated file from offset to its end.
func (fw *Follower) drainFile(ctx context.Context, path string, offset int64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return err
	}
	lr := maillog.NewLineReader(f, maillog.MaxLine)
	for {
		line, _, err := lr.Next()
		fw.take(lr, line, err, true)
		if err != nil && !errors.Is(err, maillog.ErrLineTooLong) {
			if err := fw.commitBatch(ctx, nil); err != nil {
				return err
			}
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// take feeds what LineReader.Next returned: a line, a dropped over-long
// line, or at the end of a file that is finished (final), its last line
// without a newline.
func (fw *Follower) take(lr *maillog.LineReader, line []byte, err error, final bool) {
	switch {
	case err == nil, final && errors.Is(err, io.EOF) && len(line) > 0:
		fw.feed(string(line))
	case errors.Is(err, maillog.ErrLineTooLong), final && errors.Is(err, io.EOF) && lr.Dropping():
		fw.Parser.Overlong()
	}
}

// readAvailable reads every complete line there is now; final: the file
// will not grow (it was replaced), so a last line without newline counts.
func (fw *Follower) readAvailable(ctx context.Context, final bool) error {
	for {
		line, n, err := fw.lr.Next()
		switch {
		case errors.Is(err, io.EOF):
			if len(line) > 0 && !final {
				// A partial line stays unread until its newline arrives.
				fw.f.Seek(fw.offset, io.SeekStart)
				fw.lr.Reset(fw.f)
				return nil
			}
			fw.offset += int64(n) // bytes of an over-long line, dropped
			fw.take(fw.lr, line, err, final)
			return nil
		case err != nil && !errors.Is(err, maillog.ErrLineTooLong):
			return fmt.Errorf("maillog: %w", err)
		}
		fw.offset += int64(n)
		fw.take(fw.lr, line, err, final)
		if len(fw.batch) >= fw.Batch {
			if err := fw.commit(ctx); err != nil {
				return err
			}
		}
	}
}

func (fw *Follower) feed(line string) {
	for _, d := range fw.lines.feed(fw.Parser, line) {
		fw.batch = append(fw.batch, d)
		if fw.OnDelivery != nil {
			fw.OnDelivery(d)
		}
	}
}

// commit writes the batch and position when either changed; it is not
// cancelled with the follower, so what was read on shutdown is kept.
func (fw *Follower) commit(ctx context.Context) error {
	pos := LogPosition{Source: fw.Path, Inode: fw.inode, Offset: fw.offset}
	if len(fw.batch) == 0 && pos == fw.committed {
		return nil
	}
	if err := fw.commitBatch(ctx, &pos); err != nil {
		return err
	}
	fw.committed = pos
	return nil
}

func (fw *Follower) commitBatch(ctx context.Context, pos *LogPosition) error {
	if err := fw.Store.RecordDeliveriesTLS(context.WithoutCancel(ctx), fw.batch, fw.lines.outs, pos); err != nil {
		return err
	}
	fw.batch = fw.batch[:0]
	fw.lines.outs = fw.lines.outs[:0]
	return nil
}

// checkRotation reopens the log when it was renamed away, removed and
// created again, or truncated. While the path is missing the open file
// is kept: its last lines may still come.
func (fw *Follower) checkRotation(ctx context.Context) error {
	fi, err := os.Stat(fw.Path)
	if err != nil {
		return nil // between rename (or removal) and create: try again next poll
	}
	if inodeOfInfo(fi) != fw.inode || unlinked(fw.f) {
		if err := fw.readAvailable(ctx, true); err != nil { // the old file's last lines
			return err
		}
		if err := fw.commit(ctx); err != nil {
			return err
		}
		f, err := os.Open(fw.Path)
		if err != nil {
			return err
		}
		fw.f.Close()
		fw.setFile(f)
		fw.Log.Info("maillog: following a new log file", "path", fw.Path)
		return nil
	}
	if fi.Size() < fw.offset { // copytruncate
		fw.f.Seek(0, io.SeekStart)
		fw.lr.Reset(fw.f)
		fw.offset = 0
	}
	return nil
}

// unlinked reports whether f's file has no name left (it was removed).
func unlinked(f *os.File) bool {
	fi, err := f.Stat()
	if err != nil {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && st.Nlink == 0
}

func inodeOf(path string) uint64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return inodeOfInfo(fi)
}

func inodeOfFile(f *os.File) uint64 {
	fi, err := f.Stat()
	if err != nil {
		return 0
	}
	return inodeOfInfo(fi)
}

func inodeOfInfo(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}

// IngestReader parses a whole log (gzip-compressed or not) into the store
// without recording a position: for one-off imports. Lines longer than
// maillog.MaxLine are dropped while reading and counted as malformed.
func (s *Store) IngestReader(ctx context.Context, r io.Reader, p *maillog.Parser) (int, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var in io.Reader = br
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return 0, fmt.Errorf("maillog: %w", err)
		}
		defer zr.Close()
		in = zr
	}
	lr := maillog.NewLineReader(in, maillog.MaxLine)
	var batch []*maillog.Delivery
	var lines logLines
	n := 0
	for {
		line, _, err := lr.Next()
		switch {
		case len(line) > 0:
			batch = append(batch, lines.feed(p, string(line))...)
		case errors.Is(err, maillog.ErrLineTooLong), errors.Is(err, io.EOF) && lr.Dropping():
			p.Overlong()
		}
		done := err != nil && !errors.Is(err, maillog.ErrLineTooLong)
		if len(batch) >= 5000 || (done && len(batch) > 0) {
			if err := s.RecordDeliveriesTLS(ctx, batch, lines.outs, nil); err != nil {
				return n, err
			}
			n += len(batch)
			batch = batch[:0]
			lines.outs = lines.outs[:0]
		}
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if done {
			return n, fmt.Errorf("maillog: %w", err)
		}
	}
}
